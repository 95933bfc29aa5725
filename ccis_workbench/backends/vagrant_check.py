"""Check a Vagrant box with the real client: `vagrant box add`, then `vagrant box list` must show it.

Vagrant runs with VAGRANT_HOME in a private temporary directory (removed afterwards) and its version check
turned off, so nothing touches the user's ~/.vagrant.d and nothing goes to the network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ccis_workbench.core.report import CheckResult

CHECK_ID = "artifact.vagrant-box-add"
DESCRIPTION = "the real vagrant client adds the box (libvirt provider) and lists it"


def check_vagrant_box(box: Path, name: str, timeout: float = 600.0) -> CheckResult:
    """`vagrant box add --name NAME BOX` + `vagrant box list` in a private VAGRANT_HOME, as one check result."""
    command = f"vagrant box add --name {name} {box.name} && vagrant box list"
    expect = f"exit 0, box list shows {name} (libvirt"
    vagrant = shutil.which("vagrant")
    if vagrant is None:
        return CheckResult(CHECK_ID, DESCRIPTION, "artifact", command, expect, "skipped",
                           "vagrant is not installed here (apt-get install vagrant vagrant-libvirt)")
    t0 = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="ccis-vagrant-home-"))
    cwd = home / "empty"  # no Vagrantfile is picked up from the caller's directory
    cwd.mkdir()
    env = dict(os.environ, VAGRANT_HOME=str(home / "vagrant.d"), VAGRANT_CHECKPOINT_DISABLE="1",
               VAGRANT_NO_COLOR="1")
    out: list[str] = []
    try:
        code: int | None = None
        for argv in ([vagrant, "box", "add", "--name", name, str(box)], [vagrant, "box", "list"]):
            try:
                proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                                      check=False)
            except subprocess.TimeoutExpired:
                code = None
                out.append(f"$ vagrant {' '.join(argv[1:3])}: no answer within {timeout:.0f} s")
                break
            code = proc.returncode
            out.append(f"$ vagrant {' '.join(argv[1:])}\n{(proc.stdout + proc.stderr).strip()}")
            if code != 0:
                break
        text = "\n".join(out)
        listed = re.search(rf"(?m)^{re.escape(name)}\s+\(libvirt", text) is not None
        passed = code == 0 and listed
        reason = "ok" if passed else (f"exit status {code}" if code else f"no answer within {timeout:.0f} s"
                                      if code is None else f"the box list does not show {name} (libvirt, ...)")
        return CheckResult(CHECK_ID, DESCRIPTION, "artifact", command, expect, "passed" if passed else "failed",
                           reason, code, text, time.monotonic() - t0)
    finally:
        shutil.rmtree(home, ignore_errors=True)

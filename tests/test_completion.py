"""Shell completion, run in a real bash: commands, options, choices and catalog names (asked of the CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = subprocess.run([sys.executable, "-m", "ccis_workbench", "completion", "bash"], capture_output=True,
                         text=True, check=True, cwd=REPO).stdout
    path = tmp_path_factory.mktemp("completion") / "ccis.bash"
    path.write_text(out)
    return path


def complete(script: Path, line: str, tmp_path: Path) -> list[str]:
    """What bash offers for *line* (the cursor at its end), with `ccis-workbench` on PATH."""
    shim = tmp_path / "bin"
    shim.mkdir(exist_ok=True)
    exe = shim / "ccis-workbench"
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} -m ccis_workbench "$@"\n')
    exe.chmod(0o755)
    words = line.split(" ")
    driver = (f"source {script}\nCOMP_WORDS=({' '.join(repr(w) for w in words)})\nCOMP_CWORD={len(words) - 1}\n"
              "_ccis_workbench\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
    env = dict(os.environ, PATH=f"{shim}:{os.environ['PATH']}")
    proc = subprocess.run(["bash", "-c", driver], capture_output=True, text=True, check=True, cwd=REPO, env=env)
    return [w for w in proc.stdout.split("\n") if w]


def test_commands_options_and_choices(script: Path, tmp_path: Path) -> None:
    assert {"build", "boot-test", "propose", "config", "init"} <= set(complete(script, "ccis-workbench ", tmp_path))
    assert complete(script, "ccis-workbench bu", tmp_path) == ["build"]
    assert "--accel" in complete(script, "ccis-workbench build --ac", tmp_path)
    assert complete(script, "ccis-workbench build --accel ", tmp_path) == ["auto", "kvm", "tcg"]
    assert complete(script, "ccis-workbench list ", tmp_path) == ["releases", "targets", "overlays", "profiles"]


def test_catalog_names(script: Path, tmp_path: Path) -> None:
    assert "openstack-stream9" in complete(script, "ccis-workbench render open", tmp_path)
    assert complete(script, "ccis-workbench plan --release centos-stream-1", tmp_path) == ["centos-stream-10"]
    assert "gce" in complete(script, "ccis-workbench render --target g", tmp_path)
    assert "epel" in complete(script, "ccis-workbench render --overlay ep", tmp_path)
    other = tmp_path / "other"
    (other / "kickstarts").mkdir(parents=True)
    subprocess.run(["cp", "-r", str(REPO / "tests/data/mini_catalog/kickstarts"), str(other)], check=True)
    (other / "profiles").mkdir()
    (other / "profiles/only-here.yaml").write_text("name: only-here\nrelease: centos-stream-9\ntarget: openstack\n")
    assert complete(script, f"ccis-workbench --catalog {other} render on", tmp_path) == ["only-here"]


def test_zsh_script_loads_bash_completion() -> None:
    out = subprocess.run([sys.executable, "-m", "ccis_workbench", "completion", "zsh"], capture_output=True,
                         text=True, check=True, cwd=REPO).stdout
    assert out.startswith("autoload -U +X bashcompinit && bashcompinit\n") and "complete -F _ccis_workbench" in out

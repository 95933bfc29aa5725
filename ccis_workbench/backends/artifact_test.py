"""Test any build artifact with the checks of its profile: the one entry point of the CLI and the TUI.

- a container rootfs tar: checked without booting (backends/container_test.py);
- a disk (qcow2, raw), a Vagrant box or a GCE tar: booted on libvirt (backends/boottest.py). Boxes and GCE tars
  are unpacked into a temporary directory first (core/testimage.py) and the box is also added with the real
  `vagrant box add` (backends/vagrant_check.py). An image that takes no seed is logged into with the user its
  kickstart creates with a public plaintext password (Vagrant's vagrant/vagrant); when it has none (GCE, whose
  users come from the metadata server), the run stops at the login prompt and says why no check ran.

libvirt-python is imported only for the booting path, so container images are checked on hosts without it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ccis_workbench.backends.container_test import ContainerTestOptions, run_container_test
from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.monitor import Monitor
from ccis_workbench.core.report import BootTestResult
from ccis_workbench.core.testimage import artifact_kind, checked_members, disk_for, kickstart_login
from ccis_workbench.core.testspec import CheckPlan


def check_kind(image: Path, plan: CheckPlan, label: str) -> str:
    """The artifact's kind, refused when it does not match what the profile's target makes."""
    kind = artifact_kind(image)
    if (kind == "rootfs") != (plan.context == "container"):
        makes = "container images (rootfs tar)" if plan.context == "container" else "disk images"
        raise WorkbenchError("Wrong kind of artifact", f"{image.name} is a {kind} artifact, but {label}'s target "
                             f"makes {makes}", file=str(image), hint="give the artifact built from this profile")
    return kind


def run_artifact_test(image: Path, comp: Any, plan: CheckPlan, monitor: Monitor, *, label: str,
                      boot: Any = None, container: ContainerTestOptions | None = None,
                      workdir: str | None = None,
                      on_result: Callable[[BootTestResult], None] | None = None) -> BootTestResult:
    """Test *image* (see the module docstring); *boot* is a backends.boottest.BootTestOptions. *on_result*: a
    booted image's result as soon as its checks are done, before the guest is destroyed (backends.boottest)."""
    kind = check_kind(image, plan, label)
    if kind == "rootfs":
        return run_container_test(image, plan, container or ContainerTestOptions(workdir=workdir), monitor,
                                  label=label)
    from ccis_workbench.backends.boottest import BootTestOptions, run_boot_test

    boot = boot if boot is not None else BootTestOptions(seed=plan.seed)
    image_login = None
    if boot.seed == "none" and boot.login == "seed":
        image_login = kickstart_login(comp)
        why = ("the image takes no seed and its kickstart creates no user with a plaintext password "
               f"(first-boot agent: {plan.agent})")
        boot = dataclasses.replace(boot, login="image" if image_login else "none", image_login=image_login,
                                   no_login_reason=why)
    pre = []
    if kind == "vagrant-box":
        from ccis_workbench.backends.vagrant_check import CHECK_ID, check_vagrant_box

        checked_members(image)  # a box with links, devices or `..` names is refused before vagrant unpacks it

        monitor.stage("vagrant", f"vagrant box add {image.name} (private VAGRANT_HOME)")
        monitor.check(CHECK_ID, "running", "")
        box = check_vagrant_box(image, f"ccis-boot-test-{label}")
        monitor.note("warning" if box.status == "failed" else "info", f"{box.status.upper()} {CHECK_ID}: {box.reason}")
        monitor.check(CHECK_ID, box.status, box.reason)
        pre.append(box)
    notes = [f"logged in as {image_login[0]}, the user the kickstart creates with a public plaintext password "
             "(the image takes no seed)"] if image_login else []

    def whole(result: BootTestResult) -> BootTestResult:
        """The boot's result as this artifact's: its own path, the box check first, how it was logged into."""
        return result.snapshot(image=str(image), checks=[*pre, *result.checks], notes=[*result.notes, *notes])

    early = (lambda result: on_result(whole(result))) if on_result is not None else None
    disk = disk_for(image, workdir)
    try:
        result = run_boot_test(disk.path, plan, boot, monitor, label=label, on_result=early)
    finally:
        disk.cleanup()
    return whole(result)

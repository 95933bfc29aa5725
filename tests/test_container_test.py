"""Container images (the docker target's rootfs tar) are checked without booting: both runners, for real.

The rootfs is a tiny real one made here from the host's static busybox (the same binary the rehearsal system
uses): /bin/sh and friends, an os-release, an empty machine-id and a shadow file with root locked. Each runner
runs real commands in it: the chroot runner with unshare + chroot, the podman runner with the real podman (the
test is skipped, and says so, only when podman is not installed; .ci/run installs it). Every test checks that
nothing is left behind: no podman image or container, no unpacked directory, no mount.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import pytest

from ccis_workbench.backends.container_test import (
    NAME_PREFIX,
    ContainerTestOptions,
    inspect_rootfs,
    run_container_test,
)
from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.model import Check
from ccis_workbench.core.monitor import RecordingMonitor
from ccis_workbench.core.report import junit_xml, render_summary
from tests.rootfs import BUSYBOX, busybox_rootfs_artifact

REPO = Path(__file__).resolve().parents[1]
PODMAN = shutil.which("podman")
pytestmark = pytest.mark.skipif(BUSYBOX is None, reason="busybox is not installed (apt-get install busybox-static)")

CHECKS = [
    Check("t.os-release", "os-release names the release", "grep '^VERSION_ID=' /etc/os-release",
          output='VERSION_ID="9"', timeout=30),
    Check("t.root-locked", "root is locked", "awk -F: '$1 == \"root\" { print ($2 ~ /^[!*]/ ? \"locked\" : "
          "\"NOT locked\") }' /etc/shadow", output="^locked$", timeout=30),
    Check("t.machine-id-empty", "machine-id is empty", "stat -c %s /etc/machine-id", output="^0$", timeout=30),
    Check("t.isolated", "own PID namespace, no network but loopback, root, the run's environment",
          "echo pid $$; echo uid $(id -u); echo ifaces $(grep -c : /proc/net/dev); echo ctx $CCIS_CONTEXT; "
          "cat /dev/null && echo devnull ok",
          output=r"(?s)pid 1\b.*uid 0.*ifaces 1\b.*ctx container.*devnull ok", timeout=30),
    Check("t.writes-stay-inside", "a check's writes do not reach the host", "touch /ccis-written && echo done",
          output="^done$", timeout=30),
]


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real rootfs tar (.rootfs.tar.xz) with a Containerfile beside it, as the build writes them."""
    return busybox_rootfs_artifact(tmp_path_factory.mktemp("rootfs"))


def _podman_leftovers() -> list[str]:
    if PODMAN is None:
        return []
    images = subprocess.run([PODMAN, "images", "--format", "{{.Repository}}"], capture_output=True, text=True,
                            check=False).stdout.split()
    ctrs = subprocess.run([PODMAN, "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True,
                          check=False).stdout.split()
    return [n for n in images + ctrs if NAME_PREFIX in n]


def _mounts_with(text: str) -> list[str]:
    return [ln for ln in Path("/proc/self/mountinfo").read_text().splitlines() if text in ln]


def _runners() -> list[object]:
    return ["chroot", pytest.param("podman", marks=pytest.mark.skipif(
        PODMAN is None, reason="podman is not installed (apt-get install podman runc): the podman runner did not "
        "run"))]


@pytest.mark.parametrize("runner", _runners())
def test_runner_runs_real_checks_as_root_in_isolation(rootfs: Path, runner: str, tmp_path: Path) -> None:
    mon = RecordingMonitor()
    result = run_container_test(rootfs, CHECKS, ContainerTestOptions(runner=runner, workdir=str(tmp_path)), mon,
                                label="Test Rootfs")
    got = {c.id: c for c in result.checks}
    assert result.ending == "completed", result.ending_message
    assert result.passed, render_summary(result)
    assert {c.id for c in CHECKS} == set(got)
    assert result.uri == runner and result.context == "container"
    assert not (Path("/") / "ccis-written").exists()
    # the structured per-check callback the TUI uses
    assert [a for _, k, a in mon.events if k == "check"] == [
        e for c in CHECKS for e in ((c.id, "running", ""), (c.id, "passed", "ok"))]
    # nothing left: no unpacked tree (the chroot runner unpacks under workdir), no mounts, no podman objects
    assert list(tmp_path.iterdir()) == []
    assert not _mounts_with(str(tmp_path)) and not _podman_leftovers()
    xml = junit_xml(result)
    assert 'classname="container" name="import-and-start"' in xml
    assert "Container check of Test Rootfs (test.rootfs.tar.xz): PASSED" in render_summary(result)
    if runner == "podman":
        assert "built from the artifact's Containerfile" in " ".join(n for _, n in mon.notes())


@pytest.mark.parametrize("runner", _runners())
def test_failing_and_hanging_checks_fail_the_run_readably(rootfs: Path, runner: str, tmp_path: Path) -> None:
    checks = [Check("t.fails", "a file that is not there", "ls /not-there", timeout=30),
              Check("t.hangs", "never answers", "sleep 60", timeout=2),
              Check("t.after", "still runs after a timeout", "echo alive", output="^alive$", timeout=30)]
    t0 = time.monotonic()
    result = run_container_test(rootfs, checks, ContainerTestOptions(runner=runner, workdir=str(tmp_path)))
    assert time.monotonic() - t0 < 45
    got = {c.id: c for c in result.checks}
    assert not result.passed and result.ending == "completed"
    assert got["t.fails"].status == "failed" and "No such file" in got["t.fails"].output
    assert got["t.hangs"].status == "failed" and got["t.hangs"].reason == "no answer within 2 s"
    assert got["t.after"].status == "passed"
    text = render_summary(result)
    assert "FAILED t.fails" in text and "$ ls /not-there" in text
    assert list(tmp_path.iterdir()) == [] and not _podman_leftovers()


@pytest.mark.parametrize("runner", _runners())
def test_cancel_stops_the_running_check_and_cleans_up(rootfs: Path, runner: str, tmp_path: Path) -> None:
    mon = RecordingMonitor()
    checks = [Check("t.first", "quick", "true", timeout=30), Check("t.long", "long", "sleep 120", timeout=300),
              Check("t.never", "never reached", "true", timeout=30)]

    def cancel_when_long_starts() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(k == "note" and a[1] == "check t.long" for _, k, a in list(mon.events)):
                time.sleep(0.5)
                mon.cancel_event.set()
                return
            time.sleep(0.05)

    th = threading.Thread(target=cancel_when_long_starts)
    th.start()
    t0 = time.monotonic()
    result = run_container_test(rootfs, checks, ContainerTestOptions(runner=runner, workdir=str(tmp_path)), mon)
    th.join()
    assert time.monotonic() - t0 < 60
    assert result.ending == "cancelled" and not result.passed
    got = {c.id: c.status for c in result.checks}
    assert got == {"t.first": "passed", "t.long": "error", "t.never": "error"}
    assert list(tmp_path.iterdir()) == [] and not _podman_leftovers()
    assert not _mounts_with(str(tmp_path))


def _tar_with(tmp_path: Path, name: str, members: dict[str, bytes], absolute: bool = False) -> Path:
    path = tmp_path / name
    with tarfile.open(path, "w:xz") as tf:
        for n, data in members.items():
            info = tarfile.TarInfo(("/" if absolute else "") + n)
            info.size = len(data)
            tf.addfile(info, __import__("io").BytesIO(data))
    return path


def test_bad_rootfs_tars_are_refused_with_the_file_named(tmp_path: Path) -> None:
    with pytest.raises(WorkbenchError) as e:
        inspect_rootfs(_tar_with(tmp_path, "nosh.rootfs.tar.xz", {"etc/os-release": b"x"}))
    assert e.value.title == "No shell in the rootfs" and str(e.value.location).endswith("nosh.rootfs.tar.xz")
    with pytest.raises(WorkbenchError) as e:
        inspect_rootfs(_tar_with(tmp_path, "evil.rootfs.tar.xz", {"bin/sh": b"", "../escape": b"x"}))
    assert e.value.title == "Unsafe rootfs tar" and "../escape" in e.value.message
    broken = tmp_path / "broken.rootfs.tar.xz"
    broken.write_bytes(b"\xfd7zXZ\x00 this is not xz")
    with pytest.raises(WorkbenchError) as e:
        inspect_rootfs(broken)
    assert e.value.title == "Not a readable rootfs tar" and str(e.value.location) == str(broken)
    with pytest.raises(WorkbenchError) as e:
        inspect_rootfs(tmp_path / "missing.rootfs.tar.xz")
    assert e.value.title == "Rootfs tar not found"
    with pytest.raises(WorkbenchError) as e:
        inspect_rootfs(tmp_path)
    assert e.value.title == "Rootfs tar not found"


@pytest.mark.skipif(PODMAN is None, reason="podman is not installed: the podman fallback did not run")
def test_auto_falls_back_to_chroot_when_podman_cannot_run_a_container(rootfs: Path, tmp_path: Path) -> None:
    """podman is there but cannot start a container with the runtime it is given: auto mode says so and runs the
    checks in the chroot runner; the image podman built is removed."""
    result = run_container_test(rootfs, CHECKS[:2], ContainerTestOptions(
        runner="auto", podman_runtime="ccis-no-such-runtime", workdir=str(tmp_path)))
    assert result.ending == "completed" and result.passed and result.uri == "chroot"
    assert any("podman could not run a container here" in n and "ccis-no-such-runtime" in n for n in result.notes)
    assert not _podman_leftovers() and list(tmp_path.iterdir()) == []
    strict = run_container_test(rootfs, CHECKS[:1], ContainerTestOptions(runner="podman",
                                                                         podman_runtime="ccis-no-such-runtime"))
    assert strict.ending == "error" and "podman cannot run containers here" in strict.ending_message
    assert [c.status for c in strict.checks] == ["error"] and not _podman_leftovers()


def test_a_workdir_that_does_not_exist_is_a_clear_error(rootfs: Path, tmp_path: Path) -> None:
    result = run_container_test(rootfs, CHECKS[:1], ContainerTestOptions(runner="chroot",
                                                                         workdir=str(tmp_path / "nope")))
    assert result.ending == "error" and "Cannot unpack here" in result.ending_message
    assert str(tmp_path / "nope") in result.ending_message and not (tmp_path / "nope").exists()


def test_a_bad_tar_ends_the_run_as_an_error_with_every_check_not_run(tmp_path: Path) -> None:
    bad = _tar_with(tmp_path, "nosh.rootfs.tar.xz", {"etc/os-release": b"x"})
    result = run_container_test(bad, CHECKS[:2], ContainerTestOptions(runner="chroot"))
    assert result.ending == "error" and "No shell in the rootfs" in result.ending_message
    assert [c.status for c in result.checks] == ["error", "error"]


def test_rootless_chroot_runner_uses_a_user_namespace(rootfs: Path, request: pytest.FixtureRequest) -> None:
    """As an unprivileged user, the chroot runner maps root in a user namespace (needs unprivileged userns)."""
    setpriv = shutil.which("setpriv")
    probe = subprocess.run([setpriv or "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "unshare",
                            "--user", "--map-root-user", "true"], capture_output=True, text=True, check=False)
    if os.geteuid() != 0 or setpriv is None or probe.returncode != 0:
        pytest.skip(f"cannot test as an unprivileged user here: {probe.stderr.strip() or 'not root / no setpriv'}")
    work = Path(tempfile.mkdtemp(prefix="ccis-rootless-", dir="/var/tmp"))  # reachable by nobody, unlike tmp_path
    request.addfinalizer(lambda: shutil.rmtree(work, ignore_errors=True))
    shutil.copy2(rootfs, work / rootfs.name)
    os.chown(work, 65534, 65534)
    os.chown(work / rootfs.name, 65534, 65534)
    code = ("import sys; from ccis_workbench.backends.container_test import *; from ccis_workbench.core.model import "
            "Check; r = run_container_test(sys.argv[1], [Check('u', 'root inside', 'id -u', output='^0$')], "
            "ContainerTestOptions(runner='chroot', workdir=sys.argv[2])); print(r.ending, r.passed, r.domain_type)")
    proc = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code,
                           str(work / rootfs.name), str(work)], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env=dict(os.environ, HOME=str(work)), check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("completed True") and "user namespace" in proc.stdout
    assert [p.name for p in work.iterdir()] == [rootfs.name]


def test_cli_checks_a_docker_profile_rootfs_and_refuses_the_wrong_kind(rootfs: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "ccis_workbench", "boot-test", str(rootfs), "--profile",
                           "docker-stream9", "--container-runner", "chroot", "--quiet", "-o", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=REPO, check=False)
    # the busybox rootfs is no CentOS image: the docker checks that ask rpm and systemctl fail, so exit 1
    assert proc.returncode == 1, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["context"] == "container" and report["ending"] == "completed" and report["seed"] == "none"
    status = {c["id"]: c["status"] for c in report["checks"]}
    assert status["baseline.os-release"] == "passed" and status["docker.machine-id-empty"] == "passed"
    assert status["docker.no-boot"] == "passed"
    assert status["image.seeded-user"] == "skipped" and status["baseline.sshd-active"] == "skipped"
    assert status["derived.packages-installed"] == "failed"
    assert "Container check of docker-stream9" in proc.stdout
    # a disk image with a docker profile, and a rootfs with a disk profile: both refused, exit 2, file named
    for image, profile in ((rootfs, "openstack-stream9"),):
        bad = subprocess.run([sys.executable, "-m", "ccis_workbench", "boot-test", str(image), "--profile", profile],
                             capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
        assert bad.returncode == 2 and "Wrong kind of artifact" in bad.stderr and str(image) in bad.stderr


@pytest.mark.libvirt
@pytest.mark.slow
@pytest.mark.parametrize("runner", _runners())
def test_rehearsal_docker_build_is_checked_as_a_container(docker_artifact: Path, runner: str,
                                                          tmp_path: Path) -> None:
    """The workbench's own build of docker-stream9 (rehearsal tree, real libvirtd/TCG, rootfs tar + Containerfile)
    passes the container checks the rehearsal system can answer; nothing boots, nothing is left."""
    before = {p.name: p.stat().st_mtime_ns for p in docker_artifact.iterdir()}
    (tmp_path / "work").mkdir()
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "ccis_workbench", "boot-test", str(docker_artifact),
                           "--container-runner", runner, "--workdir", str(tmp_path / "work"), "--quiet", "-o",
                           str(out)], capture_output=True, text=True, timeout=600, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "REHEARSAL image" in proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["context"] == "container" and report["uri"] == runner and report["boot_to_login"] is None
    ran = {c["id"]: c["status"] for c in report["checks"] if c["status"] != "skipped"}
    assert {"docker.no-kernel", "docker.masked-units", "docker.machine-id-empty", "baseline.root-locked",
            "derived.packages-installed", "derived.packages-removed"} <= set(ran)
    assert set(ran.values()) == {"passed"}
    assert {p.name: p.stat().st_mtime_ns for p in docker_artifact.iterdir()} == before
    assert not _podman_leftovers() and not list((tmp_path / "work").iterdir())


@pytest.fixture(scope="module")
def docker_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fixtures_libvirt import start_daemons

    start_daemons()
    out = tmp_path_factory.mktemp("docker-build")
    proc = subprocess.run([sys.executable, "-m", "ccis_workbench", "build", "docker-stream9", "--tree", "rehearsal",
                           "--accel", "tcg", "--disk-size", "256M", "--output", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=900, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (art,) = [d for d in out.iterdir() if (d / "manifest.json").exists()]
    assert (art / "Containerfile").is_file() and list(art.glob("*.rootfs.tar.xz"))
    return art

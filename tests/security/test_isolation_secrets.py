"""Isolation and secrets: container checks are never host root; boot-test credentials never reach what is kept.

The chroot runner is exercised for real (unshare/pivot_root/busybox) on a tiny rootfs made from the host's static
busybox, with hostile check commands: reading and writing host paths, making device nodes, looking at its own
ids. These tests matter most when the workbench runs as root (as it does here): then root in the checks must be
an unprivileged id on the host.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ccis_workbench.backends.container_test import ContainerTestOptions, run_container_test
from ccis_workbench.core.checkrun import CheckRun
from ccis_workbench.core.model import Check
from ccis_workbench.core.monitor import Monitor, RecordingMonitor
from ccis_workbench.core.report import BootTestResult, write_reports
from ccis_workbench.core.seed import (
    REDACTED,
    StreamRedactor,
    credential_dirs,
    keep_password,
    make_credentials,
    remove_stale_credentials,
)
from tests.fixtures_libvirt import left_behind
from tests.rootfs import BUSYBOX, busybox_root

REPO = Path(__file__).resolve().parents[2]
needs_busybox = pytest.mark.skipif(BUSYBOX is None, reason="busybox is not installed (apt-get install busybox-static)")
#: applets the hostile checks use, beyond tests/rootfs.py's
EXTRA_APPLETS = ("mknod", "mkdir", "mount", "chroot", "rm", "head", "ps", "tr")


@pytest.fixture(scope="module")
def hostile_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("hostile-rootfs")
    busybox_root(d / "root")
    for a in EXTRA_APPLETS:
        (d / "root" / "bin" / a).symlink_to("busybox")
    tar = d / "hostile.rootfs.tar.xz"
    subprocess.run(["tar", "--numeric-owner", "-cJf", str(tar), "-C", str(d / "root"), "."], check=True)
    return tar


def _run(rootfs: Path, checks: list[Check], work: Path, **options: object):
    work.mkdir(exist_ok=True)
    result = run_container_test(rootfs, checks, ContainerTestOptions(runner="chroot", workdir=str(work), **options))  # type: ignore[arg-type]
    assert result.ending == "completed", result.ending_message
    assert list(work.iterdir()) == [], "the unpacked rootfs was left behind"
    return {c.id: c for c in result.checks}, result


@needs_busybox
def test_chroot_check_cannot_read_or_write_host_paths(hostile_rootfs: Path, tmp_path: Path) -> None:
    """A host file outside the rootfs, readable by anyone, in a directory writable by anyone: the check sees
    neither (the host's file systems are detached, not just hidden by a chroot)."""
    host = tmp_path / "host"
    host.mkdir()
    host.chmod(0o777)
    secret = host / "secret.txt"
    secret.write_text("HOST-SECRET-CONTENT\n")
    secret.chmod(0o644)
    os.chmod(tmp_path, 0o755)
    checks = [
        Check(
            "read",
            "read a host file",
            f"cat {secret}; cat /proc/1/root{secret}; cat /proc/self/root{secret}",
            timeout=30,
        ),
        Check(
            "write",
            "write a host directory",
            f"echo pwned > {host}/written; mkdir -p {host}; echo pwned > {host}/written2 && echo wrote",
            timeout=30,
        ),
        Check(
            "escape",
            "the classic chroot escape",
            "mkdir -p /jail && chroot /jail /bin/sh -c true; "
            f"cd /; for i in 1 2 3 4 5 6 7 8 9 10; do cd ..; done; cat .{secret}; ls /",
            timeout=30,
        ),
        Check("mounts", "no host file system is mounted", "cat /proc/self/mountinfo", timeout=30),
    ]
    got, _ = _run(hostile_rootfs, checks, tmp_path / "work")
    for c in got.values():
        assert "HOST-SECRET-CONTENT" not in c.output, (c.id, c.output)
    assert "No such file" in got["read"].output
    assert sorted(p.name for p in host.iterdir()) == ["secret.txt"]
    assert "wrote" in got["write"].output  # it wrote into its own tree, where the same path is private to it
    # only what the runner mounted: the root, /proc, /dev and its few devices; nothing of the host's tree
    points = [ln.split()[4] for ln in got["mounts"].output.splitlines()]
    assert points and set(points) <= {
        "/",
        "/proc",
        "/dev",
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        "/dev/tty",
    }, points


@needs_busybox
def test_chroot_check_cannot_make_device_nodes(hostile_rootfs: Path, tmp_path: Path) -> None:
    checks = [
        Check(
            "blk",
            "a block device for the host's first disk",
            "mknod /tmp/sda b 8 0 && echo MADE-BLOCK; mknod /sda b 8 0 && echo MADE-BLOCK2; ls -l /tmp",
            timeout=30,
        ),
        Check("chr", "a character device for /dev/mem", "mknod /tmp/mem c 1 1 && echo MADE-CHAR", timeout=30),
        Check("mount", "mount a host disk", "mount -t ext4 /dev/sda /mnt && echo MOUNTED", timeout=30),
        Check("devs", "the minimal /dev", "ls /dev", timeout=30),
    ]
    got, _ = _run(hostile_rootfs, checks, tmp_path / "work")
    assert "MADE-BLOCK" not in got["blk"].output and "Operation not permitted" in got["blk"].output
    assert "MADE-CHAR" not in got["chr"].output and got["chr"].exit_status != 0
    assert "MOUNTED" not in got["mount"].output and got["mount"].exit_status != 0
    assert set(got["devs"].output.split()) == {"fd", "full", "null", "random", "tty", "urandom", "zero"}


def _host_uids_of(marker: str, stop: threading.Event, found: list[tuple[int, list[int]]]) -> None:
    """Poll the host's /proc for a process whose command line is *marker*: (pid, [real, eff, saved, fs])."""
    while not stop.is_set() and not found:
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                cmd = (p / "cmdline").read_bytes()
                if cmd == marker.encode():
                    uids = next(ln for ln in (p / "status").read_text().splitlines() if ln.startswith("Uid:"))
                    found.append((int(p.name), [int(x) for x in uids.split()[1:]]))
            except (OSError, StopIteration):
                continue
        stop.wait(0.05)


@needs_busybox
@pytest.mark.skipif(os.geteuid() != 0, reason="the claim is about a workbench that runs as root")
def test_chroot_check_is_root_inside_and_unprivileged_on_the_host(hostile_rootfs: Path, tmp_path: Path) -> None:
    marker = "sleep\x002.7182\x00"  # the check's sleep, as the host's /proc/PID/cmdline shows it
    checks = [
        Check(
            "ids",
            "root inside, an unprivileged id outside",
            "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map",
            timeout=30,
        ),
        Check("seen", "seen from the host", "sleep 2.7182", timeout=30),
    ]
    stop, found = threading.Event(), []
    th = threading.Thread(target=_host_uids_of, args=(marker, stop, found))
    th.start()
    try:
        got, result = _run(hostile_rootfs, checks, tmp_path / "work", host_id=0x71234567)
    finally:
        stop.set()
        th.join()
    lines = got["ids"].output.split("\n")
    assert lines[:2] == ["0", "0"], got["ids"].output
    assert lines[2].split() == ["0", str(0x71234567), "1"] and lines[3].split() == ["0", str(0x71234567), "1"]
    assert found, "the check's process was not seen on the host"
    pid, uids = found[0]
    assert uids == [0x71234567] * 4, (pid, uids)
    assert "container runner: chroot (asked for)" in " ".join(result.notes)
    assert "unprivileged host uid 1898136935" in result.domain_type


@needs_busybox
@pytest.mark.skipif(os.geteuid() != 0, reason="the claim is about a workbench that runs as root")
def test_chroot_runner_picks_a_fresh_unprivileged_id_by_default(hostile_rootfs: Path, tmp_path: Path) -> None:
    checks = [Check("map", "the uid map", "cat /proc/self/uid_map; stat -c %u /etc/os-release", timeout=30)]
    got, _ = _run(hostile_rootfs, checks, tmp_path / "work")
    inside, outside, count = got["map"].output.split("\n")[0].split()
    assert inside == "0" and int(outside) >= 0x70000000 and count == "1"
    assert got["map"].output.split("\n")[1] == "0"  # the unpacked files are root's inside (the same host id)
    passwd = {ln.split(":")[2] for ln in Path("/etc/passwd").read_text().splitlines() if ln.count(":") >= 2}
    assert outside not in passwd


PODMAN = shutil.which("podman")


@needs_busybox
@pytest.mark.skipif(PODMAN is None, reason="podman is not installed (apt-get install podman runc)")
def test_podman_checks_are_unprivileged_capless_offline_and_read_only(hostile_rootfs: Path, tmp_path: Path) -> None:
    checks = [
        Check("ids", "root inside; as root, unprivileged ids outside", "id -u; cat /proc/self/uid_map", timeout=60),
        Check("blk", "a block device", "mknod /tmp/sda b 8 0 && echo MADE-BLOCK", timeout=60),
        Check("caps", "capabilities", "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status", timeout=60),
        Check("ro", "the root is read-only", "touch /ccis-x 2>&1; echo after", timeout=60),
        Check("rw", "a check that must write", "touch /ccis-y && echo wrote", timeout=60),
        Check("net", "no network", "grep -c : /proc/net/dev", timeout=60),
    ]
    result = run_container_test(hostile_rootfs, checks, ContainerTestOptions(runner="podman"))
    assert result.ending == "completed", result.ending_message
    got = {c.id: c for c in result.checks}
    lines = got["ids"].output.split("\n")
    assert lines[0] == "0"
    inside, outside, count = lines[1].split()
    if os.geteuid() == 0:
        assert inside == "0" and int(outside) >= 0x70000000 and count == "65536", lines
        assert "root inside = unprivileged host ids" in result.domain_type
    assert "MADE-BLOCK" not in got["blk"].output and got["blk"].exit_status != 0
    caps = dict(ln.split(":\t") for ln in got["caps"].output.split("\n"))
    # CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER SETGID SETUID: bits 0 1 2 3 6 7
    assert int(caps["CapEff"], 16) == 0b11001111 and int(caps["CapBnd"], 16) == 0b11001111
    assert caps["NoNewPrivs"].strip() == "1"
    assert "Read-only file system" in got["ro"].output
    assert got["rw"].status == "passed" and "wrote" in got["rw"].output
    assert any("ran again with a writable root: touch /ccis-y" in n for n in result.notes)
    assert got["net"].output.strip() == "1"
    assert "container runner: podman (asked for)" in " ".join(result.notes)


# -- issue 19: the boot-test password in reports -------------------------------------------------------------

PASSWORD = "Xk7pQ2mNw9RtY4vBz8LcHs3J"  # the shape make_credentials gives: 24 letters and digits
KEY_LINE = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW"


def _stream(redactor: StreamRedactor, chunks: list[str]) -> str:
    return "".join(redactor.feed(c) for c in chunks) + redactor.flush()


@pytest.mark.parametrize("secret", [PASSWORD, KEY_LINE])
def test_stream_redactor_catches_a_secret_split_anywhere_across_two_and_three_reads(secret: str) -> None:
    text = f"login ok\n[root@x ~]# cat /seed\npassword: {secret}\nend {secret}{secret} tail\n"
    want = text.replace(secret, REDACTED)
    start = text.index(secret)
    cuts = range(start, start + len(secret) + 1)
    for i in cuts:
        out = _stream(StreamRedactor([PASSWORD, KEY_LINE]), [text[:i], text[i:]])
        assert out == want, i
    for i in cuts:
        for j in range(i, start + len(secret) + 1):
            out = _stream(StreamRedactor([PASSWORD, KEY_LINE]), [text[:i], text[i:j], text[j:]])
            assert out == want, (i, j)
    # one character at a time, the worst case
    assert _stream(StreamRedactor([PASSWORD, KEY_LINE]), list(text)) == want


def test_stream_redactor_shows_everything_else_at_once_and_redacts_a_cut_off_secret() -> None:
    r = StreamRedactor([PASSWORD])
    assert r.feed("no secret here\n") == "no secret here\n"
    assert r.feed("pass " + PASSWORD[:10]) == "pass "  # held: it may be the password
    assert r.feed("zzz") == PASSWORD[:10] + "zzz"  # it was not
    assert r.feed("x" + PASSWORD[:12]) == "x"
    assert r.flush() == REDACTED  # the stream ended inside the password: its start is not shown either
    assert StreamRedactor([]).feed("abc") == "abc"


def test_console_never_shows_the_password_split_across_reads() -> None:
    from ccis_workbench.backends.boottest import _Console

    mon = RecordingMonitor()
    console = _Console(mon, [PASSWORD])
    text = f"ccis login: ccis-ab12\nPassword: \nnope {PASSWORD} again {PASSWORD}\n"
    step = 5
    for k in range(0, len(text), step):
        console.write(text[k : k + step])
    console.close()
    shown = "".join(a[1] for _, kind, a in mon.events if kind == "output")
    assert PASSWORD not in shown and PASSWORD not in console.text()
    assert console.text() == text.replace(PASSWORD, REDACTED)


def test_a_check_printing_the_password_yields_reports_without_it(tmp_path: Path) -> None:
    """What a check prints comes from the shell's unredacted buffer: CheckRun redacts it before it is judged or
    kept, and redact_result scrubs the whole result before any report is written."""
    from ccis_workbench.backends.boottest import redact_result

    creds = make_credentials("ccis-test", tmp_root=tmp_path)
    try:
        run = CheckRun([Check("leak", "prints the password", "cat /seed/user-data", output="password")], Monitor())
        run.redact = creds.redact
        out = f"#cloud-config\npassword: {creds.password}\nssh_authorized_keys:\n  - {creds.public_key}\n"
        res = run.judge(run.selected[0][0], "custom", 0, out, 0.1)
        assert creds.password not in res.output and "password: [redacted]" in res.output
        result = BootTestResult(
            run_id="r",
            label="l",
            image="i",
            started="s",
            uri="u",
            domain="d",
            domain_type="qemu",
            seed="nocloud",
            user=creds.user,
        )
        result.checks.append(res)
        # anything that slipped in elsewhere (a note, an ending message, the console) is scrubbed as well
        result.notes.append(f"note {creds.password}")
        result.ending_message = f"ended {creds.password[:12]}|{creds.password[12:]}".replace("|", "")
        result.console_log = f"console {creds.password}\n"
        redact_result(result, creds.secrets())
        paths = write_reports(result, tmp_path / "report")
        for p in paths.values():
            text = p.read_text()
            assert creds.password not in text, p
            assert not any(s in text for s in creds.secrets()), p
        assert "password: [redacted]" in (tmp_path / "report" / "junit.xml").read_text()
    finally:
        creds.cleanup()


# -- issue 14: per-run boot-test credentials on the host -----------------------------------------------------

_MAKE_AND_WAIT = (
    "import sys, time; from ccis_workbench.core.seed import make_credentials; "
    "c = make_credentials('ccis-killed', tmp_root=sys.argv[1] or None); print(c.workdir, flush=True); time.sleep(600)"
)


def _killed_run_dir(tmp_root: str) -> Path:
    """Credentials made by a workbench process that is then killed with SIGKILL (nothing of it can clean up)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _MAKE_AND_WAIT, tmp_root], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert proc.stdout is not None
        d = Path(proc.stdout.readline().strip())
        assert (d / "id_ed25519").is_file()
        live = {c.path: c.live for c in credential_dirs(d.parent)}
        assert live[d] is True  # its run is alive: gc must leave it
        if tmp_root:  # a private root: gc may run there while the owner lives, and must keep it
            assert not remove_stale_credentials(d.parent)[0].removed and d.exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert d.exists()  # SIGKILL: the run could not remove it
    return d


def test_private_key_is_0600_in_a_0700_directory_and_removed_on_cleanup(tmp_path: Path) -> None:
    creds = make_credentials("ccis-mode", tmp_root=tmp_path)
    d = creds.workdir
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE(creds.private_key.stat().st_mode) == 0o600
    assert creds.private_key.parent == d
    assert sorted(p.name for p in d.iterdir()) == ["id_ed25519", "id_ed25519.pub", "owner"]
    assert stat.S_IMODE((d / "owner").stat().st_mode) == 0o600
    assert creds.password not in repr(creds)
    keep_password(creds, "ccis-bt-x")  # --keep-on-failure: the password joins the key, 0600 from the start
    assert stat.S_IMODE((d / "password").stat().st_mode) == 0o600
    creds.cleanup()
    assert not d.exists()


def test_a_killed_runs_credentials_are_removed_by_the_next_gc(tmp_path: Path) -> None:
    d = _killed_run_dir(str(tmp_path))
    found = remove_stale_credentials(tmp_path)
    assert [(c.path, c.live, c.removed) for c in found] == [(d, False, True)]
    assert not d.exists()


def test_gc_command_removes_a_killed_runs_credentials(tmp_path: Path) -> None:
    """The real `gc` command (against libvirt's test driver, so no domain of this host is touched) removes the
    credentials directory a SIGKILLed run left in the system's temporary directory."""
    pytest.importorskip("libvirt")
    d = _killed_run_dir("")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "ccis_workbench", "gc", "--uri", "test:///default", "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            check=False,
        )
        items = {i["name"]: i for i in json.loads(proc.stdout)}
        assert items[str(d)]["kind"] == "keydir" and items[str(d)]["removed"], proc.stdout
        assert not d.exists()
    finally:
        shutil.rmtree(d, ignore_errors=True)


# -- a real boot test (rehearsal image, real libvirtd + qemu TCG): where the credentials go -----------------


@pytest.fixture(scope="module")
def rehearsal_artifact(tmp_path_factory: pytest.TempPathFactory, libvirt_uri: str) -> Path:
    out = tmp_path_factory.mktemp("rehearsal-artifacts")
    res = subprocess.run(
        [sys.executable, "-m", "ccis_workbench", "build", "openstack-stream9", "--tree", "rehearsal", "--accel", "tcg",
         "--disk-size", "256M", "--format", "qcow2", "--output", str(out), "--quiet"],
        capture_output=True, text=True, timeout=900, cwd=REPO, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (art,) = [d for d in out.iterdir() if (d / "manifest.json").exists()]
    return art


def _cleanup_guest(uri: str, prefix: str) -> None:
    for name in left_behind(uri, prefix):
        subprocess.run(["virsh", "-c", uri, "destroy", name], capture_output=True, check=False)
        subprocess.run(["virsh", "-c", uri, "vol-delete", "--pool", "ccis-workbench", name], capture_output=True,
                       check=False)  # fmt: skip


def _unique_secrets(creds: object) -> list[str]:
    """The password and the private key's lines but the first (the same for every unencrypted OpenSSH key)."""
    return [creds.password, *creds.secrets()[2:]]  # type: ignore[attr-defined]


def _secrets_on_the_host(needles: list[bytes], own: set[int]) -> list[str]:
    """Processes (other than this test's own) whose argv or environment holds one of *needles*."""
    hits = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) in own:
            continue
        for what in ("cmdline", "environ"):
            try:
                data = (p / what).read_bytes()
            except OSError:
                continue
            if any(n in data for n in needles):
                hits.append(f"{p.name} {what}: {data[:200]!r}")
    return hits


@pytest.mark.libvirt
@pytest.mark.slow
def test_boot_test_credentials_reach_no_argv_environment_report_log_or_artifact(
    rehearsal_artifact: Path, libvirt_uri: str, tmp_path: Path
) -> None:
    """A real boot test of the rehearsal image with a check that prints the seed (the password in clear): while it
    runs, no process on the host has the password or the private key in its argv or environment; the key is
    0600 in a 0700 directory; afterwards the directory is gone and neither the reports, the console log, what
    the monitor streamed, nor the artifact holds the password or a line of the key."""
    from ccis_workbench.backends.boottest import BootTest, BootTestOptions
    from ccis_workbench.core.catalog import Catalog
    from ccis_workbench.core.compose import Composer
    from ccis_workbench.core.testspec import SelectedCheck, load_spec, select_checks

    cat = Catalog.load(REPO)
    plan = select_checks(load_spec(REPO), Composer(cat).compose(cat.load_profile("openstack-stream9")), rehearsal=True)
    leak = Check("leak.seed", "prints the seed's user-data, password included",
                 "cat /run/rehearsal-seed/user-data", output="^password: ", timeout=30)  # fmt: skip
    plan.selected.append(SelectedCheck(leak, "profile"))
    image = next(rehearsal_artifact.glob("*.qcow2"))
    mon = RecordingMonitor()
    bt = BootTest(image, plan, BootTestOptions(uri=libvirt_uri, accel="tcg", seed="nocloud", rehearsal=True), mon,
                  label="secrets")  # fmt: skip
    seen: dict[str, object] = {"hits": [], "scans": 0}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            creds = bt.creds
            if creds is not None:
                if "dir" not in seen:
                    seen["dir"] = creds.workdir
                    seen["modes"] = (stat.S_IMODE(creds.workdir.stat().st_mode),
                                     stat.S_IMODE(creds.private_key.stat().st_mode))  # fmt: skip
                needles = [s.encode() for s in _unique_secrets(creds)]
                seen["hits"] += _secrets_on_the_host(needles, {os.getpid()})  # type: ignore[operator]
                seen["scans"] += 1  # type: ignore[operator]
            stop.wait(0.2)

    th = threading.Thread(target=watch)
    th.start()
    try:
        result = bt.run()
    finally:
        stop.set()
        th.join()
        _cleanup_guest(libvirt_uri, bt.name)
    secrets = _unique_secrets(bt.creds)
    assert result.ending == "completed", result.ending_message
    got = {c.id: c for c in result.checks}
    assert got["leak.seed"].status == "passed" and "password: [redacted]" in got["leak.seed"].output
    assert seen["scans"] and seen["hits"] == [], seen["hits"]
    assert seen["modes"] == (0o700, 0o600)
    assert not Path(seen["dir"]).exists()  # type: ignore[arg-type]
    paths = write_reports(result, tmp_path / "report")
    streamed = "".join(str(a) for _, _, a in mon.events)
    texts = {str(p): p.read_text() for p in paths.values()}
    texts["monitor"] = streamed
    for where, text in texts.items():
        assert not [s for s in secrets if s in text], where
    for f in rehearsal_artifact.iterdir():
        data = f.read_bytes()
        assert not [s for s in secrets if s.encode() in data], f
    assert left_behind(libvirt_uri, bt.name) == []


_KILLED_BOOT_TEST = (
    "import sys; from ccis_workbench.backends.boottest import BootTestOptions, run_boot_test; "
    "from ccis_workbench.core.model import Check; "
    "run_boot_test(sys.argv[1], [Check('t', 'true', 'true')], BootTestOptions(uri=sys.argv[2], accel='tcg', "
    "seed='nocloud', rehearsal=True, run_id=sys.argv[3]), label='secrets-killed')"
)


@pytest.mark.libvirt
@pytest.mark.slow
def test_a_sigkilled_boot_test_leaves_credentials_that_gc_removes(rehearsal_artifact: Path, libvirt_uri: str) -> None:
    """A boot test killed with SIGKILL while its guest boots: nothing of it could clean up; the credentials
    directory it left is found (its run is gone) and removed by gc's credentials sweep."""
    from ccis_workbench.core.plan import new_build_id

    run_id = new_build_id()
    domain = f"ccis-boottest-secrets-killed-{run_id}"
    image = next(rehearsal_artifact.glob("*.qcow2"))
    before = {c.path for c in credential_dirs()}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_BOOT_TEST, str(image), libvirt_uri, run_id], cwd=REPO)
    mine: list[Path] = []
    try:
        # until its credentials and its guest exist (a poll, not a timing assertion): once the domain is there,
        # every volume was made before it, so nothing of the killed run is still on its way to libvirtd
        for _ in range(1200):
            mine = [c.path for c in credential_dirs() if c.path not in before and c.live]
            if (mine and domain in left_behind(libvirt_uri, domain)) or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert mine and proc.poll() is None, "the boot test made no credentials directory"
        assert domain in left_behind(libvirt_uri, domain), "its guest is not running"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    try:
        assert mine and all(d.exists() for d in mine)  # SIGKILL: it could not remove them
        found = {c.path: c for c in remove_stale_credentials()}
        assert all(found[d].removed and not found[d].live for d in mine)
        assert not any(d.exists() for d in mine)
    finally:
        for d in mine:
            shutil.rmtree(d, ignore_errors=True)
        _cleanup_guest(libvirt_uri, domain)
    assert left_behind(libvirt_uri, domain) == []


_IN_A_USERNS = (
    "import sys; from ccis_workbench.backends.container_test import ContainerTestOptions, run_container_test; "
    "from ccis_workbench.core.model import Check; "
    "r = run_container_test(sys.argv[1], [Check('u', 'never runs', 'echo RAN')], "
    "ContainerTestOptions(runner='chroot', workdir=sys.argv[2])); "
    "print(r.ending); print(r.ending_message); print([(c.status, c.output) for c in r.checks])"
)


@needs_busybox
def test_chroot_runner_refuses_and_says_why_when_it_cannot_isolate(hostile_rootfs: Path, tmp_path: Path) -> None:
    """The workbench is root, but only of a user namespace that maps no other id: the chroot runner cannot give the
    checks an unprivileged id of their own, so it refuses with the reason; no check runs, nothing is left."""
    work = tmp_path / "work"
    work.mkdir()
    os.chmod(tmp_path, 0o755)
    proc = subprocess.run(
        ["unshare", "--user", "--map-root-user", sys.executable, "-c", _IN_A_USERNS, str(hostile_rootfs), str(work)],
        capture_output=True, text=True, timeout=120, cwd=REPO, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    ending, message, checks = proc.stdout.splitlines()[:3]
    assert ending == "error"
    assert message.startswith("The chroot runner cannot isolate the checks here: "), message
    assert "RAN" not in checks and "'error'" in checks
    assert list(work.iterdir()) == []

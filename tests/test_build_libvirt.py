"""Builds on a real libvirtd (qemu:///system, TCG) from the rehearsal tree served on 127.0.0.1.

Each test checks what the user sees (status, message, offending lines) and that nothing is left behind: no
ccis- domain, no ccis- volume (the `no_leftovers` fixture), no partial artifact directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures_libvirt import leftovers

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
SMALL = ["--accel", "tcg", "--disk-size", "96M", "--memory", "512", "--quiet"]


def plan_for(catalog_root: Path, profile_yaml: str, tree_url: str, out: Path, **opts: object):
    from ccis_workbench.core.catalog import Catalog
    from ccis_workbench.core.compose import Composer
    from ccis_workbench.core.installsource import from_url
    from ccis_workbench.core.plan import PlanOptions, make_plan

    cat = Catalog.load(catalog_root)
    profile = cat.parse_profile_text(profile_yaml, "profiles/test.yaml")
    comp = Composer(cat).compose(profile)
    src = from_url(tree_url, cache=out.parent / "cache")
    base: dict[str, object] = {"accel": "tcg", "disk_size_mb": 96, "memory_mb": 512, "output_dir": str(out),
                               "inactivity_timeout": 60.0, "total_timeout": 240.0}
    base.update(opts)
    return make_plan(comp, profile.name, src, PlanOptions(**base))  # type: ignore[arg-type]


def profile(name: str, kickstart: str) -> str:
    body = "".join(f"  {line}\n" for line in kickstart.strip().splitlines())
    return (f"name: {name}\nrelease: centos-stream-9\ntarget: openstack\noverlays: []\nvariables:\n"
            f"  disk_size: 2\nkickstart: |\n{body}")


def test_end_to_end_cli_every_format(no_leftovers: str, tree_server: str, tmp_path: Path) -> None:
    """`ccis-workbench build openstack-stream9 --tree URL --accel tcg`: artifacts pass the real readers."""
    out = tmp_path / "artifacts"
    fmts = ["qcow2", "raw", "vmdk", "vhd", "ova", "gce-tar", "vagrant-libvirt", "rootfs-tar"]
    argv = [sys.executable, "-m", "ccis_workbench", "build", "openstack-stream9", "--tree", tree_server,
            "--output", str(out), *SMALL, *[a for f in fmts for a in ("--format", f)]]
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=400, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "== install" in proc.stderr and "build succeeded" in proc.stderr
    (art,) = list(out.iterdir())
    files = {p.name: p for p in art.iterdir()}
    base = "openstack-stream9-rehearsal.x86_64"
    for disk, fmt in ((".qcow2", "qcow2"), (".raw", "raw"), (".vmdk", "vmdk")):
        info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(files[base + disk])],
                                         capture_output=True, text=True, check=True).stdout)
        assert info["format"] == fmt and info["virtual-size"] == 96 << 20
    subprocess.run(["qemu-img", "check", str(files[base + ".qcow2"])], check=True, capture_output=True)
    subprocess.run(["qemu-img", "info", "-f", "vpc", str(files[base + ".vhd"])], check=True, capture_output=True)
    listing = subprocess.run(["tar", "-tzf", str(files[base + ".tar.gz"])], capture_output=True, text=True,
                             check=True).stdout.split()
    assert listing == ["disk.raw"]
    assert subprocess.run(["tar", "-tf", str(files[base + ".ova"])], capture_output=True, text=True,
                          check=True).stdout.split() == ["image.ovf", "image.mf", "disk1.vmdk"]
    assert sorted(subprocess.run(["tar", "-tzf", str(files[base + ".vagrant-libvirt.box"])], capture_output=True,
                                 text=True, check=True).stdout.split()) == ["Vagrantfile", "box.img", "metadata.json"]
    rootfs = subprocess.run(["tar", "-tJf", str(files[base + ".rootfs.tar.xz"])], capture_output=True, text=True,
                            check=True).stdout.split()
    assert "etc/os-release" in rootfs and "etc/cloud/cloud.cfg.d/" in rootfs
    assert not any(n.startswith(("boot/", "proc/")) for n in rootfs)
    # the raw disk is what the installer wrote: openstack claims BIOS and UEFI on Stream 9, so a GPT disk behind a
    # protective MBR (type 0xee) whose boot code is syslinux's gptmbr.bin, for the BIOS path
    head = files[base + ".raw"].read_bytes()[:1024]
    mbr = head[:512]
    assert mbr[510:512] == b"\x55\xaa" and mbr[450] == 0xEE and head[512:520] == b"EFI PART"
    gptmbr = next(p for p in (Path("/usr/lib/EXTLINUX/gptmbr.bin"), Path("/usr/lib/syslinux/mbr/gptmbr.bin"))
                  if p.exists())
    assert mbr[:440] == gptmbr.read_bytes()[:440]
    assert "Installation complete" in files["console.log"].read_text()
    assert "Installing cloud-init" in files["installer.log"].read_text()
    assert "cloud-init-0-rehearsal.noarch" in files["packages.txt"].read_text().split()
    manifest = json.loads(files["manifest.json"].read_text())
    assert manifest["rehearsal"] is True and manifest["install_tree"]["kind"] == "url"
    assert {"prepare", "upload", "install", "download"} <= set(manifest["timings"])
    subprocess.run(["sha256sum", "-c", "CHECKSUM"], cwd=art, check=True, capture_output=True)


def test_post_erroronfail_fails_the_build(no_leftovers: str, tree_server: str, mini_catalog: Path,
                                          tmp_path: Path) -> None:
    from ccis_workbench.backends.libvirt_build import Build, BuildFailed
    from ccis_workbench.core.monitor import RecordingMonitor

    out = tmp_path / "artifacts"
    plan = plan_for(mini_catalog, profile("fails", "%post --erroronfail\necho going to fail\nexit 1\n%end"),
                    tree_server, out)
    mon = RecordingMonitor()
    with pytest.raises(BuildFailed) as ei:
        Build(plan, mon).run()
    r = ei.value.result
    assert r.status == "failed" and r.kind == "post-failed", r
    assert r.title == "A %post script failed"
    assert any(line.startswith("Error: %post script failed") for line in r.lines), r.lines
    assert "Traceback (most recent call last):" in r.lines
    assert ei.value.exit_status == 1
    assert not out.exists() or list(out.iterdir()) == []
    assert r.logs_dir and "going to fail" in Path(r.logs_dir, "installer.log").read_text()
    assert ("error", f"{r.title}: {r.message}") in mon.notes()


def test_stalled_guest_is_reported_with_the_other_accelerator(no_leftovers: str, tree_server: str,
                                                              mini_catalog: Path, tmp_path: Path) -> None:
    from ccis_workbench.backends.libvirt_build import Build, BuildFailed

    plan = plan_for(mini_catalog, profile("stalls", "%pre\nsleep 100000\n%end"), tree_server, tmp_path / "out",
                    inactivity_timeout=15.0)
    with pytest.raises(BuildFailed) as ei:
        Build(plan).run()
    r = ei.value.result
    assert r.status == "stalled", r
    assert "no console or installer-log output for 15s" in r.message
    assert "--accel kvm" in r.hint  # TCG build: the hint names the other accelerator
    assert any("Running pre-installation scripts" in line for line in r.lines)


class CancelWhenInstallerStarts:
    """A monitor that presses cancel as soon as the installer says hello (no timers)."""

    def __init__(self) -> None:
        from ccis_workbench.core.monitor import RecordingMonitor

        self.rec = RecordingMonitor()
        self.cancel_at: float | None = None

    def __getattr__(self, name: str) -> object:
        return getattr(self.rec, name)

    def output(self, channel: str, text: str) -> None:
        self.rec.output(channel, text)
        if self.cancel_at is None and "Starting installer" in self.rec.text("console"):
            self.cancel_at = time.monotonic()
            self.rec.cancel_event.set()


def test_cancel_cleans_up_within_five_seconds(no_leftovers: str, tree_server: str, mini_catalog: Path,
                                              tmp_path: Path) -> None:
    from ccis_workbench.backends.libvirt_build import Build, BuildFailed

    plan = plan_for(mini_catalog, profile("cancelled", "%post\necho hi\n%end"), tree_server, tmp_path / "out")
    mon = CancelWhenInstallerStarts()
    with pytest.raises(BuildFailed) as ei:
        Build(plan, mon).run()  # type: ignore[arg-type]
    done = time.monotonic()
    assert ei.value.result.status == "cancelled"
    assert mon.cancel_at is not None and done - mon.cancel_at < 5.0
    assert not [n for n in leftovers(no_leftovers) if plan.build_id in n]


def test_cli_sigint_cancels(no_leftovers: str, tree_server: str, tmp_path: Path) -> None:
    """Ctrl-C in the CLI: one SIGINT cancels, exit status 130, nothing left."""
    argv = [sys.executable, "-u", "-m", "ccis_workbench", "build", "openstack-stream9", "--tree", tree_server,
            "--output", str(tmp_path / "out"), "--accel", "tcg", "--disk-size", "96M", "--memory", "512"]
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:  # the live console on stdout
        if "Starting installer" in line:
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "build cancelled" in err
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_gc_finds_and_removes_leftovers(libvirt_uri: str, tmp_path: Path) -> None:
    from ccis_workbench.backends.libvirt_build import connect, ensure_pool, gc

    conn = connect(libvirt_uri)
    try:
        pool = ensure_pool(conn)
        name = "ccis-gc-test-20260101-000000-dead-disk.qcow2"
        pool.createXML(f"<volume><name>{name}</name><capacity unit='bytes'>1048576</capacity>"
                       "<target><format type='qcow2'/></target></volume>", 0)
        dom = conn.createXML("<domain type='qemu'><name>ccis-gc-test-20260101-000000-dead</name>"
                             "<memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os>"
                             "<devices/></domain>", 1)  # VIR_DOMAIN_START_PAUSED
        assert dom.isActive()
    finally:
        conn.close()
    listed = gc(libvirt_uri, dry_run=True)
    assert {("volume", name), ("domain", "ccis-gc-test-20260101-000000-dead")} <= {(i.kind, i.name) for i in listed}
    assert not any(i.removed for i in listed)
    proc = subprocess.run([sys.executable, "-m", "ccis_workbench", "gc", "--json"], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)
    items = {i["name"]: i for i in json.loads(proc.stdout)}
    assert proc.returncode == 0, proc.stdout
    assert items[name]["removed"] and items["ccis-gc-test-20260101-000000-dead"]["removed"]
    assert all(i["removed"] or i["live"] for i in items.values())  # live builds of other runs are kept
    assert not [n for n in leftovers(libvirt_uri) if "gc-test" in n]


def test_doctor(libvirt_uri: str, tmp_path: Path) -> None:
    """`doctor` probes TCG with a real guest; KVM (which hangs on these hosts, never run in tests) is reported from
    the verdict recorded for this host, as a build's probe records it."""
    from ccis_workbench.backends.libvirt_session import connect, hypervisor_key, record_verdict

    conn = connect(libvirt_uri)
    try:
        key = hypervisor_key(conn)
    finally:
        conn.close()
    cache = tmp_path / "cache"
    record_verdict(key, False, "no output from the running kernel within 15 s under KVM", cache / "ccis-workbench")
    proc = subprocess.run([sys.executable, "-m", "ccis_workbench", "doctor", "--json"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False,
                          env=dict(os.environ, XDG_CACHE_HOME=str(cache)))
    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    assert checks["libvirt"]["ok"] and checks["pool"]["ok"] and checks["qemu-img"]["ok"]
    assert checks["tcg"]["ok"] and "the kernel ran after" in checks["tcg"]["message"]
    if "kvm" in checks and "no usable /dev/kvm" not in checks["kvm"]["message"]:
        assert not checks["kvm"]["ok"] and checks["kvm"]["message"].startswith("KVM present but guests do not run")
    assert proc.returncode == 0


def test_unreachable_uri_is_explained(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "ccis_workbench", "doctor", "--uri",
                           "qemu+unix:///system?socket=/nonexistent/sock"], cwd=REPO, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 1
    assert "[FAIL] libvirt" in proc.stdout and "fix:" in proc.stdout


def _libvirtd_pid() -> int | None:
    for p in ("/run/libvirtd.pid", "/var/run/libvirtd.pid"):
        try:
            return int(Path(p).read_text().strip())
        except (OSError, ValueError):
            continue
    return None


def test_libvirtd_restart_during_build(no_leftovers: str, tree_server: str, mini_catalog: Path,
                                       tmp_path: Path) -> None:
    """libvirtd is stopped and started again mid-install: the build says so plainly and cleans up."""
    import threading

    from ccis_workbench.backends.libvirt_build import Build, BuildFailed
    from tests.fixtures_libvirt import start_daemons

    pid = _libvirtd_pid()
    if pid is None:
        pytest.skip("libvirtd has no pid file (not started with -d)")

    def restart_when_gone() -> None:
        while _pid_alive(pid):
            time.sleep(0.1)  # waiting for a process to exit, not for a test step
        start_daemons()

    restarter = threading.Thread(target=restart_when_gone, daemon=True)

    class RestartWhenInstalling(CancelWhenInstallerStarts):
        def output(self, channel: str, text: str) -> None:
            self.rec.output(channel, text)
            # the installer's first line, or a later one of its own when the console attached late (a loaded host)
            seen = self.rec.text("console")
            if self.cancel_at is None and ("Starting installer" in seen or "anaconda (rehearsal)" in seen):
                self.cancel_at = time.monotonic()
                os.kill(pid, signal.SIGTERM)  # the libvirtd the session fixture made sure of
                restarter.start()

    plan = plan_for(mini_catalog, profile("restart", "%post\necho hi\n%end"), tree_server, tmp_path / "out")
    mon = RestartWhenInstalling()
    try:
        try:
            Build(plan, mon).run()  # type: ignore[arg-type]
            survived = True
        except BuildFailed as exc:
            survived = False
            assert exc.result.status in ("lost", "crashed"), exc.result
        assert mon.cancel_at is not None
        notes = " ".join(m for _, m in mon.rec.notes())
        print("restart outcome:", "survived" if survived else "lost", notes)
        assert "lost the connection to libvirtd" in notes
        if survived:
            assert "reattached" in notes
    finally:
        if restarter.is_alive():
            restarter.join(timeout=60)
        start_daemons()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False

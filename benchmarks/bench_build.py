#!/usr/bin/env python3
"""Benchmark a rehearsal build: `ccis-workbench build` against `virt-install`, same inputs, alternating rounds.

Both sides get exactly the same inputs:
- the rehearsal install tree, built once and served over HTTP on 127.0.0.1 by this script (one server, one URL);
- the kickstart the workbench's plan prepares (`make_plan(...).kickstart`, profile openstack-stream9 by default);
  the workbench's manifest.json must carry the same kickstart sha256, or the run is refused;
- the plan's installer kernel command line (inst.ks=file:/ks.cfg inst.repo=http://10.0.2.2:PORT/ console=...);
- disk size (96 MiB qcow2 by default), memory, vCPUs, accelerator TCG (virt-install --virt-type qemu), user-mode
  networking (virt-install needs `--network user` here: no libvirt network is active).

virt-install: `--location URL --initrd-inject ks.cfg --extra-args CMDLINE --disk pool=ccis-workbench,size=...,
format=qcow2 --noautoconsole --wait --noreboot`, with a serial log so its success is checked ("Installation
complete" on the console). Workbench: the CLI, `ccis-workbench build PROFILE --tree URL --accel tcg
--format qcow2 --quiet`, in a subprocess, so both sides pay interpreter start-up and argument handling.
Rounds alternate and swap order every round (vi, wb | wb, vi | ...), so a slow phase of the host hits both.

What differs, and how the figures account for it:
- virt-install leaves the installed disk in the pool as a plain qcow2 and leaves format conversion to the user;
  the workbench downloads the disk from its volume and writes a compressed qcow2 artifact plus logs,
  manifest and CHECKSUM. So two ratios are printed: "as delivered" (virt-install + `qemu-img convert -c -O
  qcow2`, the conversion the workbench does, vs the workbench's full run) and "without conversion"
  (virt-install alone vs the workbench minus its qcow2 conversion, timed by its manifest).
- virt-install downloads kernel and initrd from the tree on every run; the workbench keeps them in its cache
  ($XDG_CACHE_HOME, a fresh directory per benchmark run: round 1 downloads, later rounds must download nothing).
- virt-install defines a persistent domain (undefined afterwards by this script); the workbench's is transient.
- Each tool keeps its own domain defaults: virt-install (osinfo linux2022) uses machine q35, no HPET, a virtio
  balloon and a guest-agent channel; the workbench uses machine pc, the installer-log virtio-serial channel
  and no balloon. The guest kernel's own power-off timestamp is printed for both, to tell guest speed from
  tool overhead.
- On a shared host the guest's run varies by several seconds between rounds; the overhead figures (wall minus
  the guest's run) are much steadier than the wall-time ratio, so both the ratio of medians and the median of
  the per-round ratios are printed.

Figures:
- wall time of each side per round and the medians; ratio = workbench / virt-install (goal <= 1.0);
- the guest's run on both sides, from libvirt's own qemu log (`starting up` .. `shutting down`), the same clock;
- the workbench's own overhead = wall - the guest's run (goal < 1 s), and its in-build stage times from the
  monitor's stage events (timestamped as they arrive on stderr) and manifest.json;
- bytes the workbench downloaded per round (manifest install_tree.downloaded; 0 from round 2 on).

Every domain and volume created (virt-install's too) is removed in `finally`, also on Ctrl-C or SIGTERM.
Usage: python benchmarks/bench_build.py [--rounds N] [--profile NAME] [--disk-size 96M] [--memory 512]
       [--vcpus 2] [--json FILE]          (root, libvirtd running, apt-get install virtinst)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

URI = "qemu:///system"
POOL = "ccis-workbench"
QEMU_LOGS = Path("/var/log/libvirt/qemu")
VI_PREFIX = "ccisbench-vi-"
_QEMU_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d\.\d+)(?:\+0000|Z):? "
                            r"(starting up|shutting down|qemu-system-\S+: terminating on signal)")
_POWER_DOWN = re.compile(r"^\[\s*(\d+\.\d+)\] reboot: Power down", re.M)
_STAGE = re.compile(r"^\[\d\d:\d\d\] == (\w[\w-]*)(?:: (.*))?$")


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived: stop the round, clean up, exit 130."""


@dataclass
class Side:
    """One run of one side."""

    name: str  # virt-install | workbench
    round: int
    wall: float = 0.0
    guest: float | None = None  # the guest's run from libvirt's qemu log
    kernel: float | None = None  # the guest kernel's timestamp at power-off (serial console)
    exit_lag: float | None = None  # qemu told to terminate .. libvirt says the domain is shut down
    convert: float = 0.0  # virt-install: the user's qemu-img convert -c; workbench: its qcow2 conversion
    stages: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    downloaded: int | None = None
    domain: str = ""
    ok: bool = False
    detail: str = ""

    @property
    def overhead(self) -> float | None:
        return None if self.guest is None else self.wall - self.guest


def _on_signal(_sig: int, _frame: Any) -> None:
    raise Interrupted()


def qemu_log_times(domain: str) -> dict[str, float]:
    """From libvirt's qemu log of *domain* (same clock for both sides): `guest` = `starting up` .. `shutting down`,
    `exit_lag` = qemu told to terminate (after the guest powered off) .. `shutting down`."""
    path = QEMU_LOGS / f"{domain}.log"
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    marks: dict[str, _dt.datetime] = {}
    for line in text.splitlines():
        m = _QEMU_LOG_TIME.match(line)
        if m:
            what = m.group(2).split(":")[-1].strip().split()[0]  # starting | shutting | terminating
            marks[what] = _dt.datetime.strptime(m.group(1)[:26].replace("T", " "), "%Y-%m-%d %H:%M:%S.%f")
    out: dict[str, float] = {}
    if "starting" in marks and "shutting" in marks:
        out["guest"] = (marks["shutting"] - marks["starting"]).total_seconds()
    if "terminating" in marks and "shutting" in marks:
        out["exit_lag"] = (marks["shutting"] - marks["terminating"]).total_seconds()
    return out


def kernel_power_down(console: str) -> float | None:
    """The guest kernel's own timestamp of `reboot: Power down` (its run from kernel start to power-off)."""
    found = _POWER_DOWN.findall(console)
    return float(found[-1]) if found else None


def volume_path(volume: str) -> str:
    """Path of a volume of the pool (virt-install names its disk after the domain)."""
    from ccis_workbench.backends.libvirt_build import connect

    conn = connect(URI)
    try:
        pool = conn.storagePoolLookupByName(POOL)
        pool.refresh(0)
        return str(pool.storageVolLookupByName(volume).path())
    finally:
        conn.close()


def qcow2_virtual_size(path: Path) -> int:
    out = subprocess.run(["qemu-img", "info", "--output=json", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return int(json.loads(out)["virtual-size"])


# -- cleanup -------------------------------------------------------------------------------------------------

class Cleaner:
    """Remembers what this run may have created and removes it (domains destroyed and undefined, volumes deleted)."""

    def __init__(self) -> None:
        self.vi_domains: set[str] = set()
        #: the workbench builds a copy of the profile renamed bench<hex>-PROFILE: its domain and volumes are
        #: ccis-bench<hex>-PROFILE-<build id>-..., names no other build on this host can have
        self.wb_prefix = ""
        self.files: set[Path] = set()
        self.removed: list[str] = []

    def remove_domain(self, conn: Any, name: str) -> None:
        import libvirt

        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            return
        with contextlib.suppress(libvirt.libvirtError):
            if dom.isActive():
                dom.destroy()
        with contextlib.suppress(libvirt.libvirtError):
            if dom.isPersistent():
                dom.undefine()
        self.removed.append(f"domain {name}")

    def remove_volume(self, pool: Any, name: str) -> None:
        import libvirt

        with contextlib.suppress(libvirt.libvirtError):
            pool.storageVolLookupByName(name).delete(0)
            self.removed.append(f"volume {name}")

    def _ours_wb(self, name: str) -> bool:
        return bool(self.wb_prefix) and name.startswith(self.wb_prefix)

    def sweep(self) -> None:
        """Remove every domain/volume of this run still present. Never raises."""
        try:
            from ccis_workbench.backends.libvirt_build import connect

            conn = connect(URI)
        except Exception as exc:  # noqa: BLE001 (report, never mask the original error)
            print(f"cleanup: cannot connect to {URI}: {exc}", file=sys.stderr)
            return
        import libvirt

        try:
            for dom in conn.listAllDomains(0):
                n = dom.name()
                if n in self.vi_domains or self._ours_wb(n):
                    self.remove_domain(conn, n)
            try:
                pool = conn.storagePoolLookupByName(POOL)
                with contextlib.suppress(libvirt.libvirtError):
                    pool.refresh(0)
                names = pool.listVolumes() if pool.isActive() else []
            except libvirt.libvirtError:
                pool, names = None, []
            for n in names:
                if any(n.startswith(d) for d in self.vi_domains) or self._ours_wb(n):
                    self.remove_volume(pool, n)
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()
        for f in self.files:
            with contextlib.suppress(OSError):
                f.unlink()


# -- the two sides -------------------------------------------------------------------------------------------

def _wait(proc: subprocess.Popen[str], what: str) -> None:
    """Wait for a child; on interrupt give it time to clean up after its own SIGINT, then kill it."""
    try:
        proc.wait()
    except Interrupted:
        with contextlib.suppress(OSError):
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        print(f"interrupted during {what}", file=sys.stderr)
        raise


def run_virt_install(rnd: int, args: argparse.Namespace, url: str, cmdline: str, ks: Path, work: Path,
                     cleaner: Cleaner) -> Side:
    side = Side("virt-install", rnd)
    name = f"{VI_PREFIX}{rnd}-{secrets.token_hex(3)}"
    side.domain = name
    serial = QEMU_LOGS / f"{name}-serial.log"
    cleaner.vi_domains.add(name)
    cleaner.files.add(serial)
    argv = ["virt-install", "--connect", URI, "--name", name, "--memory", str(args.memory), "--vcpus",
            str(args.vcpus), "--virt-type", "qemu", "--os-variant", "linux2022",
            "--disk", f"pool={POOL},size={args.disk_mb / 1024:.6f},format=qcow2,cache=unsafe,bus=virtio",
            "--location", url, "--initrd-inject", str(ks), "--extra-args", cmdline,
            "--network", "user", "--graphics", "none", "--serial", f"pty,log.file={serial}",
            "--noautoconsole", "--wait", str(max(1, int(args.timeout // 60))), "--noreboot"]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(proc.stdout or []), daemon=True)
    reader.start()
    _wait(proc, "virt-install")
    reader.join(timeout=5)
    side.wall = time.monotonic() - t0
    console = serial.read_text(errors="replace") if serial.exists() else ""
    side.ok = proc.returncode == 0 and "Installation complete" in console
    times = qemu_log_times(name)
    side.guest, side.exit_lag = times.get("guest"), times.get("exit_lag")
    side.kernel = kernel_power_down(console)
    if not side.ok:
        side.detail = "".join(out)[-1500:] + "\n--- console ---\n" + console[-1500:]
        return side
    # what the user does next to get the same artifact as the workbench's qcow2 format: a compressed qcow2
    disk = Path(volume_path(f"{name}.qcow2"))
    dest = work / f"vi-{rnd}.qcow2"
    t1 = time.monotonic()
    subprocess.run(["qemu-img", "convert", "-c", "-O", "qcow2", str(disk), str(dest)], check=True)
    side.convert = time.monotonic() - t1
    if qcow2_virtual_size(dest) != args.disk_mb << 20:
        side.ok, side.detail = False, "virt-install's disk has the wrong size"
    dest.unlink()
    return side


def run_workbench(rnd: int, args: argparse.Namespace, url: str, ks_sha: str, work: Path, env: dict[str, str]) -> Side:
    side = Side("workbench", rnd)
    out = work / f"wb-{rnd}"
    argv = [sys.executable, "-m", "ccis_workbench", "build", str(args.profile_file), "--tree", url, "--accel", "tcg",
            "--disk-size", f"{args.disk_mb}M", "--memory", str(args.memory), "--vcpus", str(args.vcpus),
            "--network", "user", "--format", "qcow2", "--output", str(out), "--quiet",
            "--total-timeout", str(args.timeout)]
    events: list[tuple[float, str, str]] = []
    lines: list[str] = []
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            now = time.monotonic()
            lines.append(line)
            m = _STAGE.match(line.strip())
            if m:
                events.append((now - t0, m.group(1), m.group(2) or ""))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    _wait(proc, "the workbench build")
    reader.join(timeout=5)
    side.wall = time.monotonic() - t0
    # stage durations from the monitor's events, as they arrived (the last one ends at process exit)
    for i, (t, stage, detail) in enumerate(events):
        end = events[i + 1][0] if i + 1 < len(events) else side.wall
        key = "source-download" if stage == "download" and " from http" in detail else stage
        side.stages[key] = round(side.stages.get(key, 0.0) + end - t, 3)
        if stage == "install":
            side.domain = detail.split()[1] if detail.startswith("domain ") else ""
    side.stages["before-first-stage"] = round(events[0][0], 3) if events else side.wall
    if proc.returncode != 0:
        side.detail = "".join(lines)[-2500:]
        return side
    (art,) = list(out.iterdir())
    manifest = json.loads((art / "manifest.json").read_text())
    if manifest["kickstart_sha256"] != ks_sha:
        raise SystemExit("the workbench built a different kickstart than virt-install got: refusing to compare")
    side.timings = {k: float(v) for k, v in manifest["timings"].items()}
    side.downloaded = int(manifest["install_tree"]["downloaded"])
    side.convert = sum(v for k, v in side.timings.items() if k.startswith("artifact:") and k.endswith(".qcow2"))
    times = qemu_log_times(side.domain) if side.domain else {}
    side.guest, side.exit_lag = times.get("guest"), times.get("exit_lag")
    console = (art / "console.log").read_text(errors="replace")
    side.kernel = kernel_power_down(console)
    qcow2 = next(art.glob("*.qcow2"))
    side.ok = qcow2_virtual_size(qcow2) == args.disk_mb << 20 and "Installation complete" in console
    shutil.rmtree(out)
    return side


# -- main ----------------------------------------------------------------------------------------------------

def bench_profile(args: argparse.Namespace, work: Path, tag: str) -> Path:
    """A copy of the profile renamed `<tag>-NAME`, so the workbench's domain and volumes carry a name unique to
    this run (cleanup never touches another build). Only the kickstart's first comment line changes, and
    virt-install gets the kickstart of this same copy."""
    from ccis_workbench.core.catalog import Catalog
    from ccis_workbench.core.yamlfile import load_yaml_text

    cat = Catalog.load(ROOT)
    src = Path(args.profile) if Path(args.profile).is_file() else ROOT / "profiles" / f"{args.profile}.yaml"
    if not src.is_file():
        raise SystemExit(f"no profile {args.profile} (known: {', '.join(cat.profile_names())})")
    text = src.read_text()
    name = load_yaml_text(text, str(src))["name"]
    renamed = re.sub(r"(?m)^name:.*$", f"name: {tag}-{name}", text, count=1)
    dest = work / f"{tag}-{name}.yaml"
    dest.write_text(renamed)
    return dest


def prepare(args: argparse.Namespace, url: str, cache: Path) -> tuple[str, str]:
    """The workbench's plan for the profile: its kickstart and installer command line (plan makes no domain)."""
    from ccis_workbench.core.catalog import Catalog
    from ccis_workbench.core.compose import Composer
    from ccis_workbench.core.installsource import from_url
    from ccis_workbench.core.plan import PlanOptions, make_plan

    cat = Catalog.load(ROOT)
    profile = cat.load_profile(str(args.profile_file))
    comp = Composer(cat).compose(profile)
    src = from_url(url, cache=cache, download=False)  # .treeinfo only: the workbench's own cache stays cold
    plan = make_plan(comp, profile.name, src, PlanOptions(accel="tcg", disk_size_mb=args.disk_mb,
                                                          memory_mb=args.memory, vcpus=args.vcpus,
                                                          formats=["qcow2"], network="user"),
                     arch=str(comp.variables.get("arch", "x86_64")))
    return plan.kickstart, plan.cmdline


def med(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v: float | None, unit: str = "s") -> str:
    return "n/a" if v is None else f"{v:.2f}{unit}"


def report(results: list[Side]) -> dict[str, Any]:
    vi = [r for r in results if r.name == "virt-install"]
    wb = [r for r in results if r.name == "workbench"]
    print("\nround  side          wall     guest    overhead  convert  kernel  qemu-exit  downloaded")
    for r in results:
        dl = "" if r.downloaded is None else f"{r.downloaded} B"
        print(f"{r.round:>5}  {r.name:12} {fmt(r.wall):>8} {fmt(r.guest):>8} {fmt(r.overhead):>9} "
              f"{fmt(r.convert):>8} {fmt(r.kernel):>7} {fmt(r.exit_lag):>9}  {dl}")
    vi_wall, wb_wall = med([r.wall for r in vi]), med([r.wall for r in wb])
    vi_conv = med([r.wall + r.convert for r in vi])
    wb_noconv = med([r.wall - r.convert for r in wb])
    summary: dict[str, Any] = {
        "virt_install_wall_median": vi_wall, "virt_install_plus_convert_median": vi_conv,
        "workbench_wall_median": wb_wall, "workbench_without_conversion_median": wb_noconv,
        "ratio_as_delivered": wb_wall / vi_conv if wb_wall and vi_conv else None,
        "ratio_without_conversion": wb_noconv / vi_wall if wb_noconv and vi_wall else None,
        "ratio_per_round_median": med([w.wall / v.wall for w in wb for v in vi if w.round == v.round]),
        "virt_install_guest_median": med([r.guest for r in vi]), "workbench_guest_median": med([r.guest for r in wb]),
        "virt_install_kernel_median": med([r.kernel for r in vi]),
        "workbench_kernel_median": med([r.kernel for r in wb]),
        "virt_install_qemu_exit_median": med([r.exit_lag for r in vi]),
        "workbench_qemu_exit_median": med([r.exit_lag for r in wb]),
        "virt_install_overhead_median": med([r.overhead for r in vi]),
        "workbench_overhead_median": med([r.overhead for r in wb]),
        "workbench_overhead_without_conversion_median": med([r.overhead - r.convert for r in wb
                                                              if r.overhead is not None]),
        "workbench_stage_medians": {k: med([r.stages.get(k) for r in wb]) for k in
                                    sorted({k for r in wb for k in r.stages})},
        "workbench_manifest_timing_medians": {k: med([r.timings.get(k) for r in wb]) for k in
                                              sorted({k for r in wb for k in r.timings})},
        "workbench_downloaded_bytes": [r.downloaded for r in wb],
        "second_build_downloads_nothing": (all(r.downloaded == 0 for r in wb[1:]) and wb[0].downloaded != 0)
        if len(wb) > 1 else None,
    }
    s = summary
    print("\nmedians over", len(wb), "rounds")
    print(f"  virt-install            {fmt(s['virt_install_wall_median'])}   (+ qemu-img convert -c: "
          f"{fmt(s['virt_install_plus_convert_median'])})")
    print(f"  workbench               {fmt(s['workbench_wall_median'])}   (without its qcow2 conversion: "
          f"{fmt(s['workbench_without_conversion_median'])})")
    ratio1, ratio2 = s["ratio_as_delivered"], s["ratio_without_conversion"]
    print(f"  ratio workbench/virt-install: as delivered {fmt(ratio1, '')}, without conversion "
          f"{fmt(ratio2, '')}, median of per-round ratios {fmt(s['ratio_per_round_median'], '')}   (goal <= 1.0)")
    print(f"  guest's run (qemu log)  virt-install {fmt(s['virt_install_guest_median'])}, "
          f"workbench {fmt(s['workbench_guest_median'])}; guest kernel at power-off: virt-install "
          f"{fmt(s['virt_install_kernel_median'])}, workbench {fmt(s['workbench_kernel_median'])}; qemu exit after "
          f"power-off: virt-install {fmt(s['virt_install_qemu_exit_median'])}, workbench "
          f"{fmt(s['workbench_qemu_exit_median'])}")
    print(f"  overhead outside the guest's run: workbench {fmt(s['workbench_overhead_median'])} "
          f"({fmt(s['workbench_overhead_without_conversion_median'])} without conversion), "
          f"virt-install {fmt(s['virt_install_overhead_median'])}   (goal < 1 s)")
    print("  workbench stages (monitor events): " + ", ".join(
        f"{k} {fmt(v)}" for k, v in s["workbench_stage_medians"].items()))
    print("  workbench manifest timings: " + ", ".join(
        f"{k} {fmt(v)}" for k, v in s["workbench_manifest_timing_medians"].items()))
    verdict = {True: "yes", False: "NO", None: "n/a (one round)"}[s["second_build_downloads_nothing"]]
    print(f"  workbench downloaded per round: {s['workbench_downloaded_bytes']} -> later builds download "
          f"nothing: {verdict}", flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--profile", default="openstack-stream9")
    p.add_argument("--disk-size", default="96M", help="disk size (default 96M)")
    p.add_argument("--memory", type=int, default=512, help="MiB (default 512)")
    p.add_argument("--vcpus", type=int, default=2)
    p.add_argument("--timeout", type=float, default=600.0, help="per build, seconds")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args(argv)
    from ccis_workbench.core.plan import parse_size_mb

    args.disk_mb = parse_size_mb(args.disk_size)
    if shutil.which("virt-install") is None:
        print("virt-install is missing: apt-get install virtinst", file=sys.stderr)
        return 2
    from ccis_workbench.backends.libvirt_build import connect, ensure_pool
    from ccis_workbench.rehearsal.httpserver import TreeServer
    from ccis_workbench.rehearsal.tree import build_tree

    conn = connect(URI)
    ensure_pool(conn, POOL)  # virt-install's disk goes into the same pool as the workbench's
    conn.close()
    tree = build_tree()
    cleaner = Cleaner()
    results: list[Side] = []
    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    work = Path(tempfile.mkdtemp(prefix="ccis-bench-build-"))
    status = 0
    try:
        with TreeServer(tree) as srv:
            env = dict(os.environ, XDG_CACHE_HOME=str(work / "cache"))  # a cold cache: round 1 downloads
            tag = f"bench{secrets.token_hex(3)}"
            args.profile_file = bench_profile(args, work, tag)
            cleaner.wb_prefix = f"ccis-{tag}-"
            ks_text, cmdline = prepare(args, srv.url, work / "plan-cache")
            ks = work / "ks.cfg"  # virt-install injects it by its basename: /ks.cfg, as inst.ks= says
            ks.write_text(ks_text)
            import hashlib

            ks_sha = hashlib.sha256(ks_text.encode()).hexdigest()
            print(f"tree {srv.url} ({tree}); profile {args.profile}; disk {args.disk_mb} MiB qcow2; "
                  f"{args.memory} MiB, {args.vcpus} vCPU, TCG, user networking")
            print(f"kernel command line: {cmdline}")
            print(f"kickstart sha256 {ks_sha[:16]}")
            for rnd in range(1, args.rounds + 1):
                order = ("vi", "wb") if rnd % 2 else ("wb", "vi")
                for which in order:
                    if which == "vi":
                        side = run_virt_install(rnd, args, srv.url, cmdline, ks, work, cleaner)
                    else:
                        side = run_workbench(rnd, args, srv.url, ks_sha, work, env)
                    results.append(side)
                    print(f"round {rnd} {side.name:12} {'ok  ' if side.ok else 'FAIL'} wall {side.wall:6.2f}s "
                          f"guest {fmt(side.guest)}", flush=True)
                    if not side.ok:
                        print(side.detail, file=sys.stderr)
                        status = 1
                    cleaner.sweep()  # between runs too: nothing of one side lingers into the other's run
        summary = report([r for r in results if r.ok])
        if args.json:
            Path(args.json).write_text(json.dumps({"summary": summary, "runs": [asdict(r) for r in results]},
                                                  indent=2) + "\n")
    except Interrupted:
        print("\ninterrupted: cleaning up", file=sys.stderr)
        status = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cleaner.sweep()
        shutil.rmtree(work, ignore_errors=True)
        for s, h in old.items():
            signal.signal(s, h)
    if cleaner.removed:
        print(f"cleanup removed: {', '.join(sorted(set(cleaner.removed)))}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark the boot-test harness against its peer on the same disk, in one run.

Peer: `virsh start` of a domain over the same overlay + the same NoCloud seed, with `virsh console` (pexpect)
waiting for the login prompt: what anyone does by hand. Workbench: `run_boot_test` on the same image with one
trivial check (`true`), no timing collection. Rounds alternate (peer, workbench, peer, ...).

Reported per round and as medians:
- peer: seconds from `virsh start` to the login prompt;
- workbench: total, the guest's boot-to-login, login (includes waiting for cloud-init to create the user), checks;
- overhead = total - boot-to-login, and harness-only = total - boot - login - checks (what the workbench itself
  spends: volumes, seed, domain, console, cleanup); "total" is the time until the result is reported (the
  `on_result` callback, called before the guest is destroyed), and the full run until `run_boot_test` returns
  (the guest destroyed, its volumes deleted) is reported beside it; the harness's own stage times too;
- ratio = workbench total / peer.

The image is copied once to a path qemu can read (/var/lib/libvirt/images/ccis-bench-base.qcow2), so neither
side pays an upload; the upload the workbench does for an unreadable path is measured separately.
Usage: python benchmarks/bench_boottest.py [--rounds N] [--image QCOW2] [--json FILE]   (root, libvirtd running)
Goal (issue 16): harness overhead beyond the guest's own boot and login under 0.5 s.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_rows import report, row

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

URI = "qemu:///system"
BASE = Path("/var/lib/libvirt/images/ccis-bench-base.qcow2")
PEER = "ccis-bench-peer"


def peer_round(image: Path, seed_iso: Path, work: Path) -> float:
    """virsh start + wait for the login prompt on the serial console; returns seconds."""
    import pexpect

    from ccis_workbench.backends.boottest import LOGIN_RE

    overlay = work / "peer-overlay.qcow2"
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(image)], capture_output=True, text=True, check=True
        ).stdout
    )
    subprocess.run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            str(image),
            "-F",
            "qcow2",
            str(overlay),
            str(info["virtual-size"] + (1 << 30)),
        ],
        check=True,
    )
    xml = work / "peer.xml"
    xml.write_text(f"""<domain type='qemu'><name>{PEER}</name><memory unit='MiB'>1024</memory><vcpu>2</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os><features><acpi/><apic/></features>
<cpu mode='maximum' check='none'/><on_poweroff>destroy</on_poweroff>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='unsafe'/>
<source file='{overlay}'/><target dev='vda' bus='virtio'/></disk>
<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='{seed_iso}'/>
<target dev='hdc' bus='ide'/><readonly/></disk>
<interface type='user'><model type='virtio'/></interface><serial type='pty'><target port='0'/></serial>
<console type='pty'><target type='serial' port='0'/></console>
<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng><memballoon model='none'/></devices>
</domain>""")
    subprocess.run(["virsh", "-c", URI, "define", str(xml)], check=True, capture_output=True)
    try:
        t0 = time.monotonic()
        child = pexpect.spawn(
            "virsh", ["-c", URI, "start", "--console", PEER], encoding="utf-8", codec_errors="replace", timeout=600
        )
        child.expect(LOGIN_RE)
        elapsed = time.monotonic() - t0
        child.close(force=True)
        return elapsed
    finally:
        subprocess.run(["virsh", "-c", URI, "destroy", PEER], capture_output=True, check=False)
        subprocess.run(["virsh", "-c", URI, "undefine", PEER], capture_output=True, check=False)
        overlay.unlink(missing_ok=True)


def workbench_round(image: Path) -> dict[str, float]:
    from ccis_workbench.backends.boottest import BootTestOptions, run_boot_test
    from ccis_workbench.core.model import Check

    opts = BootTestOptions(uri=URI, accel="tcg", seed="nocloud", collect_timings=False, login_timeout=600)
    reported: list[float] = []
    early = {"on_result": lambda _r: reported.append(time.monotonic())}
    if "on_result" not in inspect.signature(run_boot_test).parameters:
        early = {}  # a workbench from before results were reported early: the report is the return
    t0 = time.monotonic()
    r = run_boot_test(image, [Check("bench.true", "a trivial check", "true")], opts, label="bench", **early)
    returned = time.monotonic() - t0
    if r.ending != "completed":
        raise SystemExit(f"workbench run failed: {r.ending}: {r.ending_message}")
    assert r.boot_to_login is not None and r.login_time is not None and r.checks_time is not None
    total = reported[0] - t0 if reported else returned
    out = {
        "total": total,
        "returned": returned,
        "boot_to_login": r.boot_to_login,
        "login": r.login_time,
        "checks": r.checks_time,
        "overhead": total - r.boot_to_login,
        "harness": total - r.boot_to_login - r.login_time - r.checks_time,
    }
    for k, v in r.timings.get("harness", {}).items():
        if isinstance(v, (int, float)) and k != "reported":  # a moment, not a stage
            out[f"stage:{k}"] = float(v)
    return out


def upload_cost(image: Path) -> float:
    """Seconds to upload *image* into the pool (what a run pays when qemu cannot read the artifact's path)."""
    from ccis_workbench.backends.libvirt_build import connect, ensure_pool, upload_file
    from ccis_workbench.core.monitor import Monitor

    conn = connect(URI)
    pool = ensure_pool(conn)
    vol = pool.createXML(
        f"<volume><name>ccis-bench-upload</name><capacity unit='bytes'>{image.stat().st_size}"
        f"</capacity><target><format type='raw'/></target></volume>",
        0,
    )
    try:
        t0 = time.monotonic()
        upload_file(conn, vol, image, Monitor())
        return time.monotonic() - t0
    finally:
        vol.delete(0)
        conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--image", help="qcow2 to boot (default: the cached Debian cloud-init test guest)")
    ap.add_argument("--json", metavar="FILE", help="also write the rows (measure, value, unit, goal, met, detail)")
    args = ap.parse_args()

    from ccis_workbench.core.seed import SeedData, make_credentials, new_instance_id, write_seed

    if args.image:
        src = Path(args.image)
    else:
        from tests.guests.debian_cloud import build

        src = build(log=lambda m: print(m, file=sys.stderr))
    shutil.copyfile(src, BASE)
    os.chmod(BASE, 0o644)
    peers: list[float] = []
    wbs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="ccis-bench-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        creds = make_credentials()
        try:
            seed = write_seed("nocloud", SeedData(new_instance_id(), "ccis-bench", creds), work / "seed.iso")
            os.chmod(seed, 0o644)
            for i in range(args.rounds):
                peers.append(peer_round(BASE, seed, work))
                wbs.append(workbench_round(BASE))
                print(
                    f"round {i + 1}: peer {peers[-1]:.1f} s; workbench total {wbs[-1]['total']:.1f} s "
                    f"(boot {wbs[-1]['boot_to_login']:.1f}, login {wbs[-1]['login']:.1f}, checks "
                    f"{wbs[-1]['checks']:.1f}, harness {wbs[-1]['harness']:.2f})",
                    file=sys.stderr,
                )
        finally:
            creds.cleanup()
        up = upload_cost(src)
    BASE.unlink(missing_ok=True)
    med = {k: statistics.median(w[k] for w in wbs if k in w) for k in wbs[0]}
    peer = statistics.median(peers)
    runs = {k: [round(w[k], 2) for w in wbs] for k in ("harness", "total", "returned")}
    rows = [
        row(
            "boot-test harness overhead beyond the guest's boot and login",
            med["harness"],
            "s",
            "under 0.5 s",
            med["harness"] < 0.5,
            f"total to report - boot to login - login - checks; median of {args.rounds}, runs {runs['harness']}",
        ),
        row(
            "boot test: start to report",
            med["total"],
            "s",
            "reference",
            True,
            f"boot to login {med['boot_to_login']:.1f} s + login {med['login']:.1f} s + checks "
            f"{med['checks']:.2f} s + harness; runs {runs['total']}",
        ),
        row(
            "boot test: start to return (guest destroyed, volumes deleted)",
            med["returned"],
            "s",
            "reference",
            True,
            f"runs {runs['returned']}",
        ),
        row("peer: virsh start to login prompt", peer, "s", "reference", True, f"runs {[round(p, 2) for p in peers]}"),
        row(
            "boot test total / peer",
            med["total"] / peer,
            "x",
            "reference",
            True,
            f"guest boot-to-login / peer {med['boot_to_login'] / peer:.2f}",
        ),
        row(
            "upload of the image when qemu cannot read its path",
            up,
            "s",
            "reference",
            True,
            f"{src.stat().st_size >> 20} MiB",
        ),
    ]
    for k in sorted(k for k in med if k.startswith("stage:")):
        rows.append(row(f"harness stage {k[6:]}", med[k], "s", "reference", True, "median"))
    report(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

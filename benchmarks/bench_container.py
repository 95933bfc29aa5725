#!/usr/bin/env python3
"""Benchmark the container check (docker target: rootfs tar, no boot) against its peers, in one run.

Input: one rootfs tar (default: a small busybox root made here, the shape the test suite uses; or --rootfs) and
N trivial checks. Rounds alternate peer and workbench on the same tar:
- podman: peer = `podman import` + one `podman run --rm --network none IMAGE /bin/sh -c CHECK` per check +
  `podman rmi` (what anyone does by hand, with the same runtime options the workbench found work on this host);
  workbench = `run_container_test(runner="podman")` (it also lists the tar and builds the Containerfile);
- chroot: peer = `tar -x` + one `unshare --fork --pid --mount --net chroot DIR /bin/sh -c CHECK` per check +
  `rm -r`; workbench = `run_container_test(runner="chroot")` (it also mounts /proc and a minimal /dev per check).
Reported: per-round seconds, medians, ratio workbench / peer (goal: 1.5 or less) and the workbench's own harness
phases. Usage: python benchmarks/bench_container.py [--rounds N] [--checks N] [--rootfs TAR] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

APPLETS = ("sh", "ls", "cat", "echo", "id", "grep", "stat", "wc")


def make_rootfs(work: Path) -> Path:
    busybox = shutil.which("busybox")
    if busybox is None:
        sys.exit("busybox is needed to make the default rootfs (apt-get install busybox-static), or give --rootfs")
    root = work / "root"
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    shutil.copy2(busybox, root / "bin" / "busybox")
    for a in APPLETS:
        (root / "bin" / a).symlink_to("busybox")
    (root / "etc" / "os-release").write_text('VERSION_ID="9"\n')
    art = work / "art"
    art.mkdir()
    tar = art / "bench.rootfs.tar.xz"
    subprocess.run(["tar", "-cJf", str(tar), "-C", str(root), "."], check=True)
    (art / "Containerfile").write_text(f"FROM scratch\nADD {tar.name} /\n")
    return tar


def podman_peer(tar: Path, commands: list[str], runtime: list[str], extra: list[str]) -> float:
    podman = shutil.which("podman") or "podman"
    image = "localhost/ccis-bench-peer:latest"
    t0 = time.monotonic()
    subprocess.run([podman, *runtime, "import", str(tar), image], check=True, capture_output=True)
    for c in commands:
        subprocess.run([podman, *runtime, "run", "--rm", "--network", "none", *extra, image, "/bin/sh", "-c", c],
                       check=True, capture_output=True)
    subprocess.run([podman, "rmi", "-f", image], check=True, capture_output=True)
    return time.monotonic() - t0


def chroot_peer(tar: Path, commands: list[str], work: Path) -> float:
    t0 = time.monotonic()
    d = Path(tempfile.mkdtemp(dir=work))
    subprocess.run(["tar", "-xf", str(tar), "-C", str(d), "--numeric-owner"], check=True)
    for c in commands:
        subprocess.run(["unshare", "--fork", "--pid", "--mount", "--net", "chroot", str(d), "/bin/sh", "-c", c],
                       check=True, capture_output=True)
    shutil.rmtree(d)
    return time.monotonic() - t0


def workbench(tar: Path, commands: list[str], runner: str, work: Path) -> tuple[float, dict[str, float], str]:
    from ccis_workbench.backends.container_test import ContainerTestOptions, run_container_test
    from ccis_workbench.core.model import Check

    checks = [Check(f"bench.{i}", "trivial", c, timeout=60) for i, c in enumerate(commands)]
    t0 = time.monotonic()
    r = run_container_test(tar, checks, ContainerTestOptions(runner=runner, workdir=str(work)), label="bench")
    total = time.monotonic() - t0
    if not r.passed:
        sys.exit(f"the workbench run failed: {r.ending}: {r.ending_message}")
    return total, dict(r.timings.get("harness", {}), checks=round(r.checks_time or 0, 3)), r.domain_type


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--checks", type=int, default=10)
    ap.add_argument("--rootfs", type=Path)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    commands = [f"echo check {i}; grep -q VERSION_ID /etc/os-release" if not args.rootfs else "true"
                for i in range(args.checks)]
    out: dict[str, object] = {"checks": args.checks, "rounds": args.rounds}
    with tempfile.TemporaryDirectory(prefix="ccis-bench-container-") as tmp:
        work = Path(tmp)
        tar = args.rootfs or make_rootfs(work)
        runners = ["chroot"] + (["podman"] if shutil.which("podman") else [])
        for runner in runners:
            peers, wbs, phases = [], [], []
            desc = ""
            runtime: list[str] = []
            extra: list[str] = []
            for rnd in range(args.rounds):
                total, ph, desc = workbench(tar, commands, runner, work)
                if runner == "podman" and rnd == 0:
                    # the peer uses what the workbench found works here (runtime, lower rlimits)
                    if "runtime runc" in desc:
                        runtime = ["--runtime", "runc"]
                    if "rlimits lowered" in desc:
                        from ccis_workbench.backends.container_test import LOW_ULIMITS
                        extra = list(LOW_ULIMITS)
                peer = podman_peer(tar, commands, runtime, extra) if runner == "podman" else \
                    chroot_peer(tar, commands, work)
                peers.append(peer)
                wbs.append(total)
                phases.append(ph)
                if not args.json:
                    print(f"{runner} round {rnd + 1}: peer {peer:.2f} s, workbench {total:.2f} s ({ph})")
            mp, mw = statistics.median(peers), statistics.median(wbs)
            out[runner] = {"peer_median_s": round(mp, 3), "workbench_median_s": round(mw, 3),
                           "ratio": round(mw / mp, 3), "runner": desc,
                           "per_check_workbench_s": round(statistics.median(p["checks"] for p in phases) /
                                                          args.checks, 3)}
            if not args.json:
                print(f"{runner}: median peer {mp:.2f} s, workbench {mw:.2f} s, ratio {mw / mp:.2f} ({desc[:100]})")
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Benchmark `ccis-workbench matrix`: wall time over a set of profiles, `--jobs 1` against `--jobs 2` on one host,
then the `--jobs 2` run again with every cell cached.

Each side runs the CLI in a subprocess (interpreter start-up and argument handling included), rehearsal tree
(built once by this script and served over HTTP on 127.0.0.1, so neither side pays for it), TCG, 96 MiB disks,
512 MiB guests, the targets' own formats, `--rehearsal` checks. The two cold runs write into separate output
folders, so each builds and boot-tests every cell; the cached run reuses the `--jobs 2` folder and must rebuild
nothing (the script checks that no cell ran and no artifact folder was added). A shared $XDG_CACHE_HOME (fresh per
benchmark) holds the tree's kernel and initrd after the first download.

Figures: wall time of each run, cells per minute, the speed-up of --jobs 2 over --jobs 1, the median build and
boot-test seconds per cell (from summary.json), and the cached run's wall time.

The matrix itself removes every domain and volume it creates, also on Ctrl-C (then this script stops too).
Usage: python benchmarks/bench_matrix.py [--all | PROFILE_GLOB ...] [--json FILE]   (root, libvirtd running)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT = ["aws-stream9", "brightbox-stream9", "cloudstack-stream9", "openstack-stream10", "openstack-stream9",
           "ovirt-stream9"]
URI = "qemu:///system"


def run(profiles: list[str], tree: str, out: Path, jobs: int, env: dict[str, str]) -> tuple[float, dict]:
    argv = [sys.executable, "-m", "ccis_workbench", "matrix", *profiles, "--tree", tree, "--hosts", URI,
            "--jobs", str(jobs), "--accel", "tcg", "--disk-size", "96M", "--memory", "512", "--grow", "64",
            "--rehearsal", "--quiet", "-o", str(out)]
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=env, check=False)
    wall = time.monotonic() - t0
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
    if proc.returncode != 0:
        # A failed cell does not void the timing of the others: report it with the figures (the cached run
        # then reruns only that cell, which the check below says)
        print(f"matrix --jobs {jobs} exited {proc.returncode}:\n{proc.stderr[-1500:]}", file=sys.stderr)
        if not summary:
            sys.exit(1)
    return wall, summary


def per_cell(summary: dict, key: str) -> float:
    values = [c[key] for c in summary.get("cells", []) if c["status"] == "passed"]
    return statistics.median(values) if values else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("patterns", nargs="*", help=f"profile globs (default: {' '.join(DEFAULT)})")
    ap.add_argument("--all", action="store_true", help="every profile of the catalog")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args()
    profiles = [] if args.all else (args.patterns or DEFAULT)  # no pattern: the matrix takes the whole catalog

    sys.path.insert(0, str(REPO))
    from ccis_workbench.rehearsal.httpserver import TreeServer
    from ccis_workbench.rehearsal.tree import build_tree

    with tempfile.TemporaryDirectory(prefix="bench-matrix-") as tmp:
        base = Path(tmp)
        env = dict(os.environ, XDG_CACHE_HOME=str(base / "cache"), XDG_STATE_HOME=str(base / "state"))
        tree_dir = build_tree(cache=base / "tree")
        with TreeServer(tree_dir) as srv:
            one, s1 = run(profiles, srv.url, base / "jobs1", 1, env)
            two, s2 = run(profiles, srv.url, base / "jobs2", 2, env)
            before = sorted(p.name for p in (base / "jobs2").glob("*/artifacts/*"))
            cached, s3 = run(profiles, srv.url, base / "jobs2", 2, env)
            after = sorted(p.name for p in (base / "jobs2").glob("*/artifacts/*"))
    n = len(s1["cells"])
    failed = {f"jobs{j}": [c["profile"] for c in s["cells"] if c["status"] != "passed"] for j, s in ((1, s1), (2, s2))}
    if not any(failed.values()) and (s3["counts"].get("cached") != n or before != after):
        sys.exit(f"the cached run rebuilt something: {s3['counts']}")
    figures = {
        "cells": n, "cores": os.cpu_count(), "accel": "tcg", "failed": failed,
        "load_average_at_end": os.getloadavg(), "cached_counts": s3.get("counts", {}),
        "jobs1_seconds": round(one, 1), "jobs2_seconds": round(two, 1), "cached_seconds": round(cached, 1),
        "speedup_jobs2": round(one / two, 2),
        "cells_per_minute_jobs1": round(n * 60 / one, 2), "cells_per_minute_jobs2": round(n * 60 / two, 2),
        "median_build_seconds_jobs1": round(per_cell(s1, "build_seconds"), 1),
        "median_test_seconds_jobs1": round(per_cell(s1, "test_seconds"), 1),
        "median_build_seconds_jobs2": round(per_cell(s2, "build_seconds"), 1),
        "median_test_seconds_jobs2": round(per_cell(s2, "test_seconds"), 1),
    }
    print(f"matrix of {n} cells on {URI}, {figures['cores']} cores, TCG")
    print(f"  --jobs 1   {one:7.1f} s  ({figures['cells_per_minute_jobs1']} cells/min; per cell: build "
          f"{figures['median_build_seconds_jobs1']} s, boot-test {figures['median_test_seconds_jobs1']} s)")
    print(f"  --jobs 2   {two:7.1f} s  ({figures['cells_per_minute_jobs2']} cells/min; per cell: build "
          f"{figures['median_build_seconds_jobs2']} s, boot-test {figures['median_test_seconds_jobs2']} s); "
          f"speed-up {figures['speedup_jobs2']}x")
    print(f"  cached     {cached:7.1f} s  ({s3.get('counts', {})})")
    for side, names in failed.items():
        if names:
            print(f"  {side}: failed cells (their time is in the wall time): {', '.join(names)}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

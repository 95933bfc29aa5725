#!/usr/bin/env python3
"""Benchmark the artifact stage: a 10 GiB sparse disk turned into the aws target's formats (raw + vmdk + vhd)
with the manifest, SBOM, provenance and CHECKSUM, the way a build ends after the guest powered off.

A (old way): every file hashed by reading it whole, holes included, once for the manifest, once for the
provenance subjects and once for CHECKSUM (`Producer(digest=sha256_read)`), conversions one after another
(`jobs=1`). B (new way): the Producer as builds use it: sparse hashing, each file hashed once per build (the
fixed VHD continues the raw image's hash), conversions side by side. Rounds alternate A, B, A, B, ...; medians.
Both write into a temporary folder that is removed after each round.

The disk: a raw file truncated to 10 GiB with 46 MB of random data in a few places (what a rehearsal install
leaves: 46 MB on disk), so the outputs are what a build makes of it.
Usage: python benchmarks/bench_artifacts.py [--rounds N] [--size-gib 10] [--data-mb 46] [--json FILE]
Goal (issue 16): the artifact stage under 15 s.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_rows import report, row  # noqa: E402  (benchmarks/ is the script's folder)

from ccis_workbench.core.artifacts import Producer  # noqa: E402
from ccis_workbench.core.files import DigestCache, sha256_read  # noqa: E402
from ccis_workbench.core.installsource import from_dir  # noqa: E402
from ccis_workbench.core.plan import PlanOptions, make_plan  # noqa: E402

GOAL_S = 15.0
FORMATS = ["raw", "vmdk", "vhd"]
KS = "#version=RHEL9\ntext\npoweroff\nrootpw --lock\n%packages\n@core\n%end\n"


def make_disk(path: Path, size: int, data: int) -> None:
    """A sparse raw disk: *data* bytes of random content in 8 runs spread over *size* bytes."""
    runs = 8
    with open(path, "wb") as fh:
        fh.truncate(size)
        for i in range(runs):
            fh.seek(i * (size // runs) + 4096 * i + 512)
            fh.write(os.urandom(data // runs))


def make_tree(root: Path) -> Path:
    """The smallest install tree the plan accepts (.treeinfo, kernel and initrd with their checksums)."""
    pxe = root / "images/pxeboot"
    pxe.mkdir(parents=True)
    (pxe / "vmlinuz").write_bytes(b"kernel" * 100)
    (pxe / "initrd.img").write_bytes(b"initrd" * 100)
    sums = {n: hashlib.sha256((pxe / n).read_bytes()).hexdigest() for n in ("vmlinuz", "initrd.img")}
    (root / ".treeinfo").write_text(
        "[general]\nfamily = bench\nversion = 0.1\nname = bench 0.1\narch = x86_64\n\n[tree]\narch = x86_64\n\n"
        "[images-x86_64]\nkernel = images/pxeboot/vmlinuz\ninitrd = images/pxeboot/initrd.img\n\n[checksums]\n"
        f"images/pxeboot/vmlinuz = sha256:{sums['vmlinuz']}\nimages/pxeboot/initrd.img = sha256:{sums['initrd.img']}\n"
    )
    return root


def one_round(way: str, disk: Path, work: Path, tree: Path, size_mb: int) -> float:
    out = work / f"out-{way}"
    composition = SimpleNamespace(
        text=KS,
        variables={"disk_size": 10, "arch": "x86_64"},
        release=SimpleNamespace(name="centos-stream-9"),
        target=SimpleNamespace(name="aws", formats=FORMATS),
    )
    opts = PlanOptions(
        accel="tcg", build_id="20260101-000000-bench", output_dir=str(out), disk_size_mb=size_mb, memory_mb=512
    )
    plan = make_plan(composition, "aws-bench", from_dir(tree), opts)
    producer = Producer(plan, digest=sha256_read, jobs=1) if way == "A" else Producer(plan, digest=DigestCache())
    try:
        t0 = time.monotonic()
        producer.produce(
            disk, export=None, console_log="console\n", installer_log="log\n", packages=["a-1.noarch"], timings={}
        )
        return time.monotonic() - t0
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--size-gib", type=int, default=10)
    p.add_argument("--data-mb", type=int, default=46)
    p.add_argument("--dir", default=None, help="where the disk and outputs go (default: a temporary folder)")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ccis-bench-artifacts-", dir=args.dir))
    try:
        disk = work / "disk.raw"
        size = args.size_gib << 30
        make_disk(disk, size, args.data_mb << 20)
        tree = make_tree(work / "tree")
        times: dict[str, list[float]] = {"A": [], "B": []}
        for r in range(args.rounds):
            for way in ("A", "B"):
                took = one_round(way, disk, work, tree, size >> 20)
                times[way].append(took)
                print(f"round {r + 1} {way}: {took:.2f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    old, new = statistics.median(times["A"]), statistics.median(times["B"])
    what = f"{args.size_gib} GiB sparse raw disk ({args.data_mb} MB of data) -> raw + vmdk + vhd, {args.rounds} rounds"
    rows = [
        row(
            "artifact stage, aws formats (new)",
            new,
            "s",
            f"under {GOAL_S:g} s",
            new < GOAL_S,
            f"{what}; runs {[round(t, 2) for t in times['B']]}",
        ),
        row(
            "artifact stage, aws formats (old: full reads, 3 hashes, one conversion at a time)",
            old,
            "s",
            "reference",
            True,
            f"runs {[round(t, 2) for t in times['A']]}",
        ),
        row(
            "artifact stage speed-up old/new",
            old / new if new else 0.0,
            "x",
            "reference",
            True,
            "median old / median new",
        ),
    ]
    report(rows, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Benchmark the composition core against pykickstart's own ksvalidator, on the same input, in one run.

1. Warm: for every shipped profile, render + validate (pykickstart parse of the output) + lint + diff against
   the release baseline, in one process with the catalog loaded once. Reports the median per profile.
2. Cold start: `ccis-workbench render PROFILE -o FILE` against `ksvalidator -v RHELn FILE` on that same output,
   both as fresh processes, alternated, N rounds; reports medians and the ratio.

Usage: python benchmarks/bench_core.py [--rounds N] [--profile NAME] [--json FILE]
Goals: under 50 ms per profile warm (issue 2); `render` cold within 1.1x of ksvalidator (issue 16).
Every figure is printed as a table row; with --json FILE the rows are also written as a JSON list of
{"measure", "value", "unit", "goal", "met", "detail"} (the README's speed table is made from them).
"""

from __future__ import annotations

import argparse
import os
import resource
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


def warm(rounds: int) -> dict[str, float]:
    from ccis_workbench.core.catalog import Catalog
    from ccis_workbench.core.compose import Composer
    from ccis_workbench.core.diff import diff_compositions
    from ccis_workbench.core.ksparse import parse_text
    from ccis_workbench.core.lint import lint_composition

    cat = Catalog.load(ROOT)
    composer = Composer(cat)
    names = cat.profile_names()
    # one untimed pass compiles the templates (that is what "warm" means)
    for n in names:
        composer.compose(cat.load_profile(n))
    per_profile: dict[str, float] = {}
    for n in names:
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            comp = composer.compose(cat.load_profile(n))
            parse_text(comp.text, comp.version)
            lint_composition(comp)
            diff_compositions(composer.compose_baseline(comp.release.name, comp.variables), comp)
            times.append(time.perf_counter() - t0)
        per_profile[n] = statistics.median(times) * 1000
    return per_profile


#: Both commands run without PYTHONDONTWRITEBYTECODE, after an untimed run of each that writes their byte code:
#: a cold start is a new process, not source compiled again (an installed package has its .pyc files).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _run(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one run of *argv*. The CPU time moves far less than the wall
    time when other work shares the cores, so it is reported beside it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cold(profile: str, rounds: int) -> dict[str, float]:
    from ccis_workbench.core.catalog import Catalog

    cat = Catalog.load(ROOT)
    version = cat.releases[cat.load_profile(profile).release].pykickstart
    exe = Path(sys.executable)
    wb = [str(exe), "-m", "ccis_workbench"]
    ksv = shutil.which("ksvalidator", path=str(exe.parent)) or shutil.which("ksvalidator")
    if not ksv:
        raise SystemExit("ksvalidator not found next to this python")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ks.cfg")
        subprocess.run([*wb, "render", profile, "-o", out], check=True, stderr=subprocess.DEVNULL, env=ENV)
        _run([str(exe), ksv, "-v", version, out])  # untimed, like the render above
        ours, theirs = [], []
        for _ in range(rounds):  # alternate so that both see the same machine state
            ours.append(_run([*wb, "render", profile, "-o", out]))
            theirs.append(_run([str(exe), ksv, "-v", version, out]))
    o, t = statistics.median(w for w, _ in ours) * 1000, statistics.median(w for w, _ in theirs) * 1000
    oc, tc = statistics.median(c for _, c in ours) * 1000, statistics.median(c for _, c in theirs) * 1000
    return {
        "render_ms": o,
        "ksvalidator_ms": t,
        "ratio": o / t,
        "render_cpu_ms": oc,
        "ksvalidator_cpu_ms": tc,
        "cpu_ratio": oc / tc,
        "load": os.getloadavg()[0],
    }


#: Goals: warm per-profile time (issue 2), cold `render` against ksvalidator (issue 16).
WARM_GOAL_MS = 50.0
COLD_GOAL_X = 1.1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--profile", default="openstack-stream9")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON to FILE")
    args = ap.parse_args()
    per = warm(args.rounds)
    c = cold(args.profile, args.rounds)
    med = statistics.median(per.values())
    slowest = max(per, key=lambda n: per[n])
    rows = [
        row(
            "warm render+validate+lint+diff per profile",
            med,
            "ms",
            f"< {WARM_GOAL_MS:.0f} ms",
            med < WARM_GOAL_MS,
            f"median over {len(per)} profiles; slowest {slowest} {per[slowest]:.1f} ms",
        ),
        row(
            "`render` cold against `ksvalidator` on the same kickstart",
            c["ratio"],
            "x",
            f"<= {COLD_GOAL_X}x",
            c["ratio"] <= COLD_GOAL_X,
            f"profile {args.profile}: ccis-workbench render {c['render_ms']:.0f} ms, ksvalidator "
            f"{c['ksvalidator_ms']:.0f} ms, medians of {args.rounds} alternated rounds; load average "
            f"{c['load']:.1f} at the end",
        ),
        row(
            "`render` cold CPU time against `ksvalidator`",
            c["cpu_ratio"],
            "x",
            "-",
            True,
            f"for reference (user + system time, less moved by other work on the cores): render "
            f"{c['render_cpu_ms']:.0f} ms, ksvalidator {c['ksvalidator_cpu_ms']:.0f} ms",
        ),
    ]
    report(rows, args.json)
    for n, ms in sorted(per.items(), key=lambda kv: -kv[1]):
        print(f"  {n:32} {ms:6.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

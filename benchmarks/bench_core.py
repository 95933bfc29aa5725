#!/usr/bin/env python3
"""Benchmark the composition core against pykickstart's own ksvalidator, on the same input, in one run.

1. Warm: for every shipped profile, render + validate (pykickstart parse of the output) + lint + diff against
   the release baseline, in one process with the catalog loaded once. Reports the median per profile.
2. Cold start: `ccis-workbench render PROFILE -o FILE` against `ksvalidator -v RHELn FILE` on that same output,
   both as fresh processes, alternated, N rounds; reports medians and the ratio.

Usage: python benchmarks/bench_core.py [--rounds N] [--profile NAME] [--json]
Targets (issue 2): under 50 ms per profile warm; cold start within 1.5x of ksvalidator.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def _run(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


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
        subprocess.run([*wb, "render", profile, "-o", out], check=True, stderr=subprocess.DEVNULL)
        ours, theirs = [], []
        for _ in range(rounds):  # alternate so that both see the same machine state
            ours.append(_run([*wb, "render", profile, "-o", out]))
            theirs.append(_run([str(exe), ksv, "-v", version, out]))
    o, t = statistics.median(ours) * 1000, statistics.median(theirs) * 1000
    return {"render_ms": o, "ksvalidator_ms": t, "ratio": o / t}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--profile", default="openstack-stream9")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    per = warm(args.rounds)
    c = cold(args.profile, args.rounds)
    med = statistics.median(per.values())
    result = {"profiles": len(per), "warm_median_ms": med, "warm_max_ms": max(per.values()), "per_profile_ms": per,
              "cold": c}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"warm render+validate+lint+diff over {len(per)} profiles: median {med:.1f} ms, "
          f"max {max(per.values()):.1f} ms (goal < 50 ms)")
    for n, ms in sorted(per.items(), key=lambda kv: -kv[1]):
        print(f"  {n:32} {ms:6.1f} ms")
    print(f"cold start, profile {args.profile}: ccis-workbench render {c['render_ms']:.0f} ms, "
          f"ksvalidator {c['ksvalidator_ms']:.0f} ms, ratio {c['ratio']:.2f} (goal <= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The figures every benchmark reports, in one format: a row per measure with its value, unit, goal and whether the
goal is met. The scripts print them as a table and write them with `--json FILE`; the README's speed table is
assembled from these rows."""

from __future__ import annotations

import json
from pathlib import Path


def row(measure: str, value: float, unit: str, goal: str, met: bool, detail: str = "") -> dict[str, object]:
    """One figure: *unit* is "s", "ms" or "x" (a ratio); *goal* is text ("< 15 s", "reference")."""
    return {"measure": measure, "value": round(value, 3), "unit": unit, "goal": goal, "met": bool(met),
            "detail": detail}


def print_rows(rows: list[dict[str, object]]) -> None:
    width = max(len(str(r["measure"])) for r in rows)
    print(f"\n{'measure':<{width}}  {'value':>10}  {'goal':<12}  met  detail")
    for r in rows:
        value = f"{r['value']:.2f}x" if r["unit"] == "x" else f"{r['value']:.2f} {r['unit']}"
        print(f"{r['measure']:<{width}}  {value:>10}  {r['goal']!s:<12}  {'yes' if r['met'] else 'NO':<3}  "
              f"{r['detail']}")


def report(rows: list[dict[str, object]], json_path: str | None) -> None:
    """Print *rows*, and write them to *json_path* when one is given."""
    print_rows(rows)
    if json_path:
        Path(json_path).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")

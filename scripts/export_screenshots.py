#!/usr/bin/env python3
"""Write screenshots/*.svg of the main TUI screens (compose, diff, lint, review, help) for the README.

    python scripts/export_screenshots.py [--catalog ROOT] [--out screenshots] [--size 120x36]

Runs the real app headless (`run_test` + `save_screenshot`) on the repository's catalog with a fixed host
status, so the pictures do not depend on this machine's libvirt. The choice shown: the release and target of
--target (default aws when the catalog has it) plus the first two overlays that apply.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ccis_workbench.ui.app import WorkbenchApp  # noqa: E402
from ccis_workbench.ui.capabilities import FixedCapabilities, HostStatus  # noqa: E402
from ccis_workbench.ui.engine import Choice, Workbench  # noqa: E402


def pick_choice(root: Path, release: str, target: str | None, overlays: int) -> Choice:
    """The release + target asked for (or the first available) and the first *overlays* overlays that apply."""
    wb = Workbench(root)
    if release not in wb.catalog.releases:
        release = next(iter(wb.catalog.releases))
    supported = [n for n, why in wb.targets_for(release).items() if not why]
    if target not in supported:
        target = "aws" if "aws" in supported else supported[0]
    ch = Choice(release, target)
    for _ in range(overlays):
        free = [n for n, why in wb.overlay_states(ch).items() if not why and n not in ch.overlays]
        if not free:
            break
        ch.overlays.append(free[0])
    return ch

async def settle(pilot) -> None:  # type: ignore[no-untyped-def]
    for _ in range(5):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

async def export(root: Path, out: Path, size: tuple[int, int], ch: Choice) -> list[Path]:
    status = HostStatus("qemu:///system", None, "not checked", "tcg")
    app = WorkbenchApp(root, capabilities=FixedCapabilities(status), theme="ccis-dark")
    written: list[Path] = []

    def shot(name: str) -> None:
        path = out / f"{name}.svg"
        app.save_screenshot(filename=path.name, path=str(out))
        written.append(path)

    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        compose = app.compose_screen
        compose.set_choice(ch)
        await settle(pilot)
        view = compose.query_one("#kickstart")
        view.focus()
        await pilot.press("v")
        lines = compose.analysis.composition.lines if compose.analysis and compose.analysis.composition else []
        first_overlay = next((ln.number for ln in lines if any(o.layer.startswith("overlay:") for o in ln.origins)),
                             1)
        compose.jump_to_line(first_overlay)
        await settle(pilot)
        shot("compose")
        await pilot.press("d")
        await settle(pilot)
        shot("diff")
        await pilot.press("l")
        await settle(pilot)
        shot("lint")
        await pilot.press("escape")
        await pilot.pause()
        app.open_review(ch.overlays[-1] if ch.overlays else None)
        await settle(pilot)
        shot("review")
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("question_mark")
        await settle(pilot)
        shot("help")
    return written

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", default=str(REPO), help="catalog root (default: this checkout)")
    parser.add_argument("--out", default=str(REPO / "screenshots"), help="output folder")
    parser.add_argument("--size", default="120x36", help="terminal size COLSxROWS")
    parser.add_argument("--release", default="centos-stream-9")
    parser.add_argument("--target", default=None)
    parser.add_argument("--overlays", type=int, default=2, help="how many overlays to add")
    args = parser.parse_args(argv)
    cols, rows = (int(x) for x in args.size.lower().split("x"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(args.catalog)
    ch = pick_choice(root, args.release, args.target, args.overlays)
    for path in asyncio.run(export(root, out, (cols, rows), ch)):
        print(path)
    return 0

if __name__ == "__main__":
    sys.exit(main())

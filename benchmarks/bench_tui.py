#!/usr/bin/env python3
"""TUI speed: (1) selection change -> updated preview, (2) cold start to first frame vs a bare Textual app.

    python benchmarks/bench_tui.py [--runs 20] [--starts 7] [--catalog ROOT] [--json FILE]

(1) runs the real app headless (run_test) on the catalog and toggles an overlay N times; the time is from the
    change (the SelectionList toggle, which posts the same message a key press does) to the PreviewUpdated
    message the screen posts once the preview widget holds the new kickstart. Results are uncached (the
    workbench cache is cleared before each change) and, for comparison, cached. The core's own compose time
    for the same choices is printed too, so the UI's share is visible.
(2) starts `python -m ccis_workbench` and a bare Textual app showing one Static, both as subprocesses on a
    pseudo-terminal of 120x36 (the workbench with a first-frame callback injected, the bare app reading
    BENCH_FIRST_FRAME_FILE): each writes time.time() right after its first refresh and exits. Same method for
    both, alternated (A, B, A, B...), so machine noise hits both alike; the ratio of the medians is reported.
    The workbench is also timed to its first preview (catalog loaded, kickstart composed and shown).

Every figure is printed as a table row (measure, value, goal, met); with --json FILE the rows are also written
as a JSON list of {"measure", "value", "unit", "goal", "met", "detail"} (the README's speed table is made from
them). Goals (issue 16): uncached preview under 20 ms, first preview under 0.5 s, first frame within 1.1x.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import pty
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

from bench_rows import report, row

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BARE_APP = """
import os, time
from pathlib import Path
from textual.app import App
from textual.widgets import Static

class Bare(App):
    def compose(self):
        yield Static("hello")
    def on_mount(self):
        if os.environ.get("BENCH_FIRST_FRAME_FILE"):
            self.call_after_refresh(self.first)
    def first(self):
        Path(os.environ["BENCH_FIRST_FRAME_FILE"]).write_text(repr(time.time()))
        self.exit()

Bare().run()
"""


async def selection_to_preview(root: Path, runs: int) -> tuple[list[float], list[float], list[float], str]:
    from textual.widgets import SelectionList

    from ccis_workbench.ui.app import WorkbenchApp
    from ccis_workbench.ui.capabilities import FixedCapabilities
    from ccis_workbench.ui.messages import PreviewUpdated

    arrived: list[float] = []

    def hook(message: object) -> None:
        if isinstance(message, PreviewUpdated):
            arrived.append(time.perf_counter())

    app = WorkbenchApp(root, capabilities=FixedCapabilities())
    uncached: list[float] = []
    cached: list[float] = []
    core: list[float] = []
    async with app.run_test(size=(120, 36), message_hook=hook) as pilot:
        for _ in range(5):
            await app.workers.wait_for_complete()
            await pilot.pause()
        screen = app.compose_screen
        wb = screen.workbench
        assert wb is not None and screen.choice is not None
        free = [n for n, why in wb.overlay_states(screen.choice).items() if not why and n not in screen.choice.overlays]
        if not free:
            raise SystemExit("no overlay applies to the first profile: nothing to toggle")
        overlay = free[0]
        sl = screen.query_one("#overlays", SelectionList)
        for i in range(runs * 2):
            use_cache = i >= runs
            if not use_cache:
                wb.clear_cache()
            count = len(arrived)
            started = time.perf_counter()
            sl.toggle(overlay)
            while len(arrived) == count:
                await pilot.pause()
            (cached if use_cache else uncached).append(arrived[-1] - started)
            await app.workers.wait_for_complete()
        label = f"{screen.choice.name} +/- {overlay}"
        # the core alone, same two choices
        from copy import deepcopy

        ch = deepcopy(screen.choice)
        for _ in range(runs):
            ch.overlays = (
                [o for o in ch.overlays if o != overlay] if overlay in ch.overlays else [*ch.overlays, overlay]
            )
            t = time.perf_counter()
            wb.composer.compose(ch.to_profile())
            core.append(time.perf_counter() - t)
    return uncached, cached, core, label


#: The workbench as `ccis-workbench` starts it, with the benchmark's callbacks injected (the app has no
#: environment hooks): argv = [catalog, marker file, "first-frame" | "ready"].
WORKBENCH_APP = """
import sys, time
from pathlib import Path
from ccis_workbench.ui.app import WorkbenchApp
from ccis_workbench.ui.capabilities import LocalCapabilities

catalog, marker, when = sys.argv[1:4]

def mark(app):
    Path(marker).write_text(repr(time.time()))
    app.exit(0)
    return True

kw = {"on_first_frame": mark} if when == "first-frame" else {"on_preview_ready": mark}
WorkbenchApp(catalog, capabilities=LocalCapabilities(), **kw).run()
"""


def first_frame(argv: list[str], size: tuple[int, int] = (120, 36), variable: str | None = None) -> float:
    """Seconds from spawning *argv* on a pty to the time the app wrote its marker file. *variable*: the bare app
    reads the marker's path from that environment variable; the workbench's command gets it as an argument."""
    with tempfile.TemporaryDirectory() as tmp:
        marker = Path(tmp) / "first-frame"
        env = dict(os.environ, TERM="xterm-256color", COLUMNS=str(size[0]), LINES=str(size[1]))
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # see WARM_UP
        if variable:
            env[variable] = str(marker)
        argv = [str(marker) if a == "{marker}" else a for a in argv]
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
        CPU.append(_children_cpu())
        started = time.time()
        proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=str(REPO), close_fds=True)
        os.close(slave)

        def drain() -> None:
            try:
                while os.read(master, 65536):
                    pass
            except OSError:
                pass

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            os.close(master)
        if not marker.exists():
            raise RuntimeError(f"{argv} exited ({proc.returncode}) without reaching a first frame")
        CPU[-1] = _children_cpu() - CPU[-1]
        return float(marker.read_text()) - started


#: The CPU time (user + system) of each process first_frame ran, in order: less moved than the wall time when
#: other work shares the cores (it includes the app's exit, alike for both apps).
CPU: list[float] = []


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


#: Untimed starts of each app before the timed ones. A cold start is a new process, not source compiled again:
#: with PYTHONDONTWRITEBYTECODE set (or byte code older than an edited source) every start would compile the
#: workbench's modules from source (tens of ms) while the bare app's Textual has its .pyc files; the starts run
#: without that variable, and the first ones write the byte code.
WARM_UP = 1

#: Goals (issue 16).
PREVIEW_GOAL_S = 0.020
READY_GOAL_S = 0.5
FIRST_FRAME_GOAL_X = 1.1


def spread(values: list[float], scale: float = 1000.0, unit: str = "ms") -> str:
    return f"min {min(values) * scale:.1f} {unit}, max {max(values) * scale:.1f} {unit}, n={len(values)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="selection changes to time")
    parser.add_argument("--starts", type=int, default=7, help="cold starts of each app")
    parser.add_argument("--catalog", default=str(REPO), help="catalog root (default: this checkout)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON to FILE")
    args = parser.parse_args(argv)

    uncached, cached, core, label = asyncio.run(selection_to_preview(Path(args.catalog), args.runs))
    rows = [
        row(
            "selection change -> preview updated, uncached",
            statistics.median(uncached) * 1000,
            "ms",
            f"< {PREVIEW_GOAL_S * 1000:.0f} ms",
            statistics.median(uncached) < PREVIEW_GOAL_S,
            f"{label}; {spread(uncached)}",
        ),
        row(
            "selection change -> preview updated, cached",
            statistics.median(cached) * 1000,
            "ms",
            "-",
            True,
            f"for reference; {spread(cached)}",
        ),
        row(
            "core compose alone (Composer.compose)",
            statistics.median(core) * 1000,
            "ms",
            "-",
            True,
            f"for reference, the same two choices; {spread(core)}",
        ),
    ]

    py = sys.executable
    workbench_times, bare_times, ready_times = [], [], []
    workbench_cpu, bare_cpu = [], []
    command = [py, "-c", WORKBENCH_APP, args.catalog, "{marker}"]
    for _ in range(WARM_UP):  # untimed: writes the byte code both apps then load, as an installed app has it
        first_frame([*command, "ready"])
        first_frame([py, "-c", BARE_APP], variable="BENCH_FIRST_FRAME_FILE")
    for _ in range(args.starts):  # interleaved, so machine noise hits both alike
        workbench_times.append(first_frame([*command, "first-frame"]))
        workbench_cpu.append(CPU[-1])
        bare_times.append(first_frame([py, "-c", BARE_APP], variable="BENCH_FIRST_FRAME_FILE"))
        bare_cpu.append(CPU[-1])
        ready_times.append(first_frame([*command, "ready"]))
    ratio = statistics.median(workbench_times) / statistics.median(bare_times)
    ready = statistics.median(ready_times)
    rows += [
        row(
            "start -> first preview on screen",
            ready,
            "s",
            f"< {READY_GOAL_S} s",
            ready < READY_GOAL_S,
            f"catalog loaded, kickstart composed and shown; 120x36 pty; {spread(ready_times)}",
        ),
        row(
            "first frame against a bare Textual app",
            ratio,
            "x",
            f"<= {FIRST_FRAME_GOAL_X}x",
            ratio <= FIRST_FRAME_GOAL_X,
            f"ccis-workbench median {statistics.median(workbench_times) * 1000:.0f} ms ({spread(workbench_times)}),"
            f" bare app {statistics.median(bare_times) * 1000:.0f} ms ({spread(bare_times)}), alternated",
        ),
        row(
            "first frame CPU time against a bare Textual app",
            statistics.median(workbench_cpu) / statistics.median(bare_cpu),
            "x",
            "-",
            True,
            f"for reference (user + system time to the first frame and exit, less moved by other work on the "
            f"cores): ccis-workbench {statistics.median(workbench_cpu) * 1000:.0f} ms, bare app "
            f"{statistics.median(bare_cpu) * 1000:.0f} ms; load average {os.getloadavg()[0]:.1f} at the end",
        ),
    ]
    report(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`ccis-workbench matrix`: build and boot-test many profiles across one or more libvirt hosts."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from ccis_workbench.cli.common import add_json, emit_json, load_catalog, say_on_stderr, settings_from_args
from ccis_workbench.core.monitor import Monitor


class _QuietMonitor(Monitor):
    """Says nothing (--quiet, --json) but can be cancelled."""

    def __init__(self) -> None:
        self.cancel_event = threading.Event()

    def cancelled(self) -> bool:
        return self.cancel_event.is_set()


class LiveTable:
    """Cell, host, stage and elapsed time while the matrix runs. On a terminal the table is redrawn in place every
    *interval* seconds (ANSI: cursor up, erase line); elsewhere (a pipe, a CI log) one plain line per change.
    What is said meanwhile (a signal's "cancelling") goes through `say`: on a terminal a line written beside the
    table would be drawn over by its next redraw, so it is printed above the table, in place of its old rows."""

    def __init__(self, cells: list[Any], out: TextIO, *, tty: bool, interval: float = 1.0) -> None:
        self.cells, self.out, self.tty, self.interval = cells, out, tty, interval
        self.t0 = time.monotonic()
        self.since: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.last: dict[str, str] = {}
        self.drawn = 0
        self.said: list[str] = []  # to print above the table at its next redraw (list.append/pop: thread-safe)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="matrix-table", daemon=True)

    def say(self, text: str) -> None:
        """A message while the table runs (it may come from a signal handler, in the middle of a redraw: it is
        only queued there, and printed at the next one, within *interval*)."""
        if self.tty and not self.stop_event.is_set():
            self.said.append(text)
        else:
            say_on_stderr(text)  # not a terminal, or the table is done: nothing draws over it

    @staticmethod
    def _state(cell: Any) -> tuple[str, bool]:
        """What the cell is doing, and whether it is over."""
        if cell.stage in ("cached", "cancelled") or cell.status != "skipped":
            return (cell.status if cell.stage != "cancelled" else "cancelled"), True
        return cell.stage, False

    def _elapsed(self, cell: Any, now: float) -> str:
        if cell.profile not in self.since:
            return ""
        s = int(self.ended.get(cell.profile, now) - self.since[cell.profile])
        return f"{s // 60:02d}:{s % 60:02d}"

    def tick(self) -> None:
        now = time.monotonic()
        changed = []
        for c in self.cells:
            state, over = self._state(c)
            if state != "waiting":
                self.since.setdefault(c.profile, now)
            if over:
                self.ended.setdefault(c.profile, now)
            if self.last.get(c.profile) != state:
                self.last[c.profile] = state
                changed.append(c)
        if self.tty:
            self._redraw(now)
        else:
            t = int(now - self.t0)
            for c in changed:
                if self.last[c.profile] != "waiting":
                    self.out.write(f"[{t // 60:02d}:{t % 60:02d}] {c.profile} on {c.host}: {self.last[c.profile]}"
                                   + (f" ({self._elapsed(c, now)})" if c.profile in self.ended else "") + "\n")
        self.out.flush()

    def _redraw(self, now: float) -> None:
        width = max([len(c.profile) for c in self.cells] + [4])
        hosts = max([len(c.host) for c in self.cells] + [4])
        lines = [f"{'CELL':{width}}  {'HOST':{hosts}}  {'STAGE':10}  ELAPSED"]
        lines += [f"{c.profile:{width}}  {c.host:{hosts}}  {self.last[c.profile]:10}  {self._elapsed(c, now)}"
                  for c in self.cells]
        said = []
        while self.said:
            said += self.said.pop(0).strip("\n").splitlines()
        up = f"\x1b[{self.drawn}F" if self.drawn else ""
        self.out.write(up + "".join(f"\x1b[2K{line}\n" for line in said + lines))
        self.drawn = len(lines)

    def _loop(self) -> None:
        while not self.stop_event.wait(self.interval):
            self.tick()

    def __enter__(self) -> LiveTable:
        self.tick()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join()
        self.tick()
        while self.said:  # queued during that last redraw
            say_on_stderr(self.said.pop(0))


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("matrix", help="build and boot-test many profiles (globs, --release/--target/--overlay) "
                       "over one or more libvirt hosts; a summary, JUnit per cell and a Markdown grid")
    p.add_argument("patterns", nargs="*", metavar="PROFILE_GLOB", help="profiles to run (default: all)")
    p.add_argument("--release", action="append", help="only this release (repeatable)")
    p.add_argument("--target", action="append", help="only this target (repeatable)")
    p.add_argument("--overlay", action="append", help="only profiles with this overlay (repeatable)")
    p.add_argument("--hosts", metavar="URI,URI", help="libvirt URIs the cells are spread over (default: the hosts "
                   "setting, else the uri setting)")
    p.add_argument("--jobs", type=int, default=1, help="cells at a time on each host (default 1)")
    p.add_argument("--tree", metavar="URL|DIR|ISO|rehearsal", help="install tree (default: each release's)")
    p.add_argument("--rebuild", action="store_true", help="run cells unchanged since a passing run again")
    p.add_argument("--rehearsal", action="store_true", help="only the checks the rehearsal image can answer")
    p.add_argument("--accel", choices=["auto", "kvm", "tcg"])
    p.add_argument("--memory", type=int, metavar="MiB", help="build guest memory")
    p.add_argument("--disk-size", metavar="SIZE", help="disk size of every cell, e.g. 96M")
    p.add_argument("--format", action="append", dest="formats",
                   help="artifact format (repeatable; default: the target's)")
    p.add_argument("--grow", type=int, metavar="MiB", help="test disk growth (default 1024)")
    p.add_argument("-o", "--output", default="matrix", help="where cells, reports and the cache go (default matrix)")
    p.add_argument("--quiet", action="store_true", help="no per-cell progress")
    add_json(p)
    p.set_defaults(func=cmd_matrix)


def cmd_matrix(args: argparse.Namespace) -> int:
    from ccis_workbench.core.compose import Composer
    from ccis_workbench.core.monitor import PrintMonitor
    from ccis_workbench.flows.build import BuildRequest
    from ccis_workbench.flows.matrix import MatrixRequest, assign_hosts, run_matrix, select_cells
    from ccis_workbench.flows.signals import CELLS_STOPPING, cancel_on_signals
    from ccis_workbench.flows.test import BootRequest

    settings = settings_from_args(args)
    cat = load_catalog(args)
    cells = select_cells(cat, args.patterns, releases=args.release, targets=args.target, overlays=args.overlay)
    hosts = [h.strip() for h in (args.hosts or settings.hosts or settings.uri).split(",") if h.strip()]
    assign_hosts(cells, hosts)
    build = BuildRequest.from_settings(settings, tree=args.tree, memory_mb=args.memory, disk_size=args.disk_size,
                                       formats=args.formats, catalog_root=str(cat.root))
    boot = BootRequest.from_settings(settings, grow_mib=args.grow, memory_mb=args.memory)
    req = MatrixRequest(build=build, boot=boot, output=Path(args.output), jobs=args.jobs, rebuild=args.rebuild,
                        rehearsal_checks=True if args.rehearsal else None)
    quiet = args.quiet or args.json
    tty = not quiet and sys.stdout.isatty()
    # on a terminal the live table is the progress (the builds' own stage lines would scroll it away); elsewhere the
    # table's plain lines on stdout and the stage lines and notes on stderr, as a log wants them
    monitor = _QuietMonitor() if quiet or tty else PrintMonitor(show_console=False)
    # Ctrl-C, SIGTERM, SIGHUP: every running cell destroys its guest and removes its volumes, waiting cells do not
    # start, and cancelled cells leave no folder; exit status 128 + the signal
    table = None if quiet else LiveTable(cells, sys.stdout, tty=tty)
    with cancel_on_signals(monitor.cancel_event, table.say if table else say_on_stderr,
                           stopping=CELLS_STOPPING) as stopped:
        if table is None:
            result = run_matrix(cat, Composer(cat), cells, req, monitor)
        else:
            with table:
                result = run_matrix(cat, Composer(cat), cells, req, monitor)
    if args.json:
        emit_json({"ok": result.ok, "seconds": round(result.seconds, 1), "counts": result.counts,
                   "summary": str(result.summary), "markdown": str(result.markdown)})
    else:
        for c in result.cells:
            say_on_stderr(f"  {c.status:7} {c.profile:45} {c.host:35} build {c.build_seconds:5.0f} s  "
                          f"test {c.test_seconds:5.0f} s" + (f"  {c.reason}" if c.reason else ""))
        say_on_stderr(f"matrix: {len(result.cells)} cell(s) in {result.seconds:.0f} s: " +
                      ", ".join(f"{n} {k}" for k, n in result.counts.items() if n) + f"; {result.markdown}")
    if stopped.exit_status is not None:
        return stopped.exit_status
    return 0 if result.ok else 1


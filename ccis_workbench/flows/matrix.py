"""The matrix: build and boot-test many compositions in one run, spread over one or more libvirt hosts.

A cell is one profile of the catalog. Cells are chosen by profile glob and --release/--target/--overlay filters,
dealt round-robin over the hosts, and each host runs at most *jobs* cells at a time. A cell builds with
flows/build.py and boot-tests with flows/test.py (nothing of theirs is duplicated here). A passing cell is cached
under a key made of the kickstart's sha256, the install tree's identity and the settings that change the image or
its test; an unchanged cell is reused unless *rebuild*. Each cell writes its JUnit (the boot test's, or one of its
own for a build that failed); the run writes summary.json and a Markdown report (release x target grid).
A failed cell's reason names its host, and says when the host went away. Once the monitor is cancelled (a signal
in the CLI) running cells end through their build's and test's own cleanup, waiting cells do not start, and a
cancelled cell leaves no folder. Both faces follow a run through its CellEvents (queued or cached, building,
boot-testing, then passed, failed or skipped), sent from the run's threads as each cell changes state.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.files import write_text_atomic
from ccis_workbench.core.monitor import Monitor

PASSED, FAILED, CACHED, SKIPPED = "passed", "failed", "cached", "skipped"
QUEUED, BUILDING, BOOT_TESTING = "queued", "building", "boot-testing"
#: A cell's stage (Cell.stage, what the CLI's table shows) -> the state its CellEvent names.
STAGE_STATES = {"build": BUILDING, "boot-test": BOOT_TESTING}
CACHE_NAME = "matrix-cache.json"


@dataclass
class Cell:
    """One profile to build and boot-test, and how it went."""

    profile: str
    release: str
    target: str
    overlays: list[str]
    host: str = ""
    status: str = SKIPPED
    stage: str = "waiting"
    reason: str = ""
    key: str = ""
    artifact: str | None = None
    report: str | None = None
    junit: str | None = None
    build_seconds: float = 0.0
    test_seconds: float = 0.0
    rehearsal: bool = False
    #: where a failed build kept its console and installer logs
    logs: str | None = None

    @property
    def name(self) -> str:
        return self.profile

    @property
    def ok(self) -> bool:
        return self.status in (PASSED, CACHED)


@dataclass(frozen=True)
class CellEvent:
    """A cell changed state: QUEUED or CACHED when the run starts, then BUILDING, BOOT_TESTING, and at its end
    PASSED, FAILED or SKIPPED (a cancelled cell: SKIPPED with stage "cancelled"). *seconds*: since the cell began
    (0 until it does)."""

    cell: Cell
    state: str
    seconds: float = 0.0

    @property
    def over(self) -> bool:
        return self.state in (PASSED, FAILED, CACHED, SKIPPED)


#: Receives every CellEvent, from the run's threads (the TUI posts a message; it must not block).
CellEvents = Callable[[CellEvent], None]


def select_cells(catalog: Any, patterns: list[str] | None = None, *, releases: list[str] | None = None,
                 targets: list[str] | None = None, overlays: list[str] | None = None) -> list[Cell]:
    """The catalog's profiles matching any of *patterns* (globs; none: all) and every given filter (a profile
    matches --overlay when it uses each named overlay)."""
    cells = []
    for name in sorted(catalog.profile_names()):
        if patterns and not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            continue
        prof = catalog.load_profile(name)
        ovs = list(prof.overlays)
        if releases and prof.release not in releases:
            continue
        if targets and prof.target not in targets:
            continue
        if overlays and not all(o in ovs for o in overlays):
            continue
        cells.append(Cell(name, prof.release, prof.target, ovs))
    if not cells:
        raise WorkbenchError("No cells", "no profile matches the selection",
                             hint="`ccis-workbench list profiles` shows them; globs: 'overlay-*', '*-stream9'")
    return cells


def cell_key(kickstart_sha256: str, tree: dict[str, Any], settings: dict[str, Any]) -> str:
    """The cache key of a cell: what decides the image and its test."""
    data = json.dumps({"kickstart": kickstart_sha256, "tree": tree, "settings": settings}, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()


def assign_hosts(cells: list[Cell], hosts: list[str]) -> None:
    """Deal the cells over *hosts* in turn."""
    if not hosts:
        raise WorkbenchError("No hosts", "--hosts names no libvirt URI")
    for i, cell in enumerate(cells):
        cell.host = hosts[i % len(hosts)]


def load_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass
class MatrixRequest:
    """What a matrix run needs beyond the cells."""

    build: Any  # flows.build.BuildRequest (its uri is replaced by each cell's host)
    boot: Any  # flows.test.BootRequest (likewise)
    output: Path
    jobs: int = 1
    rebuild: bool = False
    rehearsal_checks: bool | None = None  # None: the manifest's typed rehearsal field decides


@dataclass
class MatrixResult:
    cells: list[Cell]
    seconds: float
    markdown: Path
    summary: Path
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.cells)

    @property
    def cancelled(self) -> bool:
        return any(c.stage == "cancelled" for c in self.cells)


#: Builds and boot-tests one cell: (cell, catalog, composer, request, monitor, on_stage=...) -> None, filling the
#: cell and calling on_stage(stage) as it enters "build" and "boot-test". Injectable.
CellRunner = Callable[..., None]


def _settings_of(req: MatrixRequest) -> dict[str, Any]:
    b, t = req.build, req.boot
    return {"accel": b.accel, "memory_mb": b.memory_mb, "disk_size": b.disk_size, "formats": b.formats,
            "kernel_args": list(b.kernel_args), "test_memory_mb": t.memory_mb, "grow_mib": t.grow_mib,
            "rehearsal_checks": req.rehearsal_checks}


def run_cell(cell: Cell, catalog: Any, composer: Any, req: MatrixRequest, monitor: Monitor, *,
             on_stage: Callable[[str], None] | None = None) -> None:
    """Build the cell on its host with flows/build.py, boot-test it with flows/test.py, write its reports;
    *on_stage* hears each stage the cell enters."""
    import dataclasses

    from ccis_workbench.core.report import write_reports
    from ccis_workbench.flows.build import plan_build, plan_for_run, run_build
    from ccis_workbench.flows.test import prepare_test, run_test

    comp = composer.compose(catalog.load_profile(cell.profile))
    out = req.output / cell.profile
    build = dataclasses.replace(req.build, uri=cell.host, output=str(out / "artifacts"))
    _enter(cell, "build", on_stage)
    t0 = time.monotonic()
    plan = plan_for_run(plan_build(comp, build, monitor, download=True), comp, build, monitor)
    art = run_build(plan, monitor)
    cell.build_seconds = time.monotonic() - t0
    cell.artifact = str(art)
    _enter(cell, "boot-test", on_stage)
    t1 = time.monotonic()
    setup = prepare_test(catalog, composer, str(art), profile=catalog.load_profile(cell.profile),
                         rehearsal=req.rehearsal_checks)
    cell.rehearsal = setup.rehearsal
    result = run_test(setup, dataclasses.replace(req.boot, uri=cell.host), monitor)
    if monitor.cancelled():
        cell.status, cell.stage, cell.reason = SKIPPED, "cancelled", "cancelled"
        return  # a cancelled test is no evidence: no report is written
    result.rehearsal = setup.rehearsal
    cell.test_seconds = time.monotonic() - t1
    paths = write_reports(result, out / "boot-test")
    cell.report, cell.junit = str(paths["json"]), str(paths["junit"])
    cell.status = PASSED if result.passed else FAILED
    cell.reason = "" if result.passed else (result.ending_message or "a check failed")


def _enter(cell: Cell, stage: str, on_stage: Callable[[str], None] | None) -> None:
    cell.stage = stage
    if on_stage is not None:
        on_stage(stage)


def _failed_junit(cell: Cell) -> str:
    from xml.sax.saxutils import quoteattr

    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<testsuites name="ccis-workbench matrix" tests="1" failures="1">\n'
            f'  <testsuite name={quoteattr("matrix " + cell.profile)} tests="1" failures="1">\n'
            f'    <testcase classname="matrix.{cell.release}.{cell.target}" name="build-and-boot-test">\n'
            f'      <failure type="{cell.stage}" message={quoteattr(cell.reason[:2000])}/>\n'
            '    </testcase>\n  </testsuite>\n</testsuites>\n')


def host_reachable(uri: str) -> bool:
    """Whether libvirt at *uri* answers now (a failed cell asks, to tell a lost host from a failed build)."""
    import contextlib

    from ccis_workbench.flows.build import libvirt_backend

    try:
        conn = libvirt_backend("ccis_workbench.backends.libvirt_build").connect(uri)
    except Exception:  # noqa: BLE001 - any failure to connect means the host is not there
        return False
    with contextlib.suppress(Exception):
        conn.getVersion()
        conn.close()
        return True
    return False


def _explain_failure(cell: Cell, reachable: Callable[[str], bool]) -> None:
    """A failed cell's reason names its host, and says when the host went away and what to do about it."""
    if reachable(cell.host):
        if cell.host not in cell.reason:
            cell.reason = f"on {cell.host}: {cell.reason}"
        return
    cell.reason = (f"host {cell.host} went away ({cell.reason}); whatever this cell had started there stays "
                   f"until `ccis-workbench gc --uri {cell.host}` once it is back")


def run_matrix(catalog: Any, composer: Any, cells: list[Cell], req: MatrixRequest, monitor: Monitor, *,
               runner: Callable[..., None] = run_cell,
               reachable: Callable[[str], bool] = host_reachable,
               on_event: CellEvents | None = None) -> MatrixResult:
    """Run every cell: at most req.jobs at a time on each host; a cell that fails (or whose host goes away) fails
    alone, with its host named. Writes summary.json, matrix.md and the cache of passing cells into req.output.
    *on_event* hears every cell's state changes (CellEvent)."""
    from ccis_workbench.flows.build import resolve_source
    from ccis_workbench.flows.signals import wait_for

    req.output.mkdir(parents=True, exist_ok=True)
    cache_path = req.output / CACHE_NAME
    cache = {} if req.rebuild else load_cache(cache_path)
    lock = threading.Lock()
    settings = _settings_of(req)
    started = time.monotonic()

    def emit(cell: Cell, state: str, since: float | None = None) -> None:
        if on_event is not None:
            on_event(CellEvent(cell, state, 0.0 if since is None else time.monotonic() - since))
    # the cache key: kickstart + tree + settings (the tree resolved once; building the rehearsal tree is cached).
    # A URL tree is really read here (a plan alone fetches nothing): its .treeinfo is part of the key, and its
    # kernel and initrd land in the cache the cells' builds reuse.
    tree_identity: dict[str, Any] = {}
    source = resolve_source(composer.compose(catalog.load_profile(cells[0].profile)), req.build, monitor,
                            download=True)
    tree_identity = {"location": getattr(source, "location", ""), **source.treeinfo.identity()}
    todo: list[Cell] = []
    for cell in cells:
        from ccis_workbench.core.propose import sha256_text

        comp = composer.compose(catalog.load_profile(cell.profile))
        cell.key = cell_key(sha256_text(comp.text), tree_identity, settings)
        hit = cache.get(cell.profile)
        if hit and hit.get("key") == cell.key and Path(str(hit.get("junit", ""))).is_file():
            cell.status, cell.stage, cell.junit, cell.report = CACHED, "cached", hit["junit"], hit.get("report")
            cell.artifact, cell.rehearsal = hit.get("artifact"), bool(hit.get("rehearsal"))
            monitor.note("info", f"{cell.profile}: unchanged since a passing run (cached; --rebuild runs it again)")
        else:
            todo.append(cell)
    for cell in cells:
        emit(cell, CACHED if cell.status == CACHED else QUEUED)

    def one(cell: Cell) -> None:
        if monitor.cancelled():
            cell.status, cell.stage, cell.reason = SKIPPED, "cancelled", "cancelled"
            emit(cell, SKIPPED)
            return
        begun = time.monotonic()
        try:
            ended(cell, begun)
        finally:
            emit(cell, cell.status, begun)

    def ended(cell: Cell, begun: float) -> None:
        """Run the cell and settle its ending (status, reason, JUnit, cache)."""
        monitor.stage(f"{cell.profile} on {cell.host}")

        def on_stage(stage: str) -> None:
            emit(cell, STAGE_STATES.get(stage, stage), begun)

        try:
            runner(cell, catalog, composer, req, monitor, on_stage=on_stage)
        except WorkbenchError as exc:
            cell.status, cell.reason = FAILED, f"{exc.title}: {exc.message}"
            cell.logs = exc.logs
        except Exception as exc:  # noqa: BLE001 - a host that went away fails its cell, not the run
            cell.status, cell.reason = FAILED, f"{type(exc).__name__}: {exc}"
        if monitor.cancelled() and cell.status != PASSED:
            # stopped by the user (Ctrl-C, SIGTERM): the build and test removed their guests and volumes; what the
            # cell wrote is not evidence and goes too
            cell.status, cell.stage, cell.reason = SKIPPED, "cancelled", "cancelled"
            cell.junit = cell.report = cell.artifact = None
            shutil.rmtree(req.output / cell.profile, ignore_errors=True)
            return
        if cell.status == FAILED:
            _explain_failure(cell, reachable)
        if cell.status == FAILED and not cell.junit:
            path = req.output / cell.profile / "junit.xml"
            path.parent.mkdir(parents=True, exist_ok=True)
            cell.junit = str(write_text_atomic(path, _failed_junit(cell)))
        monitor.note("info" if cell.ok else "error",
                     f"{cell.profile} on {cell.host}: {cell.status}" + (f" ({cell.reason})" if cell.reason else ""))
        if cell.status == PASSED:
            with lock:
                cache[cell.profile] = {"key": cell.key, "junit": cell.junit, "report": cell.report,
                                       "artifact": cell.artifact, "rehearsal": cell.rehearsal}
                write_text_atomic(cache_path, json.dumps(cache, indent=2) + "\n")

    by_host: dict[str, list[Cell]] = {}
    for cell in todo:
        by_host.setdefault(cell.host, []).append(cell)
    pools = [ThreadPoolExecutor(max_workers=max(1, req.jobs), thread_name_prefix=f"matrix-{i}")
             for i in range(len(by_host))]
    futures = [pool.submit(one, c) for pool, cs in zip(pools, by_host.values(), strict=True) for c in cs]
    wait_for(futures)  # not f.result(): a signal must reach its handler while the cells run (flows/signals.py)
    for f in futures:
        f.result()
    for pool in pools:
        pool.shutdown()
    seconds = time.monotonic() - started
    counts = {s: sum(1 for c in cells if c.status == s) for s in (PASSED, CACHED, FAILED, SKIPPED)}
    summary = write_text_atomic(req.output / "summary.json", json.dumps(
        {"seconds": round(seconds, 1), "counts": counts, "cells": [asdict(c) for c in cells]}, indent=2) + "\n")
    markdown = write_text_atomic(req.output / "matrix.md", markdown_report(cells, req.output))
    return MatrixResult(cells, seconds, markdown, summary, counts)


def markdown_report(cells: list[Cell], base: Path | None = None) -> str:
    """A release x target grid (pass/fail/skip with links to each cell's reports), then one row per cell."""
    def link(path: str | None) -> str:
        if not path:
            return ""
        p = Path(path)
        try:
            return str(p.relative_to(base)) if base else str(p)
        except ValueError:
            return str(p)

    mark = {PASSED: "pass", CACHED: "pass (cached)", FAILED: "**FAIL**", SKIPPED: "skip"}
    releases = sorted({c.release for c in cells})
    targets = sorted({c.target for c in cells})
    out = ["# ccis-workbench matrix", ""]
    if any(c.rehearsal for c in cells):
        out += ["> **REHEARSAL, not a CentOS build**: cells marked (R) ran on the workbench's rehearsal system.", ""]
    out += ["| release \\ target | " + " | ".join(targets) + " |", "|---" * (len(targets) + 1) + "|"]
    for r in releases:
        row = []
        for t in targets:
            here = [c for c in cells if c.release == r and c.target == t]
            row.append("<br>".join(f"[{c.profile}]({link(c.junit)}): {mark[c.status]}{' (R)' if c.rehearsal else ''}"
                                   for c in here) or "—")
        out.append(f"| {r} | " + " | ".join(row) + " |")
    out += ["", "| Cell | Host | Status | Build s | Test s | Report | Reason |", "|---|---|---|---|---|---|---|"]
    for c in cells:
        reason = c.reason.replace("|", "\\|").replace("\n", " ")[:200]
        report = link(c.report) or (f"logs: {link(c.logs)}" if c.logs else "—")
        out.append(f"| {c.profile} | `{c.host}` | {mark[c.status]} | {c.build_seconds:.0f} | {c.test_seconds:.0f} | "
                   f"{report} | {reason} |")
    return "\n".join(out) + "\n"

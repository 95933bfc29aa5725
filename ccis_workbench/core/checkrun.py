"""The checks of one test run, whatever runs them (a booted guest or a container), and how outcomes become results.

Both runners (backends/boottest.py, backends/container_test.py) take a CheckPlan or a plain list of checks, run
the selected ones and report each outcome the same way: a CheckResult, a PASS/FAIL note and a structured
`Monitor.check` call that the TUI fills its table from.
"""

from __future__ import annotations

from collections.abc import Callable

from ccis_workbench.core.model import Check
from ccis_workbench.core.monitor import Monitor
from ccis_workbench.core.report import CheckResult
from ccis_workbench.core.testspec import CheckPlan, evaluate, expectation_text


def _origin(check: Check) -> str | None:
    return str(check.origin) if check.origin else None


class CheckRun:
    """Selected checks (with their group) and skipped ones (with the reason), from a plan or a plain list."""

    def __init__(self, checks: CheckPlan | list[Check], monitor: Monitor,
                 redact: Callable[[str], str] | None = None) -> None:
        self.monitor = monitor
        #: applied to every check's output before it is judged or kept (a boot test's per-run secrets)
        self.redact: Callable[[str], str] = redact or (lambda text: text)
        if isinstance(checks, CheckPlan):
            self.selected = [(s.check, s.group) for s in checks.selected]
            self.skipped = list(checks.skipped)
        else:
            self.selected = [(c, c.origin.layer if c.origin else "custom") for c in checks]
            self.skipped = []

    def start(self, check: Check) -> None:
        """Announce that *check* starts."""
        self.monitor.note("info", f"check {check.id}")
        self.monitor.check(check.id, "running", "")

    def judge(self, check: Check, group: str, code: int | None, output: str, duration: float) -> CheckResult:
        """The result of one check that ran (*code* None: it timed out), announced to the monitor. The output is
        redacted first: what a check prints is kept in reports that are committed and published."""
        output = self.redact(output.replace("\r", "")).strip("\n")
        passed, reason = evaluate(check, code, output)
        status = "passed" if passed else "failed"
        self.monitor.note("info" if passed else "warning", f"{'PASS' if passed else 'FAIL'} {check.id}"
                          + ("" if passed else f": {reason}"))
        self.monitor.check(check.id, status, reason)
        return CheckResult(check.id, check.description, group, check.command, expectation_text(check), status,
                           reason, code, output, duration, _origin(check))

    def skipped_results(self) -> list[CheckResult]:
        """The checks that do not apply, as skipped results with the reason."""
        out = []
        for c, why in self.skipped:
            out.append(CheckResult(c.id, c.description, c.origin.layer if c.origin else "", c.command,
                                   expectation_text(c), "skipped", why, origin=_origin(c)))
            self.monitor.check(c.id, "skipped", why)
        return out

    def skip_selected(self, reason: str) -> list[CheckResult]:
        """Every selected check as skipped with *reason* (the image could not be logged into); none remain."""
        out = []
        for c, group in self.selected:
            out.append(CheckResult(c.id, c.description, group, c.command, expectation_text(c), "skipped", reason,
                                   origin=_origin(c)))
            self.monitor.check(c.id, "skipped", reason)
        self.selected = []
        return out

    def not_run(self, results: list[CheckResult], why: str) -> list[CheckResult]:
        """Selected checks missing from *results*: errors that say the run ended before them (*why*)."""
        done = {r.id for r in results}
        out = []
        for c, group in self.selected:
            if c.id not in done:
                out.append(CheckResult(c.id, c.description, group, c.command, expectation_text(c), "error",
                                       f"not run: {why}", origin=_origin(c)))
                self.monitor.check(c.id, "error", f"not run: {why}")
        return out

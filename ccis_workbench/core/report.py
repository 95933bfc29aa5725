"""Boot-test results and their reports: JUnit XML, JSON, the console log and a terminal summary.

Pure: the backend fills a `BootTestResult`; this module writes it. Secrets never reach a result (the backend
redacts console text as it arrives); `write_reports` scrubs every file again with the *secrets* it is given.
Files are written atomically (temporary file + rename), so a failed write leaves no half report.
"""

from __future__ import annotations

import copy
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.files import write_text_atomic

#: How a boot test ended. Only "completed" lets checks decide the outcome.
ENDINGS = {
    "completed": "the guest booted, the seeded user logged in, every check ran",
    "no-login": "no login prompt appeared in time",
    "no-output": "the console stayed silent for too long",
    "login-failed": "the login prompt appeared but the seeded user could not log in",
    "crashed": "the guest crashed or stopped",
    "console-lost": "the serial console stopped answering",
    "cancelled": "cancelled by the user",
    "no-uefi-boot": "UEFI firmware found no boot loader on the image (no EFI system partition)",
    "emulator-died": "qemu, the emulator, died under the guest twice (not the image's doing)",
    "emulator-frozen": "qemu, the emulator, stopped answering libvirt twice (not the image's doing)",
    "kvm-silent": "the KVM guest's kernel stayed silent",
    "error": "the boot test could not run",
}
STATUSES = ("passed", "failed", "error", "skipped")
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]")
#: How every report names a rehearsal result: it must never pass for evidence about a CentOS image.
REHEARSAL_LABEL = "REHEARSAL, not a CentOS build"


@dataclass
class CheckResult:
    """What one check did in the guest."""

    id: str
    description: str
    group: str
    command: str
    expectation: str
    status: str  # passed | failed | error | skipped
    reason: str
    exit_status: int | None = None
    output: str = ""
    duration: float = 0.0
    origin: str | None = None
    #: the firmware of the boot the check ran in, in a run with several (`boot-test --firmware both`)
    firmware: str = ""


@dataclass
class BootTestResult:
    """Everything a boot test found; `passed` is the verdict."""

    run_id: str
    label: str
    image: str
    started: str
    uri: str
    domain: str
    domain_type: str
    seed: str
    user: str
    ending: str = "error"
    ending_message: str = ""
    boot_to_login: float | None = None
    login_time: float | None = None
    checks_time: float | None = None
    total_time: float = 0.0
    timings: dict[str, Any] = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)
    console_log: str = ""
    kept_domain: str | None = None
    #: with --keep-on-failure: the private directory holding the kept guest's password and SSH key
    kept_credentials: str | None = None
    notes: list[str] = field(default_factory=list)
    #: "vm" (a booted guest) or "container" (a rootfs tar checked without booting: no boot, login or console)
    context: str = "vm"
    #: the image is a rehearsal image (its build manifest's typed `rehearsal` field): a busybox system, not CentOS
    rehearsal: bool = False
    #: the firmware the guest booted with ("bios" or "uefi"; "" for a container check)
    firmware: str = ""
    #: a run with several firmwares (`boot-test --firmware both`): one entry per firmware (firmware, passed, ending,
    #: ending_message, counts, times); its checks are in *checks*, each with its `firmware`
    sections: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.ending == "completed" and all(c.status in ("passed", "skipped") for c in self.checks)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for c in self.checks:
            out[c.status] += 1
        return out

    @property
    def overhead(self) -> float | None:
        """Time the harness spent outside the guest's own boot-to-login and the checks' running time."""
        if self.boot_to_login is None:
            return None
        return self.total_time - self.boot_to_login - (self.login_time or 0.0) - (self.checks_time or 0.0)

    def snapshot(self, **changes: Any) -> BootTestResult:
        """A copy that later changes to this result do not reach (its lists and timings are its own), with
        *changes*: what is reported early, while the run still cleans up, stays what was reported."""
        mine = {"timings": copy.deepcopy(self.timings), "checks": list(self.checks), "notes": list(self.notes),
                "sections": copy.deepcopy(self.sections)}
        return replace(self, **{**mine, **changes})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("console_log")
        d["passed"] = self.passed
        d["counts"] = self.counts()
        d["ending_meaning"] = ENDINGS.get(self.ending, "")
        if self.rehearsal:
            d["rehearsal_label"] = REHEARSAL_LABEL
        return d


def clean_text(text: str) -> str:
    """Console text made readable: no carriage returns, no terminal escape sequences."""
    return _ANSI.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def _scrub(text: str, secrets: list[str]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "[redacted]")
    return text


# -- JUnit ------------------------------------------------------------------------------------------------------

def junit_xml(result: BootTestResult) -> str:
    """JUnit XML: one suite, a `boot` test case for boot and login, one test case per check."""
    counts = result.counts()
    boot_ok = result.ending == "completed"
    tests = len(result.checks) + 1
    failures = counts["failed"] + (0 if boot_ok or result.ending == "cancelled" else 1)
    errors = counts["error"]
    suites = ET.Element("testsuites", name="ccis-workbench boot test", tests=str(tests), failures=str(failures),
                        errors=str(errors), skipped=str(counts["skipped"]), time=f"{result.total_time:.3f}")
    suite_name = f"boot-test {result.label}"
    if result.rehearsal:
        suite_name = f"{REHEARSAL_LABEL}: {suite_name}"
    suite = ET.SubElement(suites, "testsuite", name=suite_name, tests=str(tests),
                          failures=str(failures), errors=str(errors), skipped=str(counts["skipped"]),
                          time=f"{result.total_time:.3f}", timestamp=result.started)
    props = ET.SubElement(suite, "properties")
    for k, v in (("image", result.image), ("uri", result.uri), ("domain_type", result.domain_type),
                 ("seed", result.seed), ("ending", result.ending), ("run_id", result.run_id),
                 ("boot_to_login_seconds", _num(result.boot_to_login)), ("login_seconds", _num(result.login_time)),
                 ("rehearsal", "true" if result.rehearsal else "false")):
        ET.SubElement(props, "property", name=k, value=_xml(str(v)))
    case = ET.SubElement(suite, "testcase", classname="boot" if result.context == "vm" else "container",
                         name="boot-and-login" if result.context == "vm" else "import-and-start",
                         time=f"{(result.boot_to_login or 0) + (result.login_time or 0):.3f}")
    if result.ending == "cancelled":
        ET.SubElement(case, "skipped", message="cancelled by the user")
    elif not boot_ok:
        fail = ET.SubElement(case, "failure", type=result.ending, message=_xml(result.ending_message))
        fail.text = _xml(_tail(result.console_log, 40))
    for c in result.checks:
        tc = ET.SubElement(suite, "testcase", classname=f"{c.firmware}.checks.{c.group}" if c.firmware else
                           f"checks.{c.group}", name=c.id, time=f"{c.duration:.3f}")
        if c.status == "failed":
            el = ET.SubElement(tc, "failure", type="check-failed", message=_xml(c.reason))
            el.text = _xml(f"{c.description}\n$ {c.command}\nexpected: {c.expectation}\n"
                           f"exit status: {c.exit_status}\n--- output ---\n{c.output}")
        elif c.status == "error":
            el = ET.SubElement(tc, "error", type="not-run", message=_xml(c.reason))
            el.text = _xml(c.output)
        elif c.status == "skipped":
            ET.SubElement(tc, "skipped", message=_xml(c.reason))
        if c.output and c.status == "passed":
            ET.SubElement(tc, "system-out").text = _xml(c.output)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _xml(text: str) -> str:
    return _XML_BAD.sub("", text)


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.3f}"


def _tail(text: str, n: int) -> str:
    return "\n".join(text.rstrip("\n").split("\n")[-n:])


# -- terminal summary -------------------------------------------------------------------------------------------

def render_summary(result: BootTestResult, *, width: int = 118, output_lines: int = 12) -> str:
    """The summary a person reads at the end of a run: verdict, timings, then each failure in full."""
    c = result.counts()
    verdict = "PASSED" if result.passed else "FAILED"
    what = "Boot test" if result.context == "vm" else "Container check"
    lines = [f"{what} of {result.label} ({Path(result.image).name}): {verdict}: {c['passed']} passed, "
             f"{c['failed']} failed, {c['error']} not run, {c['skipped']} skipped"]
    if result.rehearsal:
        lines.insert(0, f"{REHEARSAL_LABEL}: this image is the busybox rehearsal system, not CentOS")
    if result.context == "container" and result.domain_type:
        lines.append(f"  runner: {result.domain_type}")
    if result.firmware and not result.sections:
        lines.append(f"  firmware: {result.firmware}")
    if result.ending != "completed":
        lines.append(f"  ending: {result.ending}: {result.ending_message}")
    times = []
    if result.boot_to_login is not None:
        times.append(f"boot to login prompt {result.boot_to_login:.1f} s")
    if result.login_time is not None:
        times.append(f"login {result.login_time:.1f} s")
    if result.checks_time is not None:
        times.append(f"checks {result.checks_time:.1f} s")
    times.append(f"total {result.total_time:.1f} s")
    lines.append("  " + ", ".join(times))
    sd = result.timings.get("systemd") or {}
    ci = result.timings.get("cloud-init") or {}
    if sd:
        lines.append("  systemd: " + ", ".join(f"{k} {v:.1f} s" for k, v in sd.items()))
    if ci:
        lines.append("  cloud-init: " + ", ".join(f"{k} {v:.1f} s" for k, v in ci.items()))
    hs = result.timings.get("harness") or {}
    if hs:
        lines.append("  harness: " + ", ".join(f"{k} {v:.2f} s" for k, v in hs.items()))
    for n in result.notes:
        lines.append(f"  note: {n}")
    lines.append("")
    marks = {"passed": "PASS", "failed": "FAIL", "error": "NRUN", "skipped": "SKIP"}
    for section in result.sections:
        fw = section["firmware"]
        sc = section["counts"]
        lines.append(f"== firmware {fw}: {'PASSED' if section['passed'] else 'FAILED'}: {sc['passed']} passed, "
                     f"{sc['failed']} failed, {sc['error']} not run, {sc['skipped']} skipped")
        if section["ending"] != "completed":
            lines.append(f"  ending: {section['ending']}: {section['ending_message']}")
        if section.get("boot_to_login") is not None:
            lines.append(f"  boot to login prompt {section['boot_to_login']:.1f} s, "
                         f"total {section['total_time']:.1f} s")
        for r in result.checks:
            if r.firmware == fw:
                lines.append(f"  {marks[r.status]}  {r.id:40} {r.duration:6.1f} s  {r.description[:width - 62]}")
        lines.append("")
    for r in result.checks if not result.sections else []:
        lines.append(f"  {marks[r.status]}  {r.id:40} {r.duration:6.1f} s  {r.description[:width - 62]}")
    failed = [r for r in result.checks if r.status == "failed"]
    for r in failed:
        lines += ["", f"FAILED {r.id} ({r.origin or r.group})", f"  {r.description}", f"  $ {r.command}",
                  f"  expected: {r.expectation}", f"  got: exit status {r.exit_status}; {r.reason}"]
        out = r.output.rstrip("\n").split("\n") if r.output else []
        if len(out) > output_lines:
            lines.append(f"  | ... ({len(out) - output_lines} more lines in the JSON report)")
            out = out[-output_lines:]
        lines += [f"  | {ln}" for ln in out]
    if result.ending not in ("completed", "cancelled") and result.console_log:
        lines += ["", "Last console lines:"] + [f"  | {ln}" for ln in _tail(result.console_log, 15).split("\n")]
    return "\n".join(lines) + "\n"


# -- files ------------------------------------------------------------------------------------------------------

def write_reports(result: BootTestResult, out_dir: str | Path, secrets: list[str] | None = None) -> dict[str, Path]:
    """Write report.json, junit.xml, console.log and summary.txt into *out_dir*; returns kind -> path."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkbenchError("Cannot write the report", exc.strerror or str(exc), file=str(out)) from None
    s = list(secrets or [])
    files = {
        "json": ("report.json", json.dumps(result.to_dict(), indent=2) + "\n"),
        "junit": ("junit.xml", junit_xml(result)),
        "console": ("console.log", result.console_log),
        "summary": ("summary.txt", render_summary(result)),
    }
    paths: dict[str, Path] = {}
    for kind, (name, text) in files.items():
        paths[kind] = write_text_atomic(out / name, _scrub(text, s))
    return paths


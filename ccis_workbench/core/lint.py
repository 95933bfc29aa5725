"""Lint: pykickstart's own errors and deprecations plus the SIG baseline-spec rules, each with a stable id.

    lint_composition(comp, backend="libvirt")   a composed profile: findings carry the layer file:line
    lint_text(text, version, ...)                any kickstart file, e.g. an official CentOS one

Findings are sorted by line. A target, overlay or profile can waive a rule (`waivers: {CCIS151: reason}` or by
name slug); a waived finding keeps its severity and carries the reason in `waived`, and callers count only
unwaived findings as failures. The rules themselves live in lint_rules.py.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from pykickstart.errors import KickstartVersionError
from pykickstart.version import stringToVersion

from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.ksparse import KsMessage, parse_text
from ccis_workbench.core.lint_rules import CHECKS, RULES, Hit, LintContext, Rule
from ccis_workbench.core.model import BACKEND_FINAL_COMMAND, Origin

__all__ = ["RULES", "Finding", "Rule", "count_failures", "detect_version", "lint_composition", "lint_text",
           "rule_for"]

_SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}
_KS_RULE = {"error": "KS001", "deprecated": "KS002", "warning": "KS003"}
_VERSION_LINE = re.compile(r"^#\s*version\s*=\s*([A-Za-z]+[0-9]*)\s*$", re.M)


@dataclass
class Finding:
    """One problem: which rule, how bad, where (line in the linted text and, for compositions, the layer line)."""

    id: str
    name: str
    severity: str  # 'error' | 'warning' | 'info'
    message: str
    line: int  # 1-based line in the linted text; 0 = the whole file
    origin: Origin | None
    explanation: str
    waived: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (origin as {layer, file, line} or None)."""
        o = self.origin
        return {"id": self.id, "name": self.name, "severity": self.severity, "message": self.message,
                "line": self.line,
                "origin": {"layer": o.layer, "file": o.file, "line": o.line} if o else None,
                "explanation": self.explanation, "waived": self.waived}

    def __str__(self) -> str:
        where = str(self.origin) if self.origin else (f"line {self.line}" if self.line else "kickstart")
        text = f"{where}: {self.severity}: {self.id} {self.name}: {self.message}"
        return text + (f" (waived: {self.waived})" if self.waived else "")


def rule_for(key: str) -> Rule | None:
    """The rule with id or name *key* (case-insensitive), None when there is none."""
    k = key.strip()
    if k.upper() in RULES:
        return RULES[k.upper()]
    return next((r for r in RULES.values() if r.name == k.lower()), None)


def count_failures(findings: list[Finding], *, strict: bool = False) -> int:
    """Unwaived errors (and warnings too when *strict*): what a CLI or CI gate fails on."""
    bad = ("error", "warning") if strict else ("error",)
    return sum(1 for f in findings if f.waived is None and f.severity in bad)


def detect_version(text: str) -> str | None:
    """The pykickstart version a kickstart declares on a '#version=RHEL9' line, None without a (valid) one."""
    m = _VERSION_LINE.search(text)
    if not m:
        return None
    name = m.group(1).upper()
    try:
        stringToVersion(name)
    except KickstartVersionError:
        return None
    return name


def _check_version(version: str) -> None:
    try:
        stringToVersion(version)
    except KickstartVersionError:
        raise WorkbenchError("Unknown kickstart version", f"{version!r} is not a pykickstart version",
                             hint="use a handler name such as RHEL7, RHEL8, RHEL9 or RHEL10") from None


def _check_backend(backend: str | None) -> None:
    if backend is not None and backend not in BACKEND_FINAL_COMMAND:
        raise WorkbenchError("Unknown build backend", f"{backend!r} is not a build backend",
                             hint=f"known backends: {', '.join(BACKEND_FINAL_COMMAND)}")


def _parse(text: str, version: str) -> tuple[Any, list[KsMessage]]:
    """ksparse.parse_text, made total: a line pykickstart's shlex cannot split (an unclosed quote) raises a
    plain ValueError out of the parser; report it as an error on that line and lint the rest without it."""
    try:
        return parse_text(text, version)
    except ValueError:
        pass
    lines = text.split("\n")
    bad: list[KsMessage] = []
    inside = False
    for i, raw in enumerate(lines):
        t = raw.strip()
        if inside:
            inside = not t.startswith("%end")
            continue
        try:
            shlex.split(raw, comments=True)
        except ValueError as exc:
            bad.append(KsMessage("error", f"cannot split the line: {exc} (an unclosed quote?)", i + 1))
            lines[i] = ""
            continue
        if t.startswith("%") and not t.startswith(("%include", "%ksappend")):
            inside = True
    try:
        handler, problems = parse_text("\n".join(lines), version)
    except ValueError as exc:
        handler, problems = parse_text("", version)
        bad.append(KsMessage("error", f"pykickstart cannot read the kickstart: {exc}", 0))
    return handler, sorted(bad + problems, key=lambda p: p.line)


def _finding(rule: Rule, hit: Hit, origin: Origin | None) -> Finding:
    return Finding(rule.id, rule.name, rule.severity, hit.message, hit.line, origin, rule.explanation)


def _ks_findings(problems: list[KsMessage]) -> list[tuple[Rule, Hit]]:
    return [(RULES[_KS_RULE.get(p.severity, "KS003")], Hit(p.line, p.message)) for p in problems]


def _run_checks(ctx: LintContext) -> list[tuple[Rule, Hit]]:
    out = []
    for rule, check in CHECKS:
        for hit in check(ctx):
            out.append((rule, hit))
    return out


def _waive(findings: list[Finding], waivers: list[tuple[str, str, str, str]]) -> list[Finding]:
    """Apply (key, reason, layer label, file) waivers; report keys that name no rule."""
    extra: list[Finding] = []
    by_id: dict[str, str] = {}
    for key, reason, label, source in waivers:
        r = rule_for(key)
        if r is None:
            rule = RULES["CCIS001"]
            extra.append(Finding(rule.id, rule.name, rule.severity,
                                 f"{label} waives {key!r}, which is not a rule id or name", 0,
                                 Origin(label, source, 0), rule.explanation))
            continue
        by_id[r.id] = f"{reason} ({label})"  # later layers win, as everywhere else
    for f in findings:
        if f.id in by_id:
            f.waived = by_id[f.id]
    return findings + extra


def _sorted(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.line, _SEVERITY_RANK.get(f.severity, 3), f.id, f.message))


def _layer_waivers(spec: Any, label: str) -> list[tuple[str, str, str, str]]:
    waivers = getattr(spec, "waivers", None) or {}
    source = getattr(spec, "source", None) or "<choice>"
    return [(str(k), str(v), label, source) for k, v in waivers.items()]


def lint_text(text: str, version: str, *, filename: str = "<kickstart>", target: Any = None,
              backend: str | None = None) -> list[Finding]:
    """Lint any kickstart *text* for pykickstart *version* ('RHEL9').

    *target* (a model.Target) adds the first-boot-agent rules and the target's waivers; *backend* (a key of
    BACKEND_FINAL_COMMAND) adds the final-command and install-source rules. Origins name *filename*:line.
    """
    _check_version(version)
    _check_backend(backend)
    handler, problems = _parse(text, version)
    agent = getattr(target, "agent", None)
    label = f"target:{getattr(target, 'name', target)}"
    agent_origin = Origin(label, getattr(target, "source", None) or "<target>", 0) if target is not None else None
    ctx = LintContext(text=text, version=version, handler=handler, problems=problems, backend=backend,
                      target=target, agent=agent, agent_origin=agent_origin)
    hits = _ks_findings(problems)
    declared = detect_version(text)
    if declared and declared != version.upper():
        n = next((i for i, t in enumerate(text.split("\n"), start=1) if _VERSION_LINE.match(t)), 0)
        hits.append((RULES["KS004"], Hit(n, f"the kickstart declares {declared}, linted as {version}")))
    hits += _run_checks(ctx)
    findings = [_finding(r, h, h.origin or Origin("kickstart", filename, h.line)) for r, h in hits]
    waivers = _layer_waivers(target, label) if target is not None else []
    return _sorted(_waive(findings, waivers))


def lint_composition(comp: Any, backend: str | None = "libvirt") -> list[Finding]:
    """Lint a compose.Composition: its merged text, with each finding traced to the layer file:line.

    pykickstart deprecations found in the layers (comp.messages) are reported at the merged line they produced
    (or line 0 when the merge dropped it) with the layer's origin. Waivers come from the target, the overlays
    and the profile (in that order; a later layer's reason wins).
    """
    _check_backend(backend)
    text = comp.text
    handler, problems = comp.parsed if comp.parsed is not None else _parse(text, comp.version)
    overlay_agent = next(((o.agent, o) for o in comp.overlays if getattr(o, "agent", None)), None)
    if overlay_agent:
        agent, chooser, label = overlay_agent[0], overlay_agent[1], f"overlay:{overlay_agent[1].name}"
    else:
        agent, chooser, label = comp.target.agent, comp.target, f"target:{comp.target.name}"
    ctx = LintContext(text=text, version=comp.version, handler=handler, problems=problems, backend=backend,
                      target=comp.target, agent=agent, agent_origin=Origin(label, chooser.source, 0),
                      release=comp.release, arch=comp.variables.get("arch"))
    out: list[Finding] = []
    seen: set[tuple[str, str, int]] = set()  # pykickstart findings on the merged text: (id, message, line)
    for rule, hit in _ks_findings(problems) + _run_checks(ctx):
        origin = hit.origin or comp.origin_of(hit.line)
        out.append(_finding(rule, hit, origin))
        if rule.id.startswith("KS"):
            seen.add((rule.id, hit.message, hit.line))
    line_of_origin: dict[tuple[str, int], int] = {}
    for ol in sorted(comp.lines, key=lambda ol: ol.text.lstrip().startswith("#")):  # commands before comments
        for o in ol.origins:
            line_of_origin.setdefault((o.file, o.line), ol.number)
    for m in comp.messages:
        rule = RULES[_KS_RULE.get(m.severity, "KS003")]
        line = line_of_origin.get((m.origin.file, m.origin.line), 0)
        if line and (rule.id, m.message, line) in seen:
            continue  # the merged text shows the same problem on the line this layer line produced
        out.append(_finding(rule, Hit(line, m.message), m.origin))
    waivers = _layer_waivers(comp.target, f"target:{comp.target.name}")
    for o in comp.overlays:
        waivers += _layer_waivers(o, f"overlay:{o.name}")
    waivers += _layer_waivers(comp.profile, f"profile:{comp.profile.name}")
    return _sorted(_waive(out, waivers))

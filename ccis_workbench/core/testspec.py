"""The image test spec: which checks a composition's image must pass, and how a check's result is judged.

Pure: no guest, no libvirt. The spec file (kickstarts/testspec.yaml) holds the checks every image must pass, the
checks that depend on the first-boot agent, the commands of the checks derived from the merged kickstart, and the
ids the rehearsal image can answer. `select_checks(spec, comp)` gathers, in order: spec checks, the release's
(baseline) checks, the target's, each overlay's, the profile's, then derived checks (packages installed and
removed, services enabled and disabled, kernel arguments, SELinux mode, root locked, cloud-init datasources).
A later check with the same id replaces an earlier one, and the replacement is recorded.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccis_workbench.core import linear_regex
from ccis_workbench.core.catalog import CHECK_SCHEMA, make_check
from ccis_workbench.core.errors import CatalogError
from ccis_workbench.core.model import AGENTS, CONTEXTS, Check, Origin
from ccis_workbench.core.schema import Field, compile_catalog_regex, validate
from ccis_workbench.core.yamlfile import LineDict, LineList, load_yaml_file

#: Where the spec lives, relative to the catalog root.
SPEC_FILE = "kickstarts/testspec.yaml"
#: The kinds of derived checks, in the order they are listed.
DERIVED_KINDS = ("packages-installed", "packages-removed", "services-enabled", "services-disabled", "kernel-args",
                 "selinux", "root-locked", "datasource")
#: Groups of checks, in run order.
GROUPS = ("spec", "baseline", "target", "overlay", "profile", "derived")
#: Shell variables the boot test sets in the guest before the first check.
RUN_VARIABLES = ("CCIS_USER", "CCIS_INSTANCE_ID", "CCIS_GROW_MIB")

DERIVED_SCHEMA = {
    "description": Field(str, required=True),
    "command": Field(str, required=True),
    "exit": Field(int, default=0),
    "output": Field(str),
    "timeout": Field(int, default=60),
    "runs_in": Field(list, default=lambda: ["vm"], items=str, choices=CONTEXTS),
}
SPEC_SCHEMA = {
    "version": Field(int, required=True, choices=None, check=lambda v: None if v == 1 else "only version 1 exists"),
    "checks": Field(list, default=list, items=dict, schema=CHECK_SCHEMA),
    "agents": Field(dict, default=dict),
    "derived": Field(dict, default=dict),
    "rehearsal": Field(list, default=list, items=str),
}
_SELINUX_MODES = {0: "Disabled", 1: "Enforcing", 2: "Permissive"}


@dataclass
class DerivedRule:
    """How one kind of derived check is run; `{items}`/`{pattern}` are filled in from the kickstart."""

    kind: str
    description: str
    command: str
    exit_status: int
    output: str | None
    timeout: int
    origin: Origin
    runs_in: tuple[str, ...] = ("vm",)


@dataclass
class TestSpec:
    """The loaded spec file; `empty()` for a catalog without one."""

    source: str | None
    checks: list[Check] = field(default_factory=list)
    derived: dict[str, DerivedRule] = field(default_factory=dict)
    rehearsal: list[str] = field(default_factory=list)

    __test__ = False  # not a pytest class

    @classmethod
    def empty(cls) -> TestSpec:
        return cls(source=None)


@dataclass
class SelectedCheck:
    """A check chosen for a composition, with its group and, for derived checks, the items it covers."""

    check: Check
    group: str
    items: list[str] = field(default_factory=list)
    #: for a derived check, the catalog files whose lines gave its items (an overlay's package list, the target's
    #: kernel arguments...): the check is theirs as much as the spec's (trust labels read this)
    sources: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "items": list(self.items), **check_to_dict(self.check)}


@dataclass
class CheckPlan:
    """The checks that apply to one composition, plus what was left out and why."""

    profile: str
    release: str
    target: str | None
    overlays: list[str]
    agent: str
    seed: str
    selected: list[SelectedCheck]
    skipped: list[tuple[Check, str]] = field(default_factory=list)
    replaced: list[tuple[Check, Check]] = field(default_factory=list)
    context: str = "vm"  # where the checks run: "vm" (a booted guest) or "container" (the rootfs tar)

    @property
    def checks(self) -> list[Check]:
        return [s.check for s in self.selected]

    def group_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(GROUPS, 0)
        for s in self.selected:
            counts[s.group] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile, "release": self.release, "target": self.target, "overlays": self.overlays,
            "agent": self.agent, "seed": self.seed, "context": self.context,
            "checks": [s.to_dict() for s in self.selected],
            "skipped": [{"id": c.id, "reason": why, "origin": _origin_str(c.origin)} for c, why in self.skipped],
            "replaced": [{"id": new.id, "old": _origin_str(old.origin), "new": _origin_str(new.origin)}
                         for old, new in self.replaced],
        }


# -- loading ----------------------------------------------------------------------------------------------------

def load_spec(root: str | Path) -> TestSpec:
    """Load kickstarts/testspec.yaml under the catalog *root*; an empty spec when the file does not exist."""
    path = Path(root) / SPEC_FILE
    if not path.exists():
        return TestSpec.empty()
    raw = load_yaml_file(str(path), what="test spec", within=root)
    return parse_spec(raw, SPEC_FILE)


def parse_spec(raw: Any, rel: str) -> TestSpec:
    """Validate the parsed YAML *raw* of a spec file (*rel* names it in errors)."""
    d = validate(raw, SPEC_SCHEMA, rel, what="test spec")
    spec = TestSpec(source=rel, rehearsal=list(d["rehearsal"]))
    seen: dict[str, int] = {}

    def add(items: list[dict[str, Any]], raw_list: Any, agent: str | None) -> None:
        for i, c in enumerate(items):
            line = raw_list.line_of(i) if isinstance(raw_list, LineList) else 0
            chk = make_check(dict(c, agents=[agent]) if agent else c, Origin("spec", rel, line))
            if chk.id in seen:
                raise CatalogError("Duplicate check", f"check id {chk.id!r} appears twice in the spec", file=rel,
                                   line=line, hint=f"first defined on line {seen[chk.id]}")
            seen[chk.id] = line
            spec.checks.append(chk)

    # the agent's checks run first: `cloud-init status --wait` lets the guest settle before anything else
    agents_raw = raw.get("agents") or {}
    for agent, items in d["agents"].items():
        line = agents_raw.line_of(agent) if isinstance(agents_raw, LineDict) else 0
        if agent not in AGENTS:
            raise CatalogError("Invalid value", f"agents: {agent!r} is not one of: {', '.join(AGENTS)}", file=rel,
                               line=line)
        if not isinstance(items, list):
            raise CatalogError("Wrong type", f"agents.{agent} must be a list of checks", file=rel, line=line)
        checks = [validate(c, CHECK_SCHEMA, rel, what=f"agents.{agent} check") for c in items]
        for c, item in zip(checks, items, strict=True):
            if c.get("agents") is not None:
                raise CatalogError("Unknown key", "a check under agents: takes its agent from the section",
                                   file=rel, line=item.line_of("agents") if isinstance(item, LineDict) else line)
        add(checks, items, agent)
    add(d["checks"], raw.get("checks"), None)
    derived_raw = raw.get("derived") or {}
    for kind, body in d["derived"].items():
        line = derived_raw.line_of(kind) if isinstance(derived_raw, LineDict) else 0
        if kind not in DERIVED_KINDS:
            raise CatalogError("Unknown key", f"derived: {kind!r} is not a kind of derived check", file=rel,
                               line=line, hint=f"known kinds: {', '.join(DERIVED_KINDS)}")
        r = validate(body, DERIVED_SCHEMA, rel, what=f"derived {kind}")
        if "{items}" not in r["command"] and kind not in ("selinux", "root-locked", "datasource"):
            raise CatalogError("Invalid value", f"derived {kind}: the command must contain {{items}}", file=rel,
                               line=line)
        if r["output"] is not None:
            _compile(r["output"].replace("{pattern}", "x"), f"derived {kind}", rel, line)
        spec.derived[kind] = DerivedRule(kind, r["description"], r["command"], r["exit"], r["output"],
                                         r["timeout"], Origin("spec", rel, line), tuple(r["runs_in"]))
    rl = raw.get("rehearsal")
    for i, pat in enumerate(spec.rehearsal):
        if not re.fullmatch(r"[a-z0-9_.*?\[\]-]+", pat):
            raise CatalogError("Invalid value", f"rehearsal: {pat!r} is not a check id or id pattern", file=rel,
                               line=rl.line_of(i) if isinstance(rl, LineList) else 0)
    return spec


def _compile(pattern: str, what: str, rel: str, line: int) -> None:
    compile_catalog_regex(pattern, f"{what}: output", rel, line)  # invalid or backtracking: an error at rel:line


# -- selecting --------------------------------------------------------------------------------------------------

def composition_agent(comp: Any) -> str:
    """The first-boot agent of a composition: an overlay's replacement, else the target's, else none."""
    agent = next((o.agent for o in comp.overlays if o.agent), None)
    if agent:
        return str(agent)
    return comp.target.agent if comp.target is not None else "none"


def composition_seed(comp: Any) -> str:
    """The seed the boot test gives: the target's, but an OpenNebula CONTEXT CD for one-context, and NoCloud
    when an overlay puts NoCloud first (local-nocloud)."""
    agent = composition_agent(comp)
    if agent == "one-context":
        return "opennebula"
    if agent == "none" or comp.target is None:
        return "none" if agent == "none" else "nocloud"
    datasources = configured_datasources(comp)
    if datasources and datasources[0] == "NoCloud":
        return "nocloud"
    return str(comp.target.seed)


def composition_context(comp: Any) -> str:
    """Where the image of *comp* is checked: "container" (the rootfs tar, without booting) or "vm"."""
    return str(comp.target.context) if comp.target is not None else "vm"


def applies(check: Check, release: str, target: str | None, agent: str | None = None,
            context: str = "vm") -> str | None:
    """Why *check* does not apply to this release/target/agent/context, or None when it does."""
    if check.releases is not None and release not in check.releases:
        return f"only for {', '.join(check.releases)}"
    if check.targets is not None and (target is None or target not in check.targets):
        return f"only for target {', '.join(check.targets)}"
    if check.agents is not None and agent is not None and agent not in check.agents:
        return f"only for agent {', '.join(check.agents)}"
    if context not in check.runs_in:
        return ("needs a booted guest (the image is checked as a container)" if context == "container"
                else "runs only in the container made from a rootfs tar")
    return None


def select_checks(spec: TestSpec, comp: Any, *, rehearsal: bool = False) -> CheckPlan:
    """The checks that apply to the composition *comp*, in run order (see the module docstring).

    With *rehearsal*, only the checks the spec's `rehearsal` patterns name are kept (the others are skipped
    with that reason): the rehearsal image is a busybox system that answers a few commands only.
    """
    release = comp.release.name
    target = comp.target.name if comp.target is not None else None
    agent = composition_agent(comp)
    context = composition_context(comp)
    plan = CheckPlan(profile=comp.profile.name, release=release, target=target,
                     overlays=[o.name for o in comp.overlays], agent=agent,
                     seed=composition_seed(comp) if context == "vm" else "none", selected=[], context=context)
    candidates = [SelectedCheck(c, "spec") for c in spec.checks]
    candidates += [SelectedCheck(c, "baseline") for c in comp.release.checks]
    if comp.target is not None:
        candidates += [SelectedCheck(c, "target") for c in comp.target.checks]
    for o in comp.overlays:
        candidates += [SelectedCheck(c, "overlay") for c in o.checks]
    candidates += [SelectedCheck(c, "profile") for c in comp.profile.checks]
    candidates += derive_checks(spec, comp)

    index: dict[str, int] = {}
    for cand in candidates:
        why = applies(cand.check, release, target, agent, context)
        if why:
            plan.skipped.append((cand.check, why))
            continue
        if rehearsal and not any(fnmatch.fnmatchcase(cand.check.id, p) for p in spec.rehearsal):
            plan.skipped.append((cand.check, "the rehearsal image cannot answer it"))
            continue
        if cand.check.id in index:
            i = index[cand.check.id]
            plan.replaced.append((plan.selected[i].check, cand.check))
            plan.selected[i] = cand
            continue
        index[cand.check.id] = len(plan.selected)
        plan.selected.append(cand)
    return plan


def filter_plan(plan: CheckPlan, only: list[str] | None = None, skip: list[str] | None = None) -> CheckPlan:
    """Keep the checks whose id matches one of *only* (globs; all when empty) and none of *skip*."""
    kept: list[SelectedCheck] = []
    skipped = list(plan.skipped)
    for s in plan.selected:
        if only and not any(fnmatch.fnmatchcase(s.check.id, p) for p in only):
            skipped.append((s.check, "not selected (--only)"))
        elif skip and any(fnmatch.fnmatchcase(s.check.id, p) for p in skip):
            skipped.append((s.check, "skipped (--skip)"))
        else:
            kept.append(s)
    return CheckPlan(plan.profile, plan.release, plan.target, plan.overlays, plan.agent, plan.seed, kept, skipped,
                     list(plan.replaced), plan.context)


# -- derived checks ---------------------------------------------------------------------------------------------

def configured_datasources(comp: Any) -> list[str]:
    """The cloud-init datasource list the merged kickstart writes last (`datasource_list: [ A, B ]`), else the
    target's declared datasources."""
    found: list[str] | None = None
    for line in comp.text.splitlines():
        m = re.match(r"\s*datasource_list:\s*\[([^\]]*)\]", line)
        if m:
            found = [x.strip().strip("'\"") for x in m.group(1).split(",") if x.strip()]
    if found is not None:
        return found
    return list(comp.target.datasources) if comp.target is not None else []


#: the merged-kickstart command whose lines give each derived kind its items (packages: the %packages lines)
_DERIVED_COMMANDS = {"services-enabled": "services", "services-disabled": "services", "kernel-args": "bootloader",
                     "selinux": "selinux", "root-locked": "rootpw"}


def derived_sources(comp: Any, kind: str, items: list[str]) -> list[str]:
    """The catalog files whose merged-kickstart lines gave derived check *kind* its *items*: for packages the
    %packages lines naming them (`-name` for removed ones), for services, kernel arguments, SELinux and the root
    lock the command's line (with the origin of each value merged into it), for the datasource the lines that
    write datasource_list."""
    wanted = {("-" + i if kind == "packages-removed" else i) for i in items}
    files: set[str] = set()
    in_packages = False
    for line in getattr(comp, "lines", []):
        text = line.text.strip()
        if kind.startswith("packages-"):
            if text.startswith("%packages"):
                in_packages = True
            elif text.startswith("%end"):
                in_packages = False
            elif in_packages and text and text.split()[0] in wanted:
                files.update(o.file for o in line.origins)
        elif kind == "datasource":
            if "datasource_list" in text:
                files.update(o.file for o in line.origins)
        elif text.split(None, 1)[:1] == [_DERIVED_COMMANDS.get(kind)]:
            files.update(o.file for o in line.origins)
    return sorted(f for f in files if f)


def derive_checks(spec: TestSpec, comp: Any) -> list[SelectedCheck]:
    """Checks derived from the merged kickstart of *comp*, with the spec's commands for each kind."""
    h = comp.handler
    out: list[SelectedCheck] = []

    def add(kind: str, items: list[str], pattern: str = "", what: str = "") -> None:
        rule = spec.derived.get(kind)
        if rule is None or (not items and not pattern):
            return
        quoted = " ".join(shlex.quote(i) for i in items)
        command = rule.command.replace("{items}", quoted).replace("{pattern}", pattern)
        output = rule.output.replace("{pattern}", pattern) if rule.output is not None else None
        desc = rule.description + (f": {what}" if what else (f": {', '.join(items)}" if items else ""))
        out.append(SelectedCheck(Check(id=f"derived.{kind}", description=desc, command=command,
                                       exit_status=rule.exit_status, output=output, timeout=rule.timeout,
                                       origin=Origin("derived", rule.origin.file, rule.origin.line),
                                       runs_in=rule.runs_in),
                                 "derived", list(items), derived_sources(comp, kind, items)))

    pk = h.packages
    # groups (@core, @^env) have no rpm of their own: they are not checked one by one
    add("packages-installed", [p for p in pk.packageList])
    add("packages-removed", [p for p in pk.excludedList])
    svc = h.commands["services"]
    add("services-enabled", list(svc.enabled or []))
    add("services-disabled", list(svc.disabled or []))
    add("kernel-args", list(comp.kernel_args))
    mode = getattr(h.selinux, "selinux", None)
    if mode in _SELINUX_MODES:
        add("selinux", [], _SELINUX_MODES[mode], what=_SELINUX_MODES[mode].lower())
    if getattr(h.rootpw, "lock", False):
        add("root-locked", [], "locked", what="rootpw --lock")
    if composition_agent(comp) == "cloud-init":
        ds = configured_datasources(comp)
        if ds:
            add("datasource", [], r",\s*".join(re.escape(d) for d in ds), what=", ".join(ds))
    return out


# -- judging ----------------------------------------------------------------------------------------------------

def expectation_text(check: Check) -> str:
    """The expectation in words: 'exit 0, output matches /re/'."""
    text = f"exit {check.exit_status}"
    if check.output is not None:
        text += f", output matches /{check.output}/"
    return text


def evaluate(check: Check, exit_status: int | None, output: str) -> tuple[bool, str]:
    """Judge one result: (passed, reason). exit_status None means the check did not finish (timeout)."""
    if exit_status is None:
        return False, f"no answer within {check.timeout} s"
    text = output.replace("\r", "")
    problems = []
    if exit_status != check.exit_status:
        problems.append(f"exit status {exit_status}, expected {check.exit_status}")
    if check.output is not None and not linear_regex.search(check.output, text):  # RE2: linear time
        problems.append(f"output does not match /{check.output}/")
    return (not problems), "; ".join(problems) if problems else "ok"


def check_to_dict(check: Check) -> dict[str, Any]:
    """A check as plain data (JSON report, `spec --json`)."""
    return {"id": check.id, "description": check.description, "command": check.command,
            "exit": check.exit_status, "output": check.output, "timeout": check.timeout,
            "releases": check.releases, "targets": check.targets, "agents": check.agents,
            "runs_in": list(check.runs_in), "origin": _origin_str(check.origin),
            "layer": check.origin.layer if check.origin else None}


def _origin_str(origin: Origin | None) -> str | None:
    return str(origin) if origin is not None else None

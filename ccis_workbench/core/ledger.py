"""The fidelity ledger: which official kickstart a target follows, and why it differs from it.

A target's YAML may hold a `fidelity:` list, one entry per release:

    fidelity:
      - release: centos-stream-9
        follows:                        # the official kickstart, named by facts (never a copy of it)
          name: CentOS-Stream-9-kvm-x86_64.ks
          repository: https://gitlab.com/redhat/centos-stream/release-engineering/kickstarts
          ref: 9140424d9ab05c0675091c9256d870fa70a7a2f4     # a commit or a tag
        facts:                          # what that file sets, written here (commands, packages, scripts)
          commands: ['bootloader --append="console=ttyS0,115200n8 no_timer_check net.ifnames=0"', ...]
          packages: [cloud-init, -plymouth, ...]
          packages_options: --nocore --excludedocs      # the %packages header's options, if any
          scripts: [{section: "%pre", does: "lays out a GPT disk with parted"}]
        differences:                    # each intended difference, keyed as the semantic diff names it
          - key: "package removed: cockpit-ws"
            reason: no web console on a cloud image: nothing listens that the user did not ask for

A release may hold `fidelity:` with `differences:` its baseline makes on every target (shared: never stale for
one target), and a profile `fidelity:` with its own `differences:` (its own choices, such as extra packages).

Keys are the semantic diff's items (see `difference_keys`): the summary line for packages, services and kernel
arguments ("package removed: cockpit-ws", "kernel argument removed: crashkernel=auto"); for commands the command
(`reboot` for reboot/poweroff/shutdown/halt, `part` for partition), what happened and the item's identity
("part changed: /", "network changed: link", "firewall changed"); for
scripts their label ("script changed: %post #1"). A key may be a shell-style glob ("package excluded: iwl*").
The differences are read from the official kickstart (side a) to the profile (side b), as `diff --against-file`.
An explanation that matches no difference any more is stale (`lint` reports it for targets).
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from ccis_workbench.core.errors import CatalogError, KickstartSyntaxError
from ccis_workbench.core.schema import Field, validate
from ccis_workbench.core.yamlfile import LineDict, LineList

#: The shapes of a key, one per kind of semantic-diff item (globs allowed in the variable parts).
_KEY = re.compile(
    r"(?:(?:package|group|environment) (?:added|removed|excluded|no longer excluded): \S+"
    r"|%packages option --?\S+"
    r"|service (?:enabled|disabled|no longer set \(preset default\)): \S+"
    r"|kernel argument (?:added|removed): \S+"
    r"|script (?:added|removed|changed): %[a-z-]+ (?:#[0-9*?]+|\*)(?: \(.+\))?"
    r"|(?!(?:package|group|environment|service|kernel|script) )%?[a-z][a-z0-9_-]* (?:added|removed|changed)"
    r"(?:: \S.*)?)"
)

SCRIPT_SECTIONS = ("%pre", "%pre-install", "%post", "%onerror", "%traceback")


def _check_key(value: Any) -> str | None:
    if not isinstance(value, str) or not _KEY.fullmatch(value):
        return (
            f"{value!r} is not a semantic-diff key (e.g. 'package removed: cockpit-ws', 'kernel argument "
            "added: console=tty0', 'part changed: /', 'firewall changed', 'script changed: %post #1')"
        )
    return None


def _one_line(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip() or "\n" in value.strip():
        return "give one line"
    return None


EXPLANATION_SCHEMA = {
    "key": Field(str, required=True, check=_check_key, doc="the semantic-diff item this explains"),
    "reason": Field(str, required=True, check=_one_line, doc="why we differ, one line"),
}

FOLLOWS_SCHEMA = {
    "name": Field(
        str, required=True, pattern=r"[A-Za-z0-9._+-]+\.(?:ks|cfg)", doc="the official file name (.ks, .cfg)"
    ),
    "repository": Field(str, required=True, pattern=r"https?://\S+", doc="where it is published"),
    "ref": Field(str, required=True, pattern=r"[A-Za-z0-9._/+-]+", doc="the commit or tag read"),
}

FACTS_SCHEMA = {
    "commands": Field(list, default=list, items=str, check=_one_line),
    "packages": Field(list, default=list, items=str, pattern=r"-?(@\^?)?[A-Za-z0-9_][A-Za-z0-9._+:*-]*"),
    "packages_options": Field(str, default="", pattern=r"(--[A-Za-z-]+(=\S+)?( --[A-Za-z-]+(=\S+)?)*)?"),
    "scripts": Field(
        list,
        default=list,
        items=dict,
        schema={
            "section": Field(str, required=True, choices=SCRIPT_SECTIONS),
            "options": Field(str, default="", pattern=r"(--[a-z-]+(=\S+)?( --[a-z-]+(=\S+)?)*)?"),
            "does": Field(str, required=True, check=_one_line),
        },
    ),
}

TARGET_ENTRY_SCHEMA = {
    "release": Field(str, required=True, pattern=r"centos-[a-z0-9-]+"),
    "follows": Field(dict, required=True, schema=FOLLOWS_SCHEMA),
    "facts": Field(dict, schema=FACTS_SCHEMA),
    "differences": Field(list, default=list, items=dict, schema=EXPLANATION_SCHEMA),
}

SHARED_SCHEMA = {
    "differences": Field(list, default=list, items=dict, schema=EXPLANATION_SCHEMA),
}


@dataclass
class Explanation:
    """One intended difference: its key (maybe a glob), the reason, and where it is written."""

    key: str
    reason: str
    file: str
    line: int
    layer: str = ""

    def matches(self, key: str) -> bool:
        return self.key == key or fnmatch.fnmatchcase(key, self.key)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "reason": self.reason, "file": self.file, "line": self.line, "layer": self.layer}


@dataclass
class Follows:
    name: str
    repository: str
    ref: str

    def __str__(self) -> str:
        return f"{self.name} ({self.repository} at {self.ref})"


@dataclass
class FactScript:
    section: str
    options: str
    does: str
    line: int


@dataclass
class Facts:
    """What the official kickstart sets, as written in the ledger; each command and script keeps its YAML line."""

    commands: list[tuple[str, int]] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)
    packages_line: int = 0
    packages_options: str = ""
    scripts: list[FactScript] = field(default_factory=list)


@dataclass
class LedgerEntry:
    """A target's ledger for one release."""

    release: str
    follows: Follows
    facts: Facts | None
    differences: list[Explanation]
    file: str
    line: int
    layer: str = ""


def _line(raw: Any, key: Any) -> int:
    if isinstance(raw, LineDict):
        return raw.line_of(key)
    if isinstance(raw, LineList):
        return raw.line_of(key)
    return 0


def _explanations(raw_list: Any, items: list[dict[str, Any]], file: str, layer: str) -> list[Explanation]:
    out = []
    for i, d in enumerate(items):
        raw = raw_list[i] if isinstance(raw_list, list) else None
        out.append(Explanation(d["key"], d["reason"].strip(), file, _line(raw, "key") or _line(raw_list, i), layer))
    return out


def parse_target_ledger(raw: Any, file: str, layer: str, releases: list[str] | tuple[str, ...]) -> list[LedgerEntry]:
    """The `fidelity:` list of a target YAML (*raw*, with lines), validated; errors name file:line."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise CatalogError(
            "Wrong type", "fidelity must be a list of entries, one per release", file=file, line=getattr(raw, "line", 0)
        )
    out: list[LedgerEntry] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        line = _line(raw, i)
        d = validate(item, TARGET_ENTRY_SCHEMA, file, what="fidelity entry")
        rline = _line(item, "release") or line
        if d["release"] not in releases:
            raise CatalogError(
                "Invalid value",
                f"release: {d['release']!r} is not one of: {', '.join(releases)}",
                file=file,
                line=rline,
            )
        if d["release"] in seen:
            raise CatalogError(
                "Duplicate entry",
                f"a second fidelity entry for {d['release']} (the first is at line {seen[d['release']]})",
                file=file,
                line=rline,
                hint="one entry per release: merge the two",
            )
        seen[d["release"]] = rline
        f = d["follows"]
        facts = None
        if d["facts"] is not None:
            fraw = item.get("facts")
            craw = fraw.get("commands") if isinstance(fraw, dict) else None
            sraw = fraw.get("scripts") if isinstance(fraw, dict) else None
            facts = Facts(
                commands=[(c, _line(craw, j)) for j, c in enumerate(d["facts"]["commands"])],
                packages=list(d["facts"]["packages"]),
                packages_line=_line(fraw, "packages"),
                packages_options=d["facts"]["packages_options"],
                scripts=[
                    FactScript(
                        s["section"],
                        s["options"],
                        s["does"].strip(),
                        _line(sraw[j] if isinstance(sraw, list) else None, "section"),
                    )
                    for j, s in enumerate(d["facts"]["scripts"])
                ],
            )
        out.append(
            LedgerEntry(
                d["release"],
                Follows(f["name"], f["repository"], f["ref"]),
                facts,
                _explanations(item.get("differences"), d["differences"], file, layer),
                file,
                rline,
                layer,
            )
        )
    return out


def parse_shared_ledger(raw: Any, file: str, layer: str) -> list[Explanation]:
    """The `fidelity:` mapping of a profile (its own differences) or a release (those of its baseline)."""
    if raw is None:
        return []
    d = validate(raw, SHARED_SCHEMA, file, what="fidelity mapping")
    return _explanations(raw.get("differences"), d["differences"], file, layer)


# -- the keys of a semantic diff ---------------------------------------------------------------------------------

#: One key for the spellings of one command (the semantic diff labels it by whichever side's spelling it saw).
_ALIASES = {"poweroff": "reboot", "shutdown": "reboot", "halt": "reboot", "partition": "part"}
_MOUNT_COMMANDS = ("part", "partition", "logvol", "raid", "btrfs", "volgroup", "mount")
_NAME_OPTION = {
    "network": "device",
    "repo": "name",
    "user": "name",
    "group": "name",
    "sshkey": "username",
    "sshpw": "username",
    "zfcp": "devnum",
    "iscsi": "target",
    "fcoe": "nic",
    "nvdimm": "namespace",
}


def _identity(command: str, text: str) -> str:
    """The identity of one item of a repeating command (part's mount point, repo's name, network's device)."""
    try:
        tokens = shlex.split(text)
    except ValueError:
        tokens = text.split()
    args = tokens[1:]
    if command.startswith("%"):
        return args[0] if args else ""
    if command in _MOUNT_COMMANDS:
        return next((t for t in args if not t.startswith("-")), "")
    opt = _NAME_OPTION.get(command)
    if opt is None:
        return ""
    for i, t in enumerate(args):
        if t == f"--{opt}" and i + 1 < len(args):
            return args[i + 1]
        if t.startswith(f"--{opt}="):
            return t.split("=", 1)[1]
    return ""


@dataclass
class Difference:
    """One item of a semantic diff: its key (what an explanation names) and the line a person reads."""

    key: str
    summary: str


def difference_keys(sd: Any) -> list[Difference]:
    """Every item of a core.diff.SemanticDiff, keyed (see the module docstring), in summary order."""
    from ccis_workbench.core.diff import _package_line

    out = [
        Difference(line, line)
        for line in [_package_line(e, added=True) for e in sd.packages_added]
        + [_package_line(e, added=False) for e in sd.packages_removed]
    ]
    for opt, old, new in sd.package_options_changed:
        out.append(
            Difference(f"%packages option {opt}", f"%packages option {opt}: {old or '(unset)'} -> {new or '(unset)'}")
        )
    for line in (
        [f"service enabled: {s}" for s in sd.services_enabled]
        + [f"service disabled: {s}" for s in sd.services_disabled]
        + [f"service no longer set (preset default): {s}" for s in sd.services_unset]
        + [f"kernel argument added: {a}" for a in sd.kernel_args_added]
        + [f"kernel argument removed: {a}" for a in sd.kernel_args_removed]
    ):
        out.append(Difference(line, line))
    for label, old, new in sd.commands_changed:
        verb = "added" if not old else "removed" if not new else "changed"
        cmd = _ALIASES.get(label, label)
        ident = _identity(cmd, new or old)
        summary = (
            f"{label} {verb}: {new}"
            if verb == "added"
            else f"{label} {verb}: {old}"
            if verb == "removed"
            else f"{label} changed: {old} -> {new}"
        )
        out.append(Difference(f"{cmd} {verb}" + (f": {ident}" if ident else ""), summary))
    for verb, items in (("added", sd.scripts_added), ("removed", sd.scripts_removed), ("changed", sd.scripts_changed)):
        for s in items:
            out.append(Difference(f"script {verb}: {s.split(': ', 1)[0]}", f"script {verb}: {s}"))
    return out


# -- explaining a diff ---------------------------------------------------------------------------------------------


@dataclass
class ExplainedDifference:
    difference: Difference
    explanation: Explanation | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.difference.key,
            "summary": self.difference.summary,
            "explanation": self.explanation.to_dict() if self.explanation else None,
        }


@dataclass
class Explained:
    """Every difference, explained or not, and the explanations that matched nothing (stale)."""

    items: list[ExplainedDifference]
    stale: list[Explanation]
    follows: Follows | None = None

    @property
    def unexplained(self) -> list[ExplainedDifference]:
        return [i for i in self.items if i.explanation is None]

    @property
    def explained(self) -> list[ExplainedDifference]:
        return [i for i in self.items if i.explanation is not None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "follows": {"name": self.follows.name, "repository": self.follows.repository, "ref": self.follows.ref}
            if self.follows
            else None,
            "explained": [i.to_dict() for i in self.explained],
            "unexplained": [i.to_dict() for i in self.unexplained],
            "stale": [e.to_dict() for e in self.stale],
        }


def explain(
    sd: Any, explanations: list[Explanation], follows: Follows | None = None, shared: list[Explanation] | None = None
) -> Explained:
    """Mark each difference of semantic diff *sd* with the first explanation whose key matches it.

    *shared* explanations (a release baseline's, written for every target on it) come last and are never stale
    here: one that matches nothing for this target may explain another target's difference.
    """
    own = list(explanations)
    explanations = own + list(shared or [])
    items = []
    used: set[int] = set()
    for d in difference_keys(sd):
        match = next((e for e in explanations if e.matches(d.key)), None)
        if match is not None:
            used.add(id(match))
            # a later explanation for the same key is not stale: it is shadowed, and says the same thing
            used.update(id(e) for e in explanations if e.matches(d.key))
        items.append(ExplainedDifference(d, match))
    return Explained(items, [e for e in own if id(e) not in used], follows)


# -- the ledger of a composition -----------------------------------------------------------------------------------


def entry_for(target: Any, release: str) -> LedgerEntry | None:
    """The target's ledger entry for *release*, if it has one."""
    return next((e for e in getattr(target, "fidelity", None) or [] if e.release == release), None)


def explanations_for(comp: Any) -> tuple[LedgerEntry | None, list[Explanation], list[Explanation]]:
    """A composition's ledger entry (target and release), its own explanations (the profile's, then the target's)
    and the shared ones of its release baseline."""
    entry = entry_for(comp.target, comp.release.name) if comp.target is not None else None
    own = list(getattr(comp.profile, "fidelity", None) or [])
    return entry, own + (entry.differences if entry else []), list(getattr(comp.release, "fidelity", None) or [])


def facts_kickstart(entry: LedgerEntry) -> tuple[str, list[int]]:
    """The facts of *entry* as a kickstart text, and for each of its lines the ledger line it comes from."""
    facts = entry.facts or Facts()
    lines: list[tuple[str, int]] = [("# the facts of " + str(entry.follows), entry.line)]
    lines += list(facts.commands)
    if facts.packages:
        lines.append((f"%packages {facts.packages_options}".strip(), facts.packages_line))
        lines += [(p, facts.packages_line) for p in facts.packages]
        lines.append(("%end", facts.packages_line))
    for s in facts.scripts:
        lines.append((f"{s.section} {s.options}".strip(), s.line))
        lines.append((f"# {s.does}", s.line))
        lines.append(("%end", s.line))
    return "\n".join(t for t, _ in lines) + "\n", [n for _, n in lines]


def facts_handler(entry: LedgerEntry, version: str) -> Any:
    """The facts of *entry* parsed by pykickstart for *version*; an error names the ledger file:line."""
    from ccis_workbench.core.ksparse import parse_text

    if entry.facts is None:
        raise CatalogError(
            "No facts",
            f"the fidelity entry for {entry.release} records no facts of {entry.follows.name}",
            file=entry.file,
            line=entry.line,
            hint="add facts: (commands, packages, scripts), or diff against the file itself",
        )
    text, origins = facts_kickstart(entry)
    handler, problems = parse_text(text, version)
    for p in problems:
        if p.severity == "error":
            line = origins[p.line - 1] if 0 < p.line <= len(origins) else entry.line
            raise KickstartSyntaxError(
                f"Facts not valid kickstart for {version}",
                p.message,
                file=entry.file,
                line=line,
                hint="write each command as the official kickstart has it",
            )
    return handler


def stale_target_explanations(target: Any, release: Any, handler: Any) -> list[Explanation]:
    """The target's explanations for *release* that match no difference between its facts and *handler*."""
    from ccis_workbench.core.diff import diff_handlers

    entry = entry_for(target, release.name)
    if entry is None or entry.facts is None:
        return []
    official = facts_handler(entry, release.pykickstart)
    shared = list(getattr(release, "fidelity", None) or [])
    return explain(diff_handlers(official, handler), entry.differences, entry.follows, shared).stale

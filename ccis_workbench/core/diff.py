"""Diff two kickstarts: a normalised text diff and a diff by meaning.

Both sides are parsed with pykickstart (each with its own version) and rendered canonically before the unified
diff, so comments, blank lines, option order and command order make no difference. The semantic diff reads the
two pykickstart handlers:

- packages: `%packages` entries in kickstart syntax. `name`, `@group` (with `--nodefaults`/`--optional` when
  set), `@^environment` are inclusions; `-name` and `-@group` are exclusions. `packages_added` holds the entries
  b has and a does not, `packages_removed` those a has and b does not. So `-foo` in `packages_added` means "foo is
  newly excluded", and `-foo` in `packages_removed` means "foo is no longer excluded". `summary_lines()` spells
  this out ("package excluded: foo").
- services: the state of each service (enabled, disabled, or not mentioned) in b relative to a.
  `services_enabled` are the services b enables and a did not, `services_disabled` the services b disables and
  a did not, `services_unset` the services a enabled or disabled and b leaves at the preset default.
- kernel arguments: `bootloader --append`, split on whitespace, compared as a multiset (order ignored).
- commands: every single-valued command compared by its pykickstart text (`bootloader` without `--append`, which
  is covered by kernel arguments; `services` is covered above). Commands that repeat (network, repo, user, part,
  ...) are compared item by item: items are matched by pykickstart's own identity (same repo name, same network
  device, same user name, ...), so reordering them is no change; an item only in b is `(command, '', new)`, only
  in a `(command, old, '')`, changed `(command, old, new)`. Other sections (%addon, %certificate) are compared
  as text the same way, under the name of their section.
- `%packages` header options (`--inst-langs`, `--nocore`, ...): `(option, old text or '', new text or '')`.
- scripts: matched by (section, interpreter, chroot) and then by position, aligning identical bodies first, so
  inserting a script reports one added script, not a chain of changes. A script is "changed" when its body or
  its header options (`--erroronfail`, `--log`) differ.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pykickstart.version import versionToString

from ccis_workbench.core.compose import Composition
from ccis_workbench.core.errors import KickstartSyntaxError, WorkbenchError
from ccis_workbench.core.ksparse import parse_text

#: Commands the semantic diff covers in their own lists, not as command changes.
_OWN_LISTS = ("services",)
_HINT_WIDTH = 60


@dataclass
class SemanticDiff:
    """What changed from a to b, by meaning. Every list is empty when the two kickstarts mean the same."""

    packages_added: list[str] = field(default_factory=list)
    packages_removed: list[str] = field(default_factory=list)
    services_enabled: list[str] = field(default_factory=list)
    services_disabled: list[str] = field(default_factory=list)
    kernel_args_added: list[str] = field(default_factory=list)
    kernel_args_removed: list[str] = field(default_factory=list)
    commands_changed: list[tuple[str, str, str]] = field(default_factory=list)
    scripts_added: list[str] = field(default_factory=list)
    scripts_removed: list[str] = field(default_factory=list)
    scripts_changed: list[str] = field(default_factory=list)
    package_options_changed: list[tuple[str, str, str]] = field(default_factory=list)
    services_unset: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        """True when nothing differs by meaning."""
        return not any(getattr(self, name) for name in _FIELDS)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; change tuples become {command|option, old, new} objects."""
        out: dict[str, Any] = {}
        for name in _FIELDS:
            value = getattr(self, name)
            if name == "commands_changed":
                out[name] = [{"command": c, "old": o, "new": n} for c, o, n in value]
            elif name == "package_options_changed":
                out[name] = [{"option": c, "old": o, "new": n} for c, o, n in value]
            else:
                out[name] = list(value)
        out["empty"] = self.is_empty()
        return out

    def summary_lines(self) -> list[str]:
        """One line per change, for a person ([] when nothing differs)."""
        lines = [_package_line(e, added=True) for e in self.packages_added]
        lines += [_package_line(e, added=False) for e in self.packages_removed]
        for opt, old, new in self.package_options_changed:
            lines.append(f"%packages option {opt}: {old or '(unset)'} -> {new or '(unset)'}")
        lines += [f"service enabled: {s}" for s in self.services_enabled]
        lines += [f"service disabled: {s}" for s in self.services_disabled]
        lines += [f"service no longer set (preset default): {s}" for s in self.services_unset]
        lines += [f"kernel argument added: {a}" for a in self.kernel_args_added]
        lines += [f"kernel argument removed: {a}" for a in self.kernel_args_removed]
        for cmd, old, new in self.commands_changed:
            if not old:
                lines.append(f"{cmd} added: {new}")
            elif not new:
                lines.append(f"{cmd} removed: {old}")
            else:
                lines.append(f"{cmd} changed: {old} -> {new}")
        lines += [f"script added: {s}" for s in self.scripts_added]
        lines += [f"script removed: {s}" for s in self.scripts_removed]
        lines += [f"script changed: {s}" for s in self.scripts_changed]
        return lines


_FIELDS = ("packages_added", "packages_removed", "services_enabled", "services_disabled", "services_unset",
           "kernel_args_added", "kernel_args_removed", "commands_changed", "scripts_added", "scripts_removed",
           "scripts_changed", "package_options_changed")


def _package_line(entry: str, *, added: bool) -> str:
    if entry.startswith("-"):
        what = entry[1:]
        kind = "group" if what.startswith("@") else "package"
        return f"{kind} excluded: {what}" if added else f"{kind} no longer excluded: {what}"
    kind = "environment" if entry.startswith("@^") else "group" if entry.startswith("@") else "package"
    return f"{kind} {'added' if added else 'removed'}: {entry}"


@dataclass
class KickstartDiff:
    """The two views of one comparison: the normalised unified diff and the semantic diff."""

    a_label: str
    b_label: str
    unified: str
    semantic: SemanticDiff
    a_version: str = ""
    b_version: str = ""

    @property
    def identical(self) -> bool:
        """True when the canonical texts are the same."""
        return not self.unified

    def to_dict(self) -> dict[str, Any]:
        return {"a_label": self.a_label, "b_label": self.b_label, "a_version": self.a_version,
                "b_version": self.b_version, "identical": self.identical, "unified": self.unified,
                "semantic": self.semantic.to_dict()}


@dataclass
class Side:
    """One side of a comparison: a label, a pykickstart version, the handler and its canonical text."""

    label: str
    version: str
    handler: Any
    canonical: str

    @classmethod
    def from_text(cls, text: str, version: str, label: str, filename: str | None = None) -> Side:
        """Parse *text* for *version*; an error raises KickstartSyntaxError naming *filename* (or the label)."""
        handler, problems = parse_text(text, version)
        for p in problems:
            if p.severity == "error":
                raise KickstartSyntaxError(f"Not valid kickstart for {version}", p.message,
                                           file=filename or label, line=p.line,
                                           hint=f"check it with ksvalidator -v {version}, or compare with the "
                                                "version it was written for")
        return cls(label, version, handler, _strip_generated(str(handler)))

    @classmethod
    def from_composition(cls, comp: Composition, label: str | None = None) -> Side:
        """A composed profile: its merged handler for meaning, its text (re-rendered by pykickstart) for text."""
        canonical = _strip_generated(str(comp.parsed[0])) if comp.parsed is not None \
            else canonical_text(comp.text, comp.version)
        return cls(label or comp.profile.name, comp.version, comp.handler, canonical)


def _strip_generated(text: str) -> str:
    """Drop pykickstart's first line ("# Generated by pykickstart vX"), which names the tool version."""
    first, _, rest = text.partition("\n")
    return rest if first.startswith("# Generated by ") else text


def canonical_text(text: str, version: str) -> str:
    """pykickstart's canonical rendering of *text* for *version*, without the 'Generated by' header line.

    Parse errors do not stop it (the lines pykickstart refuses are left out); use `Side.from_text` to refuse them.
    """
    handler, _ = parse_text(text, version)
    return _strip_generated(str(handler))


def diff_sides(a: Side, b: Side, context: int = 3) -> KickstartDiff:
    """Compare two prepared sides; labels get the version appended when the versions differ."""
    a_label, b_label = a.label, b.label
    if a.version != b.version:
        a_label, b_label = f"{a_label} ({a.version})", f"{b_label} ({b.version})"
    unified = "".join(difflib.unified_diff(a.canonical.splitlines(keepends=True),
                                           b.canonical.splitlines(keepends=True),
                                           fromfile=a_label, tofile=b_label, n=context))
    return KickstartDiff(a_label, b_label, unified, diff_handlers(a.handler, b.handler), a.version, b.version)


def diff_texts(a_text: str, b_text: str, version: str, a_label: str = "a", b_label: str = "b", context: int = 3,
               *, b_version: str | None = None) -> KickstartDiff:
    """Diff two kickstart texts; b is parsed with *b_version* when given (two releases), else with *version*.

    Text that is not valid kickstart raises KickstartSyntaxError naming the label and line.
    """
    return diff_sides(Side.from_text(a_text, version, a_label), Side.from_text(b_text, b_version or version, b_label),
                      context)


def diff_compositions(a: Composition, b: Composition, a_label: str | None = None, b_label: str | None = None,
                      context: int = 3) -> KickstartDiff:
    """Diff two composed profiles (e.g. a profile against the baseline choice of its release).

    Each side keeps its own release's pykickstart version; when they differ, both labels say which.
    """
    return diff_sides(Side.from_composition(a, a_label), Side.from_composition(b, b_label), context)


def diff_composition_text(comp: Composition, text: str, text_label: str, version: str | None = None,
                          context: int = 3, *, composition_first: bool = True,
                          comp_label: str | None = None) -> KickstartDiff:
    """Diff a composed profile against any kickstart text (parsed with *version*, default the composition's).

    The composition is side a unless composition_first is False.
    """
    cs = Side.from_composition(comp, comp_label)
    ts = Side.from_text(text, version or comp.version, text_label)
    return diff_sides(cs, ts, context) if composition_first else diff_sides(ts, cs, context)


# -- the semantic diff ---------------------------------------------------------------------------------------


def diff_handlers(a_handler: Any, b_handler: Any) -> SemanticDiff:
    """The semantic diff of two pykickstart handlers (any versions)."""
    d = SemanticDiff()
    pa, pb = _package_entries(a_handler.packages), _package_entries(b_handler.packages)
    d.packages_added = [e for e in pb if e not in pa]
    d.packages_removed = [e for e in pa if e not in pb]
    d.package_options_changed = _package_options(a_handler.packages, b_handler.packages)
    _services(d, a_handler, b_handler)
    ka, kb = _kernel_args(a_handler), _kernel_args(b_handler)
    d.kernel_args_added = list((Counter(kb) - Counter(ka)).elements())
    d.kernel_args_removed = list((Counter(ka) - Counter(kb)).elements())
    same = _same_meaning_in(b_handler) if a_handler.version != b_handler.version else None
    d.commands_changed = _commands(a_handler, b_handler, same) + _sections(a_handler, b_handler)
    d.scripts_added, d.scripts_removed, d.scripts_changed = _scripts(a_handler.scripts, b_handler.scripts)
    return d


def _package_entries(pk: Any) -> list[str]:
    out = []
    if pk.environment and not pk.default:
        out.append("@^" + pk.environment)
    out += sorted(str(g) for g in pk.groupList)
    out += sorted(pk.packageList)
    out += sorted("-@" + g.name for g in pk.excludedGroupList)
    out += sorted("-" + p for p in pk.excludedList)
    return out


def _package_options(a: Any, b: Any) -> list[tuple[str, str, str]]:
    oa, ob = _header_options(a), _header_options(b)
    out = []
    for key in list(oa) + [k for k in ob if k not in oa]:
        old, new = oa.get(key, ""), ob.get(key, "")
        if _option_value(old) != _option_value(new) or bool(old) != bool(new):
            out.append(((new or old).split("=", 1)[0], old, new))
    return out


def _option_value(token: str) -> str:
    """The value of `--opt=value` (empty for a flag), so --instLangs=en and --inst-langs=en compare equal."""
    return token.split("=", 1)[1] if "=" in token else ""


def _header_options(pk: Any) -> dict[str, str]:
    """`%packages` header options as written by pykickstart, keyed so --instLangs and --inst-langs match."""
    text = str(pk).strip()
    if not text:
        return {}
    tokens = text.split("\n", 1)[0].split()[1:]
    return {t.split("=", 1)[0].lstrip("-").replace("-", "").lower(): t for t in tokens}


def _services(d: SemanticDiff, a: Any, b: Any) -> None:
    sa, sb = a.commands.get("services"), b.commands.get("services")
    on_a, off_a = (list(sa.enabled), list(sa.disabled)) if sa is not None else ([], [])
    on_b, off_b = (list(sb.enabled), list(sb.disabled)) if sb is not None else ([], [])
    d.services_enabled = [s for s in dict.fromkeys(on_b) if s not in on_a]
    d.services_disabled = [s for s in dict.fromkeys(off_b) if s not in off_a]
    d.services_unset = [s for s in dict.fromkeys(on_a + off_a) if s not in on_b and s not in off_b]


def _kernel_args(h: Any) -> list[str]:
    boot = h.commands.get("bootloader")
    return (getattr(boot, "appendLine", None) or "").split() if boot is not None else []


def _cmd_text(obj: Any) -> str:
    if obj is None:
        return ""
    return " ".join(t.strip() for t in str(obj).split("\n") if t.strip() and not t.startswith("#"))


def _single_text(name: str, cmd: Any) -> str:
    if cmd is None:
        return ""
    if name == "bootloader" and getattr(cmd, "appendLine", None):
        cmd = copy.copy(cmd)
        cmd.appendLine = None
    return _cmd_text(cmd)


def _label(name: str, ca: Any, cb: Any) -> str:
    for c in (cb, ca):
        if c is not None and getattr(c, "seen", False) and getattr(c, "currentCmd", ""):
            return str(c.currentCmd)
    return name


def _same_meaning_in(b: Any) -> Callable[[str, str], bool]:
    """For two versions: does a's command text, parsed with b's version, render as b's text?

    So `timezone UTC --isUtc` (RHEL7/8 spelling) and `timezone UTC --utc` (RHEL9) are no change.
    """
    version = versionToString(b.version)
    cache: dict[str, str | None] = {}

    def render(text: str) -> str | None:
        if text not in cache:
            handler, problems = parse_text(text + "\n", version)
            name = text.split()[0]
            cmd = handler.commands.get(name)
            if cmd is None or any(p.severity == "error" for p in problems):
                cache[text] = None
            elif cmd.dataList() is not None:
                cache[text] = " ".join(_cmd_text(x) for x in cmd.dataList())
            else:
                cache[text] = _single_text(name, cmd)
        return cache[text]

    return lambda old, new: bool(old) and render(old) == new


def _commands(a: Any, b: Any, same: Callable[[str, str], bool] | None = None) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    seen: set[tuple[int, int]] = set()
    for name in list(a.commands) + [n for n in b.commands if n not in a.commands]:
        if name in _OWN_LISTS:
            continue
        ca, cb = a.commands.get(name), b.commands.get(name)
        key = (id(ca), id(cb))
        if key in seen or (ca is None and cb is None):
            continue
        seen.add(key)
        la = ca.dataList() if ca is not None else None
        lb = cb.dataList() if cb is not None else None
        label = _label(name, ca, cb)
        if la is not None or lb is not None:
            out += _data_items(label, list(la or []), list(lb or []), same)
            continue
        old, new = _single_text(name, ca), _single_text(name, cb)
        if old != new and not (same and same(old, new)):
            out.append((label, old, new))
    return out


def _data_items(label: str, items_a: list[Any], items_b: list[Any],
                same: Callable[[str, str], bool] | None = None) -> list[tuple[str, str, str]]:
    """Match items by identical text first, then by pykickstart's identity (==); the rest are added/removed."""
    out: list[tuple[str, str, str]] = []
    text_a = [_cmd_text(x) for x in items_a]
    free = list(range(len(items_a)))
    pending = []
    for item in items_b:
        t = _cmd_text(item)
        match = next((i for i in free if text_a[i] == t), None)
        if match is None and same:
            match = next((i for i in free if same(text_a[i], t)), None)
        if match is None:
            pending.append(item)
        else:
            free.remove(match)
    for item in pending:
        t = _cmd_text(item)
        match = next((i for i in free if _same_identity(items_a[i], item)), None)
        if match is None:
            out.append((label, "", t))
        else:
            free.remove(match)
            out.append((label, text_a[match], t))
    out += [(label, text_a[i], "") for i in free]
    return out


def _same_identity(x: Any, y: Any) -> bool:
    if type(x).__eq__ is object.__eq__ and type(y).__eq__ is object.__eq__:
        return False
    try:
        return bool(x == y)
    except Exception:  # noqa: BLE001 - data classes of two versions may not compare
        return False


def _sections(a: Any, b: Any) -> list[tuple[str, str, str]]:
    """%addon (kept verbatim by pykickstart) and %certificate sections, compared as text."""
    def items(h: Any) -> list[str]:
        raw = list(getattr(h, "_null_section_strings", [])) + [str(c) for c in getattr(h, "certificates", [])]
        return [s.strip() for s in raw if s.strip()]

    ia, ib = items(a), items(b)
    out = [(s.split()[0], s, "") for s in ia if s not in ib]
    out += [(s.split()[0], "", s) for s in ib if s not in ia]
    return out


# -- scripts ---------------------------------------------------------------------------------------------------


def _script_header(s: Any) -> str:
    return str(s).lstrip("\n").split("\n", 1)[0]


def _script_section(s: Any) -> str:
    return _script_header(s).split()[0]


def _script_kind(s: Any) -> tuple[str, str, bool]:
    return _script_section(s), s.interp or "/bin/sh", bool(s.inChroot) or _script_section(s) != "%post"


def _script_body(s: Any) -> str:
    return "\n".join(line.rstrip() for line in s.script.strip("\n").split("\n")).strip("\n")


def _script_label(s: Any, scripts: list[Any]) -> str:
    section = _script_section(s)
    number = [_script_section(x) for x in scripts[:_index(scripts, s) + 1]].count(section)
    opts = [o for o in _script_header(s).split()[1:] if o.startswith(("--interpreter", "--nochroot"))]
    return f"{section} #{number}" + (f" ({' '.join(opts)})" if opts else "")


def _hint(body: str) -> str:
    lines = [t.strip() for t in body.split("\n") if t.strip()]
    first = next((t for t in lines if not t.startswith("#")), lines[0] if lines else "(empty)")
    return first if len(first) <= _HINT_WIDTH else first[:_HINT_WIDTH - 3] + "..."


def _options(s: Any) -> list[str]:
    return [o for o in _script_header(s).split()[1:] if not o.startswith(("--interpreter", "--nochroot"))]


def _change_hint(sa: Any, sb: Any) -> str:
    parts = []
    ba, bb = _script_body(sa).split("\n"), _script_body(sb).split("\n")
    if ba != bb:
        plus = minus = 0
        for line in difflib.ndiff(ba, bb):
            plus += line.startswith("+ ")
            minus += line.startswith("- ")
        first = next((line[2:].strip() for line in difflib.ndiff(ba, bb)
                      if line.startswith(("+ ", "- ")) and line[2:].strip()), "")
        hint = first if len(first) <= _HINT_WIDTH else first[:_HINT_WIDTH - 3] + "..."
        parts.append(f"body +{plus} -{minus} lines" + (f" (first: {hint})" if hint else ""))
    oa, ob = _options(sa), _options(sb)
    if oa != ob:
        parts.append(f"options {' '.join(oa) or '(none)'} -> {' '.join(ob) or '(none)'}")
    return "; ".join(parts)


def _scripts(a: list[Any], b: list[Any]) -> tuple[list[str], list[str], list[str]]:
    added: list[tuple[int, str]] = []
    removed: list[tuple[int, str]] = []
    changed: list[tuple[int, str]] = []
    kinds = list(dict.fromkeys([_script_kind(s) for s in a] + [_script_kind(s) for s in b]))
    for kind in kinds:
        ka = [s for s in a if _script_kind(s) == kind]
        kb = [s for s in b if _script_kind(s) == kind]
        sm = difflib.SequenceMatcher(None, [_script_body(s) for s in ka], [_script_body(s) for s in kb],
                                     autojunk=False)
        pairs: list[tuple[Any, Any]] = []
        for tag, i1, i2, j1, j2 in sm.get_opcodes():
            if tag == "equal" or tag == "replace":
                n = min(i2 - i1, j2 - j1)
                pairs += list(zip(ka[i1:i1 + n], kb[j1:j1 + n], strict=True))
                removed += [(_index(a, s), _describe(s, a)) for s in ka[i1 + n:i2]]
                added += [(_index(b, s), _describe(s, b)) for s in kb[j1 + n:j2]]
            elif tag == "delete":
                removed += [(_index(a, s), _describe(s, a)) for s in ka[i1:i2]]
            else:
                added += [(_index(b, s), _describe(s, b)) for s in kb[j1:j2]]
        for sa, sb in pairs:
            if str(sa) != str(sb):
                changed.append((_index(b, sb), f"{_script_label(sb, b)}: {_change_hint(sa, sb)}"))
    return ([t for _, t in sorted(added)], [t for _, t in sorted(removed)], [t for _, t in sorted(changed)])


def _index(scripts: list[Any], s: Any) -> int:
    return next(i for i, x in enumerate(scripts) if x is s)


def _describe(s: Any, scripts: list[Any]) -> str:
    return f"{_script_label(s, scripts)}: {_hint(_script_body(s))}"


# -- the profile at a git revision ---------------------------------------------------------------------------

#: Variables that would point git somewhere else than the catalog root.
_GIT_ENV_DROP = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_CEILING_DIRECTORIES")


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_ENV_DROP}
    env["LC_ALL"] = "C"
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, check=False, env=env)
    except FileNotFoundError:
        raise WorkbenchError("git not found", "git is needed to read a profile at a revision",
                             hint="install git, or compare with a file instead of a revision") from None


def profile_at_revision(catalog_root: Path, profile_path: str, rev: str) -> str:
    """The text of *profile_path* (relative to the catalog root, or a profile name) at git revision *rev*.

    Raises WorkbenchError when the root is not in a git repository, the revision is unknown, or the file does
    not exist at that revision.
    """
    root = Path(catalog_root)
    path = profile_path
    if "/" not in path and not path.endswith((".yaml", ".yml")):
        path = f"profiles/{path}.yaml"
    p = Path(path)
    if p.is_absolute():
        try:
            p = p.resolve().relative_to(root.resolve())
        except ValueError:
            raise WorkbenchError("Profile outside the catalog", f"{profile_path} is not under {root}",
                                 file=profile_path) from None
        path = p.as_posix()
    if not root.is_dir():
        raise WorkbenchError("Catalog not found", f"{root} is not a directory", file=str(root))
    if _git(root, "rev-parse", "--git-dir").returncode != 0:
        raise WorkbenchError("Not a git repository", f"{root} is not inside a git repository", file=str(root),
                             hint="compare with a profile file instead of a revision, or run `git init`")
    if not rev or rev.startswith("-") or re.search(r"[\s:]", rev):
        raise WorkbenchError("Invalid revision", f"{rev!r} is not a revision name", file=path,
                             hint="use a commit, branch or tag, such as HEAD~1 or main")
    if _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").returncode != 0:
        raise WorkbenchError("Unknown revision", f"{rev!r} is not a commit in {root}", file=path,
                             hint="see `git log --oneline` for the revisions that exist")
    res = _git(root, "show", f"{rev}:./{path}")
    if res.returncode != 0:
        raise WorkbenchError("File not in revision", f"{path} does not exist at revision {rev}", file=path,
                             hint=f"see `git ls-tree -r --name-only {rev}` for the files it has")
    try:
        return res.stdout.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WorkbenchError("Not UTF-8", f"{path} at {rev} is not UTF-8 text: {exc}", file=path) from None

"""The UI's view of the core: one choice -> composition, lint findings and a diff; overlay availability; the
review matrix; saving profiles. Plain Python (no Textual), called from thread workers and tested directly.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from ccis_workbench.core.catalog import Catalog
from ccis_workbench.core.compose import Composer, Composition, choice, default_name
from ccis_workbench.core.errors import CatalogError, WorkbenchError
from ccis_workbench.core.model import Profile
from ccis_workbench.core.values import VARIABLES
from ccis_workbench.flows.isolated import IsolatedComposer

#: Diff modes, in the order the "cycle" key walks them: (key, title).
DIFF_MODES: tuple[tuple[str, str], ...] = (
    ("baseline", "against the release baseline"),
    ("target", "against the target alone (no overlays, default variables)"),
    ("profile", "against the saved profile"),
    ("file", "against a kickstart file"),
    ("head", "against git HEAD (this choice with the catalog as last committed)"),
)
#: The variables the chooser edits, in display order.
EDITED_VARIABLES = ("arch", "disk_size", "timezone", "locale", "hostname", "extra_packages")


@dataclass
class Choice:
    """What the user has picked: release, target, overlays (in order), variables and the profile it came from."""

    release: str
    target: str
    overlays: list[str] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)
    base: Profile | None = None  # the profile opened, if any (kept: description, kickstart block, checks)

    @property
    def name(self) -> str:
        return self.base.name if self.base else default_name(self.release, self.target, self.overlays)

    @property
    def modified(self) -> bool:
        """True when the choice differs from the profile it was opened from."""
        b = self.base
        return b is not None and (b.release, b.target, list(b.overlays), dict(b.variables)) != (
            self.release, self.target, list(self.overlays), dict(self.variables))

    def key(self) -> tuple[Any, ...]:
        return (self.release, self.target, tuple(self.overlays),
                tuple(sorted((k, repr(v)) for k, v in self.variables.items())),
                self.base.source if self.base else None)

    def to_profile(self) -> Profile:
        """An ad-hoc profile for the core (errors name '<choice>' unless a kickstart block comes from a file)."""
        if self.base is None:
            return choice(self.release, self.target, self.overlays, self.variables, name=self.name)
        keep_source = self.base.source if self.base.kickstart else None
        return replace(self.base, release=self.release, target=self.target, overlays=list(self.overlays),
                       variables=dict(self.variables), source=keep_source, lines={})

    @classmethod
    def from_profile(cls, profile: Profile) -> Choice:
        return cls(profile.release, profile.target, list(profile.overlays), dict(profile.variables), profile)


@dataclass
class DiffResult:
    """The diff shown in the Diff tab, or why there is none."""

    mode: str
    label: str
    diff: Any = None  # core.diff.KickstartDiff
    error: str = ""


@dataclass
class Analysis:
    """Everything the compose screen shows for one choice."""

    key: tuple[Any, ...]
    composition: Composition | None = None
    error: WorkbenchError | None = None
    findings: list[Any] | None = None
    lint_error: str = ""
    diff: DiffResult | None = None
    elapsed_ms: float = 0.0
    complete: bool = False  # False: composed only (lint and diff follow)


@dataclass
class ReviewCell:
    """One release x target cell of the review matrix for an overlay."""

    release: str
    target: str
    applicable: bool
    reason: str = ""
    errors: int = 0
    warnings: int = 0
    lint_note: str = ""
    diff_lines: int = 0
    overlays: list[str] = field(default_factory=list)
    #: Reviewing a changed fragment: False when the change leaves this cell's kickstart as it was.
    affected: bool = True
    #: Reviewing a changed fragment: the cell composed at HEAD but the change makes it fail.
    broken: bool = False

    def lint_status(self) -> str:
        if not self.applicable:
            return "—"
        if self.lint_note:
            return self.lint_note
        if self.errors:
            return f"{self.errors} error{'s' * (self.errors != 1)}"
        if self.warnings:
            return f"{self.warnings} warning{'s' * (self.warnings != 1)}"
        return "clean"


def parse_list(text: str) -> list[str]:
    """'a, b' -> ['a', 'b'] (the chooser's list inputs): items are separated by commas only, so `foo bar` stays
    one item that the core then refuses, instead of two packages the user did not mean."""
    return [t.strip() for t in text.split(",") if t.strip()]


def field_value(raw: str, kind: str) -> Any:
    """The value a chooser field's text stands for, by the variable's type: a whole number for int, true/false
    for bool, a comma-separated list for list; anything else stays text (the core's rule then says why)."""
    if kind == "list":
        return parse_list(raw)
    if kind == "int" and re.fullmatch(r"[0-9]{1,9}", raw):
        return int(raw)
    if kind == "bool" and raw.lower() in ("true", "false", "yes", "no", "1", "0"):
        return raw.lower() in ("true", "yes", "1")
    return raw


class Workbench:
    """A loaded catalog with its composer and caches. Reload by making a new one."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.catalog = Catalog.load(root)
        self.root = self.catalog.root
        self.composer = Composer(self.catalog)
        # review composes every cell of a (possibly contributed, untrusted) catalog: in a worker with limits
        self._review_composer: IsolatedComposer | None = None
        #: (commit, composer, its temporary folder) of the catalog at git HEAD, for the "against HEAD" diff
        self._head: tuple[str, IsolatedComposer, tempfile.TemporaryDirectory[str]] | None = None
        self._cache: dict[tuple[Any, ...], Composition] = {}

    def clear_cache(self) -> None:
        """Forget composed results (the benchmark measures uncached compositions)."""
        self._cache.clear()

    # -- the choice --------------------------------------------------------------------------------------------

    def default_choice(self) -> Choice:
        """A new composition, not a saved profile (whose description, variables and kickstart block would leak
        into what the user saves): the first release that is not end-of-life (else the first release), with the
        generic cloud target `openstack` when it supports that release, else the first target that does."""
        releases = list(self.catalog.releases.values())
        release = next((r.name for r in releases if not r.eol), releases[0].name if releases else "")
        supported = [n for n, why in self.targets_for(release).items() if not why]
        target = "openstack" if "openstack" in supported else (supported[0] if supported else
                                                               next(iter(self.catalog.targets), ""))
        return Choice(release, target)

    def targets_for(self, release: str) -> dict[str, str]:
        """Every target -> '' when it supports *release*, else the reason it does not."""
        out = {}
        for name, t in sorted(self.catalog.targets.items()):
            out[name] = "" if release in t.releases else f"does not support {release}"
        return out

    def overlay_states(self, ch: Choice) -> dict[str, str]:
        """Every overlay -> '' when it can be added to (or is in) the choice, else the reason it cannot."""
        out: dict[str, str] = {}
        arch = ch.variables.get("arch", VARIABLES["arch"].default)
        for name in sorted(self.catalog.overlays):
            if name in ch.overlays:
                out[name] = ""
                continue
            why = self._metadata_reason(ch, name, arch)
            if not why:
                trial = choice(ch.release, ch.target, [*ch.overlays, name], {"arch": arch})
                try:
                    self.composer.resolve(trial)
                except WorkbenchError as exc:
                    why = _short_reason(exc)
            out[name] = why
        return out

    def _metadata_reason(self, ch: Choice, name: str, arch: str) -> str:
        """A short reason from the overlay's metadata (it fits the chooser's width), or ''."""
        o = self.catalog.overlays[name]
        if ch.release not in o.releases:
            return f"not for {ch.release}"
        if not o.applies_to(ch.target):
            return f"not for {ch.target}"
        if arch not in o.arches:
            return f"not for {arch}"
        for other in ch.overlays:
            other_o = self.catalog.overlays.get(other)
            if other in o.conflicts or (other_o is not None and name in other_o.conflicts):
                return f"conflicts with {other}"
        missing = [r for r in o.requires if r not in ch.overlays]
        if missing:
            return f"needs {', '.join(missing)} first"
        return ""

    def drop_inapplicable(self, ch: Choice) -> list[tuple[str, str]]:
        """Remove overlays that no longer apply (after a release/target change); return (name, reason) dropped."""
        dropped = []
        kept: list[str] = []
        arch = ch.variables.get("arch", VARIABLES["arch"].default)
        for name in ch.overlays:
            try:
                self.composer.resolve(choice(ch.release, ch.target, [*kept, name], {"arch": arch}))
                kept.append(name)
            except WorkbenchError as exc:
                dropped.append((name, _short_reason(exc)))
        ch.overlays = kept
        return dropped

    # -- analysis ----------------------------------------------------------------------------------------------

    def compose(self, ch: Choice) -> Composition:
        key = ch.key()
        comp = self._cache.get(key)
        if comp is None:
            comp = self.composer.compose(ch.to_profile())
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = comp
        return comp

    def analyse(self, ch: Choice, diff_mode: str = "baseline", diff_file: str | None = None,
                saved_profile: str | None = None) -> Analysis:
        """Compose the choice, lint it and diff it; never raises for bad input (the error is in the result)."""
        first = self.preview(ch)
        return self.complete(first, ch, diff_mode, diff_file, saved_profile) if first.composition else first

    def preview(self, ch: Choice) -> Analysis:
        """Only compose (what the preview needs first); the error, if any, is in the result."""
        started = time.perf_counter()
        result = Analysis(key=ch.key())
        try:
            result.composition = self.compose(ch)
        except WorkbenchError as exc:
            result.error = exc
        result.elapsed_ms = (time.perf_counter() - started) * 1000
        return result

    def complete(self, first: Analysis, ch: Choice, diff_mode: str = "baseline", diff_file: str | None = None,
                 saved_profile: str | None = None) -> Analysis:
        """A copy of *first* with lint findings and the diff added."""
        started = time.perf_counter()
        result = replace(first, complete=True)
        if first.composition is not None:
            result.findings, result.lint_error = self.lint(first.composition)
            result.diff = self.diff(first.composition, ch, diff_mode, diff_file, saved_profile)
        result.elapsed_ms = first.elapsed_ms + (time.perf_counter() - started) * 1000
        return result

    def lint(self, comp: Composition) -> tuple[list[Any] | None, str]:
        from ccis_workbench.core import lint

        try:
            return list(lint.lint_composition(comp)), ""
        except WorkbenchError as exc:
            return None, str(exc)

    def diff(self, comp: Composition, ch: Choice, mode: str, diff_file: str | None,
             saved_profile: str | None) -> DiffResult:
        from ccis_workbench.core import diff

        title = dict(DIFF_MODES).get(mode, mode)
        try:
            if mode == "baseline":
                # the same baseline as the CLI's `diff` and propose's evidence (flows.review)
                from ccis_workbench.flows.review import baseline_label, diff_against_baseline

                return DiffResult(mode, baseline_label(comp), diff_against_baseline(self.composer, comp))
            if mode == "target":
                other = self.compose(Choice(ch.release, ch.target, [], {"arch": comp.variables["arch"]}))
                label = f"{ch.release} + {ch.target} (no overlays, default variables)"
                return DiffResult(mode, label, diff.diff_compositions(other, comp))
            if mode == "profile":
                if not saved_profile:
                    return DiffResult(mode, title, error="no saved profile is open: open one (o) or save this "
                                                         "choice (s) first")
                saved = self.composer.compose(self.catalog.load_profile(saved_profile))
                label = f"saved profile {saved.profile.source or saved_profile}"
                return DiffResult(mode, label, diff.diff_compositions(saved, comp))
            if mode == "file":
                if not diff_file:
                    return DiffResult(mode, title, error="no kickstart file chosen: press f to choose one")
                from ccis_workbench.core.textfile import read_text

                text = read_text(Path(diff_file), what="kickstart")
                return DiffResult(mode, f"file {diff_file}",
                                  diff.diff_texts(text, comp.text, comp.version, diff_file, ch.name))
            if mode == "head":
                before = self._head_composer()
                if before is None:
                    return DiffResult(mode, title, error="the catalog is not in a git checkout with a commit "
                                                         "(git init, then commit, to diff against HEAD)")
                try:
                    old = before.compose(ch.to_profile())
                except WorkbenchError as exc:
                    return DiffResult(mode, title, error=f"this choice does not compose at HEAD: {exc.message}")
                return DiffResult(mode, "git HEAD (the catalog as last committed)", diff.diff_compositions(old, comp))
            return DiffResult(mode, title, error=f"unknown diff mode {mode!r}")
        except WorkbenchError as exc:
            return DiffResult(mode, title, error=str(exc))
        except OSError as exc:
            return DiffResult(mode, title, error=f"{diff_file}: {exc.strerror or exc}")

    def _head_composer(self) -> IsolatedComposer | None:
        """A composer over the catalog at git HEAD (made once per HEAD commit, in a worker process: a
        contributor's committed fragments are as untrusted as the uncommitted ones)."""
        try:
            res = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=self.root, capture_output=True,
                                 text=True, check=False, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        head = res.stdout.strip()
        if res.returncode != 0 or not head:
            return None
        if self._head is None or self._head[0] != head:
            tmp = tempfile.TemporaryDirectory(prefix="ccis-head-")
            composer = _catalog_at(self.root, head, Path(tmp.name))
            if composer is None:
                tmp.cleanup()
                return None
            self._head = (head, composer, tmp)
        return self._head[1]

    # -- review ------------------------------------------------------------------------------------------------

    def review(self, overlay: str) -> Iterator[ReviewCell]:
        """Every release x target cell for *overlay* (with the overlays it requires listed first)."""
        if self._review_composer is None:
            self._review_composer = IsolatedComposer(self.root)
        comp = self._review_composer
        from ccis_workbench.core import diff, lint

        wanted = _with_requires(self.catalog, overlay)
        for release in self.catalog.releases:
            for target in sorted(self.catalog.targets):
                cell = ReviewCell(release, target, False, overlays=wanted)
                try:
                    with_overlay = comp.compose(choice(release, target, wanted))
                except WorkbenchError as exc:
                    cell.reason = _short_reason(exc)
                    yield cell
                    continue
                cell.applicable = True
                findings = [f for f in lint.lint_composition(with_overlay) if not getattr(f, "waived", None)]
                cell.errors = sum(1 for f in findings if f.severity == "error")
                cell.warnings = sum(1 for f in findings if f.severity == "warning")
                try:
                    without = comp.compose(choice(release, target, [o for o in wanted if o != overlay]))
                    unified = diff.diff_compositions(without, with_overlay).unified
                    cell.diff_lines = sum(1 for ln in unified.splitlines()
                                          if ln[:1] in "+-" and not ln.startswith(("+++", "---")))
                except WorkbenchError as exc:
                    cell.lint_note = f"base fails: {_short_reason(exc)}"
                yield cell

    # -- review of a changed fragment -------------------------------------------------------------------------

    def changed_fragments(self) -> list[str]:
        """Catalog files (kickstarts/) that differ from git HEAD, new ones included; [] outside a git checkout."""
        try:
            res = subprocess.run(["git", "status", "--porcelain=v1", "-z", "--untracked-files=all", "--",
                                  "kickstarts"], cwd=self.root, capture_output=True, check=False, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return []
        if res.returncode != 0:
            return []
        paths = []
        for entry in res.stdout.decode("utf-8", "replace").split("\0"):
            if len(entry) > 3 and entry[3:].endswith((".yaml", ".j2")):
                paths.append(entry[3:])
        return sorted(set(paths))

    def review_change(self, path: str, rev: str = "HEAD") -> Iterator[ReviewCell]:
        """Every release x target composed as the catalog is now, and as it would be with only *path* as it was
        at *rev*: which cells the change to that one file affects (and by how many lines), which it breaks, and
        the lint status of the new result. Other uncommitted changes are in both, so they do not count."""
        if self._review_composer is None:
            self._review_composer = IsolatedComposer(self.root)
        now = self._review_composer
        from ccis_workbench.core import lint

        overlay = Path(path).name.split(".")[0] if path.startswith("kickstarts/overlays/") else None
        if overlay is not None and overlay not in self.catalog.overlays:
            overlay = None
        wanted = _with_requires(self.catalog, overlay) if overlay else []
        with tempfile.TemporaryDirectory(prefix="ccis-review-") as tmp:
            before = _catalog_with_file_at(self.root, path, rev, Path(tmp))  # its worker ends with this generator
            for release in self.catalog.releases:
                for target in sorted(self.catalog.targets):
                    cell = ReviewCell(release, target, False, overlays=wanted)
                    try:
                        new = now.compose(choice(release, target, wanted))
                    except WorkbenchError as exc:
                        cell.reason = _short_reason(exc)
                        try:
                            if before is not None:
                                before.compose(choice(release, target, wanted))
                                cell.broken = True
                        except WorkbenchError:
                            pass
                        yield cell
                        continue
                    cell.applicable = True
                    old_text = ""
                    if before is not None:
                        try:
                            old_text = before.compose(choice(release, target, wanted)).text
                        except WorkbenchError:
                            old_text = ""  # new at this revision: every line counts as added
                    unified = _plain_unified(_body(old_text), _body(new.text))
                    cell.diff_lines = sum(1 for ln in unified.splitlines()
                                          if ln[:1] in "+-" and not ln.startswith(("+++", "---")))
                    cell.affected = cell.diff_lines > 0
                    findings = [f for f in lint.lint_composition(new) if not getattr(f, "waived", None)]
                    cell.errors = sum(1 for f in findings if f.severity == "error")
                    cell.warnings = sum(1 for f in findings if f.severity == "warning")
                    yield cell

    # -- profiles ----------------------------------------------------------------------------------------------

    def profile_yaml(self, ch: Choice, name: str | None = None, description: str | None = None) -> str:
        """The YAML that saving this choice writes."""
        data: dict[str, Any] = {"name": name or ch.name}
        desc = description if description is not None else (ch.base.description if ch.base else "")
        if desc:
            data["description"] = desc
        data["release"] = ch.release
        data["target"] = ch.target
        data["overlays"] = list(ch.overlays)
        data["variables"] = {k: _plain(v) for k, v in ch.variables.items() if v not in (None, "", [])}
        if ch.base and ch.base.kickstart:
            data["kickstart"] = ch.base.kickstart
        if ch.base and ch.base.source:
            raw = _raw_yaml(self.root / ch.base.source)
            if raw.get("checks"):
                data["checks"] = _plain(raw["checks"])
        return yaml.dump(data, Dumper=_ProfileDumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                         width=100)

    def validate_new_profile(self, ch: Choice, name: str, description: str = "") -> tuple[Path, str]:
        """Check the name and the content; return (path, yaml). Raises WorkbenchError."""
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name or ""):
            raise CatalogError("Invalid profile name", f"{name!r} is not a valid profile name",
                               hint="lower-case letters, digits and hyphens, starting with a letter or digit")
        text = self.profile_yaml(ch, name, description)
        path = self.root / "profiles" / f"{name}.yaml"
        profile = self.catalog.parse_profile_text(text, self.catalog.rel(path))
        self.composer.compose(profile)
        return path, text

    def save_profile(self, path: Path, text: str) -> None:
        """Write the profile atomically (the caller asked before overwriting), through a temporary file made
        exclusively under a random name: a link planted at `profiles/.NAME.yaml.tmp` was followed."""
        from ccis_workbench.core.files import write_text_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text, mode=0o644)


class _ProfileDumper(yaml.SafeDumper):
    """SafeDumper that writes multi-line strings (the kickstart block) as literal `|` blocks."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ProfileDumper.add_representer(str, _str_representer)


def _plain(value: Any) -> Any:
    """Plain lists/dicts/scalars for yaml.safe_dump (the catalog's YAML loader returns line-aware subclasses)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def _raw_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _body(text: str) -> str:
    """A composed kickstart without its two generated header lines (they name the profile)."""
    return text.split("\n", 2)[2] if text.count("\n") >= 2 else text


def _catalog_at(root: Path, rev: str, dest: Path) -> IsolatedComposer | None:
    """A composer over the catalog (kickstarts/) as it was at git revision *rev*, or None when there is none."""
    try:
        res = subprocess.run(["git", "archive", "--format=tar", rev, "--", "kickstarts"], cwd=root,
                             capture_output=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode != 0:
        return None
    with tarfile.open(fileobj=io.BytesIO(res.stdout)) as tar:
        tar.extractall(dest, filter="data")
    try:
        Catalog.load(dest)
        return IsolatedComposer(dest)
    except WorkbenchError:
        return None


def _catalog_with_file_at(root: Path, path: str, rev: str, dest: Path) -> IsolatedComposer | None:
    """A composer over the catalog as it is now (kickstarts/), except *path*, which is as it was at git revision
    *rev* (absent if it did not exist then); None when *path* is not a catalog file or the result does not load."""
    rel = Path(path)
    if rel.is_absolute() or ".." in rel.parts or rel.parts[:1] != ("kickstarts",):
        return None
    shutil.copytree(root / "kickstarts", dest / "kickstarts", symlinks=True)
    target = dest / rel
    try:
        res = subprocess.run(["git", "show", f"{rev}:{rel.as_posix()}"], cwd=root, capture_output=True,
                             check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if target.is_symlink() or target.exists():
        target.unlink()
    if res.returncode == 0:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(res.stdout)
    try:
        Catalog.load(dest)
        return IsolatedComposer(dest)
    except WorkbenchError:
        return None


def _with_requires(catalog: Catalog, name: str, seen: tuple[str, ...] = ()) -> list[str]:
    """*name* preceded by what it requires (depth first), without repeats."""
    out: list[str] = []
    overlay = catalog.overlays.get(name)
    for req in overlay.requires if overlay else []:
        if req not in seen:
            for n in _with_requires(catalog, req, (*seen, name)):
                if n not in out:
                    out.append(n)
    out.append(name)
    return out


def _short_reason(exc: WorkbenchError) -> str:
    return exc.message


def _plain_unified(a: str, b: str) -> str:
    import difflib

    return "\n".join(difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm=""))

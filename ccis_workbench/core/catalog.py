"""The catalog: releases, targets, overlays (kickstarts/) and profiles (profiles/), loaded and validated.

Layout under the catalog root:
    kickstarts/releases/NAME.yaml     release facts; names its baseline template
    kickstarts/baseline/*.ks.j2       SIG baseline per release (shared parts are Jinja2 includes)
    kickstarts/targets/NAME.yaml      target metadata + NAME.ks.j2 fragment
    kickstarts/overlays/NAME.yaml     overlay metadata + NAME.ks.j2 fragment
    profiles/NAME.yaml                saved choices
Every problem is a CatalogError naming the file and line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ccis_workbench.core import ledger
from ccis_workbench.core.errors import CatalogError, WorkbenchError
from ccis_workbench.core.model import (
    AGENTS,
    CONTEXTS,
    FORMATS,
    SEEDS,
    Check,
    LayerSpec,
    Origin,
    Overlay,
    Profile,
    Release,
    Repo,
    Target,
    VariableSpec,
)
from ccis_workbench.core.schema import Field, compile_catalog_regex, validate
from ccis_workbench.core.textfile import file_kind, find_control, is_lexically_within, read_text, require_within
from ccis_workbench.core.values import VARIABLES, Rule, check_value
from ccis_workbench.core.yamlfile import LineDict, LineList, load_yaml_file, load_yaml_text

NAME = r"[a-z0-9][a-z0-9-]*"
#: A profile's name (its file name without .yaml): it reaches kickstart comments, file names, git and qemu-img
#: argument lists, so no newline, no control or shell character, no leading '-' (an option) or '.' (hidden, '..').
PROFILE_NAME = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}"
PACKAGE = r"-?(@\^?)?[A-Za-z0-9_][A-Za-z0-9._+:*-]*"
SERVICE = r"[A-Za-z0-9_@.:-]+"
KERNEL_ARG = r"-?[A-Za-z0-9_][A-Za-z0-9_.:,/=+@-]*"
ARCHES = ("x86_64", "aarch64", "ppc64le", "s390x")
RELEASES = ("centos-7", "centos-stream-8", "centos-stream-9", "centos-stream-10")

CHECK_SCHEMA = {
    "id": Field(str, required=True, pattern=r"[a-z0-9][a-z0-9_.-]*"),
    "description": Field(str, required=True),
    "command": Field(str, required=True),
    "exit": Field(int, default=0),
    "output": Field(str),
    "timeout": Field(int, default=60),
    "releases": Field(list, items=str, choices=RELEASES),
    "targets": Field(list, items=str, pattern=NAME),
    "agents": Field(list, items=str, choices=AGENTS),
    "runs_in": Field(list, items=str, choices=CONTEXTS),
}

RELEASE_SCHEMA = {
    "name": Field(str, required=True, choices=RELEASES),
    "title": Field(str, required=True),
    "pykickstart": Field(str, required=True, choices=("RHEL7", "RHEL8", "RHEL9", "RHEL10")),
    "arches": Field(list, required=True, items=str, choices=ARCHES),
    "tree": Field(str, required=True, pattern=r"https?://\S+"),
    "repos": Field(list, default=list, items=dict, schema={
        "name": Field(str, required=True, pattern=r"[A-Za-z0-9_-]+"),
        "url": Field(str, required=True, pattern=r"https?://\S+"),
        "redistributable": Field(bool, default=True),
    }),
    "stage2": Field(str, required=True),
    "eol": Field(bool, default=False),
    "vault": Field(bool, default=False),
    "baseline": Field(str, required=True),
    "kernel_args": Field(list, default=list, items=str, pattern=KERNEL_ARG),
    "notes": Field(list, default=list, items=str),
    "checks": Field(list, default=list, items=dict, schema=CHECK_SCHEMA),
    "fidelity": Field(dict, doc="differences from the official kickstarts every target on it makes (core/ledger.py)"),
}

_LAYER_FIELDS = {
    "name": Field(str, required=True, pattern=NAME),
    "title": Field(str, required=True),
    "description": Field(str, default=""),
    "releases": Field(list, default=lambda: list(RELEASES), items=str, choices=RELEASES),
    "arches": Field(list, default=lambda: list(ARCHES), items=str, choices=ARCHES),
    "packages": Field(list, default=list, items=str, pattern=PACKAGE),
    "services": Field(dict, default=dict, schema={
        "enabled": Field(list, default=list, items=str, pattern=SERVICE),
        "disabled": Field(list, default=list, items=str, pattern=SERVICE),
    }),
    "kernel_args": Field(list, default=list, items=str, pattern=KERNEL_ARG),
    "fragment": Field(str),
    "checks": Field(list, default=list, items=dict, schema=CHECK_SCHEMA),
    "waivers": Field(dict, default=dict),
}

TARGET_SCHEMA = dict(_LAYER_FIELDS, **{
    "agent": Field(str, required=True, choices=AGENTS),
    "datasources": Field(list, default=list, items=str),
    "formats": Field(list, required=True, items=str, choices=FORMATS),
    "seed": Field(str, default="nocloud", choices=SEEDS),
    "default_user": Field(str, pattern=r"[a-z_][a-z0-9_-]*"),
    "fidelity": Field(list, default=list, items=dict, doc="the fidelity ledger (core/ledger.py), checked there"),
    "firmware": Field(dict, default=dict, doc="release -> [bios, uefi]: what the image boots with (default bios)"),
})
#: The firmwares a target may claim per release (`firmware:` in its YAML).
FIRMWARES = ("bios", "uefi")

OVERLAY_SCHEMA = dict(_LAYER_FIELDS, **{
    "requires": Field(list, default=list, items=str, pattern=NAME),
    "conflicts": Field(list, default=list, items=str, pattern=NAME),
    "targets": Field(list, items=str, pattern=NAME),
    "exclude_targets": Field(list, default=list, items=str, pattern=NAME),
    "publishable": Field(bool, default=True),
    "agent": Field(str, choices=AGENTS),
    "variables": Field(dict, default=dict),
})

VARIABLE_SCHEMA = {
    "type": Field(str, required=True, choices=("str", "int", "bool", "list")),
    "default": Field(object),
    "pattern": Field(str),
    "description": Field(str, default=""),
}

PROFILE_SCHEMA = {
    "name": Field(str, pattern=NAME),
    "description": Field(str, default=""),
    "release": Field(str, required=True),
    "target": Field(str, required=True),
    "overlays": Field(list, default=list, items=str),
    "variables": Field(dict, default=dict),
    "kickstart": Field(str, default=""),
    "checks": Field(list, default=list, items=dict, schema=CHECK_SCHEMA),
    "waivers": Field(dict, default=dict, doc="lint rule id or name -> why this profile may break it"),
    "fidelity": Field(dict, doc="the profile's own intended differences from the official kickstart"),
}


def default_root() -> Path:
    """The catalog root: $CCIS_WORKBENCH_ROOT, else the checkout this package lives in, else the cwd."""
    env = os.environ.get("CCIS_WORKBENCH_ROOT")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[2]
    if (here / "kickstarts").is_dir():
        return here
    return Path.cwd()


def make_check(c: dict[str, Any], origin: Origin) -> Check:
    """A Check from its validated CHECK_SCHEMA fields; a bad `output` expression is an error at *origin*."""
    if c["output"] is not None:
        compile_catalog_regex(c["output"], f"check {c['id']}: output", origin.file, origin.line)
    if c.get("runs_in") == []:
        raise CatalogError("Invalid value", f"check {c['id']}: runs_in is empty, so it would never run",
                           file=origin.file, line=origin.line, hint=f"give one or more of: {', '.join(CONTEXTS)}")
    return Check(id=c["id"], description=c["description"], command=c["command"], exit_status=c["exit"],
                 output=c["output"], timeout=c["timeout"], releases=c["releases"], targets=c["targets"],
                 origin=origin, agents=c.get("agents"), runs_in=tuple(c.get("runs_in") or ("vm",)))


def _checks(items: list[Any], raw: Any, rel: str, layer: str) -> list[Check]:
    return [make_check(c, Origin(layer, rel, raw.line_of(i) if isinstance(raw, LineList) else 0))
            for i, c in enumerate(items)]


def _firmware_claims(raw: Any, releases: list[str], rel: str) -> dict[str, list[str]]:
    """A target's `firmware:` mapping (release -> [bios, uefi]), checked: releases the target supports, known
    firmwares, no repeats, not empty. A release it does not name boots with BIOS only."""
    if raw is None:
        return {}
    out: dict[str, list[str]] = {}
    for release, value in raw.items():
        line = raw.line_of(release) if isinstance(raw, LineDict) else 0
        if release not in releases:
            raise CatalogError("Invalid value", f"firmware: {release!r} is not a release of this target", file=rel,
                               line=line, hint=f"name one of: {', '.join(releases)}")
        if not isinstance(value, list) or not value:
            raise CatalogError("Invalid value", f"firmware: {release}: give a list such as [bios, uefi]", file=rel,
                               line=line, hint=f"one or more of: {', '.join(FIRMWARES)}")
        for i, fw in enumerate(value):
            fw_line = value.line_of(i) if isinstance(value, LineList) else line
            if fw not in FIRMWARES:
                raise CatalogError("Invalid value", f"firmware: {release}: unknown firmware {fw!r}", file=rel,
                                   line=fw_line, hint=f"one or more of: {', '.join(FIRMWARES)}")
            if fw in value[:i]:
                raise CatalogError("Invalid value", f"firmware: {release}: {fw} is named twice", file=rel,
                                   line=fw_line, hint="name each firmware once")
        out[str(release)] = [str(fw) for fw in value]
    return out


_PROFILE_NAME_HINT = ("a profile name has letters, digits, '.', '_' and '-' only, and does not start with '-' or '.' "
                      "(rename the file)")


def shown_name(text: str) -> str:
    """*text* with any control or non-ASCII character escaped (a file name may hold a newline)."""
    return text.encode("unicode_escape").decode("ascii")


def check_profile_file_name(name_or_path: str) -> None:
    """Refuse a profile name, or a profile path whose file name, is not a valid profile name (PROFILE_NAME),
    and any path with a control character, before anything is read; the message shows it escaped."""
    p = Path(name_or_path)
    is_path = p.suffix in (".yaml", ".yml") or os.sep in name_or_path
    stem = p.stem if is_path else name_or_path
    shown = shown_name(name_or_path) if is_path else f"profiles/{shown_name(name_or_path)}.yaml"
    if find_control(name_or_path) is not None:
        raise CatalogError("Invalid profile name", "the profile's name or path contains a control character",
                           file=shown, hint=_PROFILE_NAME_HINT)
    if not re.fullmatch(PROFILE_NAME, stem):
        raise CatalogError("Invalid profile name", f"'{shown_name(stem)}' is not a valid profile name", file=shown,
                           hint=_PROFILE_NAME_HINT)


def _kind(path: Path) -> str:
    try:
        return file_kind(path.stat().st_mode)
    except OSError:
        return "not readable"


def _block_first_line(text: str, key_line: int) -> int:
    """The line of the first kickstart line in a `kickstart: |` block (key line + 1 for a block scalar)."""
    src = text.split("\n")
    if 0 < key_line <= len(src) and not re.search(r":\s*[|>][-+0-9]*\s*(#.*)?$", src[key_line - 1]):
        return key_line
    return key_line + 1


L = TypeVar("L")


class LayerTable(Mapping[str, L]):
    """The layers of one kind, by name, loaded (and checked) the first time each is asked for.

    The names are the files on disk whose stem is a valid name; a layer is read, validated and cross-checked
    exactly as an eager load does it, with the same errors, when it is first looked up. Iterating over the
    values loads every layer. `Catalog.load(lazy=True)` uses it for commands that compose one profile."""

    def __init__(self, names: list[str], load: Callable[[str], L]) -> None:
        self._names = names
        self._known = set(names)
        self._load = load
        self._loaded: dict[str, L] = {}

    def __getitem__(self, name: str) -> L:
        if name not in self._loaded:
            if name not in self._known:
                raise KeyError(name)
            self._loaded[name] = self._load(name)
        return self._loaded[name]

    def __contains__(self, name: object) -> bool:
        return name in self._known

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def _release_order(name: str) -> tuple[int, str]:
    """7, 8, 9, 10: not 10, 7, 8 (a name without a number last)."""
    number = name.rsplit("-", 1)[-1]
    return (int(number), name) if number.isdigit() else (1 << 30, name)


@dataclass
class Catalog:
    """Everything under one catalog root, loaded and cross-checked."""

    root: Path
    releases: Mapping[str, Release]
    targets: Mapping[str, Target]
    overlays: Mapping[str, Overlay]

    @classmethod
    def load(cls, root: str | Path | None = None, *, lazy: bool = False) -> Catalog:
        """Load and check every layer; *lazy*: only list them, and load each the first time it is used (a
        command that composes one profile reads its three or four layers, not the thirty of the catalog)."""
        root = Path(root) if root is not None else default_root()
        ks = root / "kickstarts"
        if not ks.is_dir():
            raise CatalogError("Catalog not found", f"no kickstarts/ folder under {root}", file=str(root),
                               hint="run from the repository or set CCIS_WORKBENCH_ROOT")
        if lazy:
            return cls._lazy(root, ks)
        releases: dict[str, Release] = {}
        targets: dict[str, Target] = {}
        overlays: dict[str, Overlay] = {}
        cat = cls(root=root, releases=releases, targets=targets, overlays=overlays)
        loaded = [cat._load_release(path) for path in (ks / "releases").glob("*.yaml")]
        for r in sorted(loaded, key=lambda r: _release_order(r.name)):
            releases[r.name] = r
        for path in sorted((ks / "targets").glob("*.yaml")):
            t = cat._load_layer(path, TARGET_SCHEMA, "target")
            targets[t.name] = t  # type: ignore[assignment]
        for path in sorted((ks / "overlays").glob("*.yaml")):
            o = cat._load_layer(path, OVERLAY_SCHEMA, "overlay")
            overlays[o.name] = o  # type: ignore[assignment]
        cat._cross_check()
        return cat

    @classmethod
    def _lazy(cls, root: Path, ks: Path) -> Catalog:
        def names(kind: str, pattern: str) -> list[str]:
            return sorted(p.stem for p in (ks / kind).glob("*.yaml") if re.fullmatch(pattern, p.stem))

        cat = cls(root=root, releases={}, targets={}, overlays={})
        cat.releases = LayerTable(sorted(names("releases", "|".join(RELEASES)), key=_release_order),
                                  lambda n: cat._load_release(ks / "releases" / f"{n}.yaml"))
        cat.targets = LayerTable(names("targets", NAME), lambda n: cat._load_layer(  # type: ignore[arg-type,return-value]
            ks / "targets" / f"{n}.yaml", TARGET_SCHEMA, "target"))

        def overlay(n: str) -> Overlay:
            o: Overlay = cat._load_layer(ks / "overlays" / f"{n}.yaml", OVERLAY_SCHEMA, "overlay")  # type: ignore
            cat._check_references(o)
            return o

        cat.overlays = LayerTable(names("overlays", NAME), overlay)
        return cat

    def rel(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path)

    def _load_release(self, path: Path) -> Release:
        rel = self.rel(path)
        raw = load_yaml_file(str(path), what="release file", within=self.root)
        d = validate(raw, RELEASE_SCHEMA, rel, what="release")
        repos_raw = raw.get("repos")
        urls = [("tree", d["tree"], raw.line_of("tree"))] + [
            (f"repos[{i}] url", r["url"], repos_raw.line_of(i) if isinstance(repos_raw, LineList) else 0)
            for i, r in enumerate(d["repos"])]
        for key, url, line in urls:  # filled in by plain replacement (model.expand_arch), never str.format
            if "{" in url.replace("{arch}", "") or "}" in url.replace("{arch}", ""):
                raise CatalogError("Invalid value", f"{key}: braces may only hold the placeholder {{arch}}", file=rel,
                                   line=line, hint="write the URL out, or use {arch} for the architecture")
        if d["name"] != path.stem:
            raise CatalogError("Name mismatch", f"name {d['name']!r} differs from the file name {path.stem!r}",
                               file=rel, line=raw.line_of("name"))
        self._require_file(d["baseline"], rel, raw.line_of("baseline"))
        return Release(name=d["name"], title=d["title"], pykickstart=d["pykickstart"], arches=d["arches"],
                       tree=d["tree"], repos=[Repo(r["name"], r["url"], r["redistributable"]) for r in d["repos"]],
                       stage2=d["stage2"], eol=d["eol"], vault=d["vault"], baseline=d["baseline"],
                       kernel_args=d["kernel_args"], notes=d["notes"], source=rel,
                       checks=_checks(d["checks"], raw.get("checks"), rel, "baseline"),
                       fidelity=ledger.parse_shared_ledger(raw.get("fidelity"), rel, f"baseline:{d['name']}"))

    def _require_file(self, name: str, rel: str, line: int) -> None:
        path = self.root / name
        if not Path(os.path.realpath(path)).is_relative_to(Path(os.path.realpath(self.root))):
            raise CatalogError("Outside the catalog", f"{name} leads outside the catalog (a symbolic link or '..')",
                               file=rel, line=line, hint="catalog files must be plain files inside the catalog")
        if path.exists() and not path.is_file():
            raise CatalogError("Not a file", f"{name} is {_kind(path)}, not a regular file", file=rel, line=line,
                               hint="a catalog file must be a plain file")
        if not path.is_file():
            raise CatalogError("File not found", f"{name} does not exist", file=rel, line=line,
                               hint="paths are relative to the catalog root (the repository)")

    def _load_layer(self, path: Path, schema: dict[str, Field], kind: str) -> LayerSpec:
        rel = self.rel(path)
        raw = load_yaml_file(str(path), what=f"{kind} file", within=self.root)
        d = validate(raw, schema, rel, what=kind)
        if d["name"] != path.stem:
            raise CatalogError("Name mismatch", f"name {d['name']!r} differs from the file name {path.stem!r}",
                               file=rel, line=raw.line_of("name"))
        fragment = d["fragment"]
        if fragment is None:
            candidate = path.with_suffix(".ks.j2")
            if candidate.is_symlink() or candidate.exists():
                require_within(candidate, self.root, what="fragment")
            if candidate.exists() and not candidate.is_file():
                raise CatalogError("Not a file", f"{candidate.name} is {_kind(candidate)}, not a regular file",
                                   file=self.rel(candidate), hint="a fragment must be a plain file")
            fragment = self.rel(candidate) if candidate.is_file() else None
        else:
            fragment = str(Path(rel).parent / fragment)
            self._require_file(fragment, rel, raw.line_of("fragment"))
        pk = raw.get("packages")
        ka = raw.get("kernel_args")
        sv = raw.get("services") or LineDict()
        services_lines: dict[str, int] = {}
        for state in ("enabled", "disabled"):
            lst = sv.get(state) if isinstance(sv, dict) else None
            for i, name in enumerate(lst or []):
                services_lines[f"{state}:{name}"] = lst.line_of(i) if isinstance(lst, LineList) else 0
        label = f"{kind}:{d['name']}"
        common = dict(
            name=d["name"], title=d["title"], description=d["description"], releases=d["releases"],
            arches=d["arches"], packages=d["packages"],
            packages_lines=[pk.line_of(i) for i in range(len(d["packages"]))] if isinstance(pk, LineList) else [],
            services_enabled=d["services"].get("enabled", []), services_disabled=d["services"].get("disabled", []),
            services_lines=services_lines, kernel_args=d["kernel_args"],
            kernel_args_lines=[ka.line_of(i) for i in range(len(d["kernel_args"]))] if isinstance(ka, LineList)
            else [],
            fragment=fragment, checks=_checks(d["checks"], raw.get("checks"), rel, label),
            waivers={str(k): str(v) for k, v in d["waivers"].items()}, source=rel,
        )
        if kind == "target":
            target = Target(**common, agent=d["agent"], datasources=d["datasources"], formats=d["formats"],
                            seed=d["seed"], default_user=d["default_user"],
                            fidelity=ledger.parse_target_ledger(raw.get("fidelity"), rel, label, RELEASES),
                            firmware=_firmware_claims(raw.get("firmware"), d["releases"], rel))
            for chk in target.checks:
                if target.context not in chk.runs_in:
                    raise CatalogError(
                        "Check never runs", f"check {chk.id} runs in {', '.join(chk.runs_in)} only, but images of "
                        f"target {target.name} ({', '.join(target.formats)}) are checked as a {target.context}",
                        file=rel, line=chk.origin.line if chk.origin else 0,
                        hint=f"add `runs_in: [{target.context}]` to the check")
            return target
        variables = {}
        vraw = raw.get("variables") or {}
        for vname, vdef in d["variables"].items():
            line = vraw.line_of(vname) if isinstance(vraw, LineDict) else 0
            if not re.fullmatch(r"[a-z][a-z0-9_]*", str(vname)):
                raise CatalogError("Invalid value", f"variable name {vname!r} must be lower_snake_case", file=rel,
                                   line=line)
            if vname in VARIABLES:
                raise CatalogError("Invalid value", f"variable {vname!r} is a profile variable already", file=rel,
                                   line=line, hint="give the overlay's variable its own name")
            v = validate(vdef, VARIABLE_SCHEMA, rel, what="variable")
            if v["pattern"] is not None:  # compiled here: an invalid or backtracking pattern is the file's error
                compile_catalog_regex(v["pattern"], f"variable {vname}: pattern", rel,
                                      vdef.line_of("pattern") if isinstance(vdef, LineDict) else line)
            if v["default"] not in (None, ""):  # a default reaches the templates like any value: checked the same way
                check_value(vname, v["default"], Rule(v["type"], None, v["pattern"], v["description"] or v["type"]),
                            rel, vdef.line_of("default") if isinstance(vdef, LineDict) else line)
            variables[vname] = VariableSpec(vname, v["type"], v["default"], v["pattern"], v["description"])
        if d["targets"] is not None and d["exclude_targets"]:
            raise CatalogError("Conflicting keys", "give targets or exclude_targets, not both", file=rel,
                               line=raw.line_of("exclude_targets"))
        return Overlay(**common, requires=d["requires"], conflicts=d["conflicts"], targets=d["targets"],
                       exclude_targets=d["exclude_targets"], agent=d["agent"], variables=variables,
                       publishable=d["publishable"],
                       publishable_line=raw.line_of("publishable") if "publishable" in raw else 0)

    def _cross_check(self) -> None:
        for o in self.overlays.values():
            self._check_references(o)

    def _check_references(self, o: Overlay) -> None:
        """An overlay names only overlays and targets the catalog has (names only: nothing else is loaded)."""
        tables = (("requires", o.requires, self.overlays), ("conflicts", o.conflicts, self.overlays),
                  ("targets", o.targets or [], self.targets), ("exclude_targets", o.exclude_targets, self.targets))
        for kind, names, table in tables:
            for n in names:
                if n not in table:
                    noun = "overlay" if kind in ("requires", "conflicts") else "target"
                    raise CatalogError("Unknown name", f"{kind}: {n!r} is not a known {noun}", file=o.source)

    # -- profiles -------------------------------------------------------------------------------------------

    def profile_names(self) -> list[str]:
        """The names of profiles/*.yaml that are valid profile names (PROFILE_NAME); loading any other file
        there as a profile is refused (see check_profile_file_name)."""
        return sorted(p.stem for p in (self.root / "profiles").glob("*.yaml") if re.fullmatch(PROFILE_NAME, p.stem))

    def profile_path(self, name_or_path: str) -> Path:
        p = Path(name_or_path)
        if p.suffix in (".yaml", ".yml") or os.sep in name_or_path:
            return p
        return self.root / "profiles" / f"{name_or_path}.yaml"

    def load_profile(self, name_or_path: str) -> Profile:
        """Load a profile by name (profiles/NAME.yaml) or path; raises CatalogError with file:line."""
        check_profile_file_name(name_or_path)
        path = self.profile_path(name_or_path)
        if not path.exists() and os.sep not in name_or_path and not name_or_path.endswith((".yaml", ".yml")):
            known = ", ".join(self.profile_names()) or "none"
            raise CatalogError("Unknown profile", f"no profile named {name_or_path!r}", file=str(path),
                               hint=f"known profiles: {known}")
        if is_lexically_within(path, self.root):  # a file of the catalog: it must not lead out of it
            text = read_text(path, what="profile", within=self.root)
            return self.parse_profile_text(text, self.rel(path))
        # a file the user named elsewhere: it may be anything (`render /etc/shadow`), so a message about it
        # never quotes it (a key, a value); the title, line and hint say what is wrong
        text = read_text(path, what="profile")
        try:
            profile = self.parse_profile_text(text, str(path))
            from ccis_workbench.core.compose import Composer  # lazy: compose imports this module

            Composer(self).resolve(profile)  # names and values, checked here where the messages are redacted
            return profile
        except WorkbenchError as exc:
            raise CatalogError(exc.title, "(the file is outside the catalog, so its content is not quoted)",
                               file=str(path), line=exc.location.line if exc.location else 0, hint=exc.hint) from None

    def parse_profile_text(self, text: str, filename: str) -> Profile:
        """Parse profile YAML *text*; *filename* is used in messages and as the profile's source."""
        raw = load_yaml_text(text, filename)
        return self.profile_from_yaml(raw, filename, default_name=Path(filename).stem, text=text)

    def profile_from_yaml(self, raw: Any, rel: str, default_name: str, text: str = "") -> Profile:
        d = validate(raw, PROFILE_SCHEMA, rel, what="profile")
        lines = {k: raw.line_of(k) for k in raw} if isinstance(raw, LineDict) else {}
        var_lines: dict[str, int] = {}
        vraw = raw.get("variables")
        if isinstance(vraw, LineDict):
            var_lines = {k: vraw.line_of(k) for k in vraw}
        for i in range(len(d["overlays"])):
            lst = raw.get("overlays")
            lines[f"overlays[{i}]"] = lst.line_of(i) if isinstance(lst, LineList) else lines.get("overlays", 0)
        lines.update({f"variables.{k}": v for k, v in var_lines.items()})
        ks_line = 0
        if d["kickstart"]:
            ks_line = _block_first_line(text, lines.get("kickstart", 0))
        return Profile(name=d["name"] or default_name, release=d["release"], target=d["target"],
                       overlays=list(d["overlays"]), variables=dict(d["variables"]), description=d["description"],
                       kickstart=d["kickstart"], kickstart_line=ks_line,
                       checks=_checks(d["checks"], raw.get("checks"), rel, "profile"),
                       waivers={str(k): str(v) for k, v in d["waivers"].items()}, source=rel, lines=lines,
                       fidelity=ledger.parse_shared_ledger(raw.get("fidelity"), rel,
                                                           f"profile:{d['name'] or default_name}"))

    def variable_rules(self, overlays: list[Overlay]) -> dict[str, Rule]:
        """The variables a profile with these overlays accepts: the common ones plus each overlay's."""
        rules = dict(VARIABLES)
        for o in overlays:
            for v in o.variables.values():
                rules[v.name] = Rule(v.type, v.default, v.pattern, v.description or f"a {v.type}")
        return rules

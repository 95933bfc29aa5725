"""Compose: render every layer, parse each with pykickstart for the release, merge, emit with provenance.

Layers, in order: the release baseline, the target, each overlay, then the profile's own lines. Each layer is a
fragment template (rendered in the sandbox) plus what its YAML declares (packages, services, kernel arguments).

Merge rules (README.md, "Layers and merge rules"):
- single-valued commands: the later layer wins, and the override is reported;
- commands that may repeat (network, repo, user, sshkey, ...): items with the same identity (pykickstart's own
  equality: same repo name, same user, same device) are replaced, others are added;
- the storage layout (autopart, part, logvol, volgroup, raid, reqpart) is one unit: a layer that sets any of it
  replaces all of it;
- `%packages` entries, `services` enabled/disabled sets and kernel arguments (`bootloader --append`) merge, a later
  removal (`-pkg`, `services --disabled`, `-arg`) of something an earlier layer added is reported;
- scripts (%pre, %post, ...) run in layer order.
The merged kickstart is emitted in pykickstart's own canonical order, so it is byte-identical to what pykickstart
writes for the same content, and each output line records the layer file:line it came from.
"""

from __future__ import annotations

import copy
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from pykickstart.errors import KickstartError
from pykickstart.parser import Group, Packages
from pykickstart.version import versionToString as version_string

from ccis_workbench import __version__
from ccis_workbench.core.catalog import Catalog
from ccis_workbench.core.errors import CatalogError, KickstartSyntaxError
from ccis_workbench.core.ksparse import make_handler, parse_text, pin_version, unique_commands, write_order
from ccis_workbench.core.model import LayerSpec, Origin, Overlay, Profile, Release, Target, expand_arch
from ccis_workbench.core.templates import FragmentRenderer, SourceLine
from ccis_workbench.core.values import check_context, key_line_finder, resolve_variables

#: Commands that together describe the disk layout; a layer that sets one replaces all of them.
LAYOUT = ("autopart", "part", "logvol", "volgroup", "raid", "reqpart", "btrfs")
#: First line of a script body that makes the script run after all others of every layer (the seal).
RUN_LAST = "# ccis: run-last"
#: Kernel arguments that legitimately repeat (several consoles).
MULTI_KARGS = ("console",)
#: Lines of one repeating command (repo, user, network, ...) in one layer, and items of one in the merged result:
#: pykickstart checks each new item against every earlier one (quadratic), and no image needs more than a few.
MAX_REPEATED_ITEMS = 500
_PKG_OPTIONS = ("default", "excludeDocs", "addBase", "nocore", "handleMissing", "handleBroken", "instLangs",
                "multiLib", "excludeWeakdeps", "timeout", "retries")


@dataclass
class Override:
    """A later layer replaced or removed what an earlier layer set: never silent."""

    subject: str
    earlier: Origin
    later: Origin
    old: str
    new: str

    def message(self) -> str:
        return (f"{self.subject}: {self.later.layer} ({self.later}) overrides {self.earlier.layer} "
                f"({self.earlier}): {self.old!r} -> {self.new!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "earlier": _origin_dict(self.earlier), "later": _origin_dict(self.later),
                "old": self.old, "new": self.new, "message": self.message()}


@dataclass
class OutputLine:
    """One line of the merged kickstart: its number, text and the layer lines that produced it."""

    number: int
    text: str
    origins: tuple[Origin, ...] = ()
    overridden: bool = False

    @property
    def origin(self) -> Origin | None:
        return self.origins[0] if self.origins else None


@dataclass
class LayerMessage:
    """A pykickstart deprecation or warning found in a layer, mapped back to its file:line."""

    severity: str
    message: str
    origin: Origin


@dataclass
class Layer:
    label: str  # "baseline", "target:aws", "overlay:epel", "profile:NAME"
    spec: LayerSpec | Release | Profile | None
    lines: list[SourceLine]


@dataclass
class Composition:
    """The result of composing one profile: merged kickstart with provenance, overrides and warnings."""

    profile: Profile
    release: Release
    target: Target | None  # None for the release baseline alone
    overlays: list[Overlay]
    variables: dict[str, Any]
    layers: list[Layer]
    lines: list[OutputLine]
    overrides: list[Override]
    messages: list[LayerMessage]
    kernel_args: list[str]
    handler: Any = field(repr=False, default=None)
    #: pykickstart's own parse of `text` (handler, problems), made once when the result is validated and
    #: reused by lint and diff instead of parsing the same text again.
    parsed: tuple[Any, list[Any]] | None = field(repr=False, default=None)

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines) + "\n"

    @property
    def version(self) -> str:
        return self.release.pykickstart

    def origin_of(self, number: int) -> Origin | None:
        return self.lines[number - 1].origin if 0 < number <= len(self.lines) else None


def _origin_dict(o: Origin) -> dict[str, Any]:
    return {"layer": o.layer, "file": o.file, "line": o.line}


@dataclass
class _Merge:
    single: dict[str, tuple[Any, Origin]] = field(default_factory=dict)
    data: dict[str, list[tuple[Any, Origin]]] = field(default_factory=dict)
    services_on: dict[str, Origin] = field(default_factory=dict)
    services_off: dict[str, Origin] = field(default_factory=dict)
    # kernel arguments in order: a number that keeps an argument's place -> (argument, origin); karg_keys indexes
    # them by key (console, quiet, ...) so that adding or removing one never scans them all (linear merges)
    kargs: dict[int, tuple[str, Origin]] = field(default_factory=dict)
    karg_keys: dict[str, list[int]] = field(default_factory=dict)
    karg_next: int = 0
    pkgs: dict[str, Origin] = field(default_factory=dict)  # "name", "@group", "@^env"
    pkg_excl: dict[str, Origin] = field(default_factory=dict)  # "name", "@group"
    groups: dict[str, Any] = field(default_factory=dict)  # name -> Group
    pkg_opts: dict[str, tuple[Any, Origin]] = field(default_factory=dict)
    pkg_header: Origin | None = None
    scripts: list[tuple[Any, Origin, list[Origin]]] = field(default_factory=list)
    overrides: list[Override] = field(default_factory=list)


#: How many parsed layer texts a Composer keeps (a catalog has a few dozen layers; each parse is small).
LAYER_PARSES = 128


def _karg_key(arg: str) -> str:
    return arg.split("=", 1)[0]


class Composer:
    """Composes profiles against one catalog; reuse it (templates compile once)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.renderer = FragmentRenderer(catalog.root)
        # Baselines depend only on release and arch; a Composer lives as long as its catalog is unchanged.
        self._baselines: dict[tuple[str, str | None], Composition] = {}
        # A layer's parse depends only on its rendered text and the release's syntax: a composition that differs
        # by one overlay parses only what changed (merging reads the handlers and copies what it keeps).
        self._layer_parses: OrderedDict[tuple[str, str], tuple[Any, list[Any]]] = OrderedDict()
        self._layer_parses_lock = threading.Lock()

    # -- resolving the choice --------------------------------------------------------------------------------

    def resolve(self, profile: Profile) -> tuple[Release, Target, list[Overlay], dict[str, Any]]:
        """Check that the choice makes sense (names, support, requires, conflicts, values) and return it."""
        cat = self.catalog
        src = profile.source or "(command line)"
        ln = profile.lines
        if profile.release not in cat.releases:
            raise CatalogError("Unknown release", f"{profile.release!r} is not a release", file=src,
                               line=ln.get("release", 0), hint=f"known releases: {', '.join(cat.releases)}")
        release = cat.releases[profile.release]
        if profile.target not in cat.targets:
            raise CatalogError("Unknown target", f"{profile.target!r} is not a target", file=src,
                               line=ln.get("target", 0), hint=f"known targets: {', '.join(sorted(cat.targets))}")
        target = cat.targets[profile.target]
        if release.name not in target.releases:
            raise CatalogError("Target not supported", f"target {target.name} does not support {release.name}",
                               file=src, line=ln.get("target", 0),
                               hint=f"{target.name} supports: {', '.join(target.releases)} ({target.source})")
        overlays: list[Overlay] = []
        for i, name in enumerate(profile.overlays):
            line = ln.get(f"overlays[{i}]", ln.get("overlays", 0))
            if name not in cat.overlays:
                raise CatalogError("Unknown overlay", f"{name!r} is not an overlay", file=src, line=line,
                                   hint=f"known overlays: {', '.join(sorted(cat.overlays))}")
            o = cat.overlays[name]
            if o in overlays:
                raise CatalogError("Duplicate overlay", f"overlay {name} is listed twice", file=src, line=line)
            if release.name not in o.releases:
                raise CatalogError("Overlay not supported", f"overlay {name} does not support {release.name}",
                                   file=src, line=line, hint=f"{name} supports: {', '.join(o.releases)}")
            if not o.applies_to(target.name):
                allowed = ", ".join(o.targets) if o.targets is not None else \
                    f"every target but {', '.join(o.exclude_targets)}"
                raise CatalogError("Overlay not supported", f"overlay {name} does not apply to target "
                                   f"{target.name}", file=src, line=line, hint=f"{name} applies to: {allowed}")
            overlays.append(o)
        names = [o.name for o in overlays]
        for i, o in enumerate(overlays):
            line = ln.get(f"overlays[{i}]", 0)
            for req in o.requires:
                if req not in names[:i]:
                    where = "after it" if req in names else "in the profile"
                    raise CatalogError("Missing overlay", f"overlay {o.name} requires overlay {req}", file=src,
                                       line=line, hint=f"list {req} before {o.name}" if req in names
                                       else f"add {req} to overlays (it is not {where})")
            for other in overlays:
                if other.name in o.conflicts or o.name in other.conflicts:
                    raise CatalogError("Conflicting overlays", f"overlay {o.name} conflicts with {other.name}",
                                       file=src, line=line, hint=f"choose one of {o.name} and {other.name}")
        agents = [o for o in overlays if o.agent and o.agent != target.agent]
        if len(agents) > 1:
            raise CatalogError("Conflicting overlays", f"overlays {agents[0].name} and {agents[1].name} both "
                               "replace the first-boot agent", file=src, line=ln.get("overlays", 0))
        rules = cat.variable_rules(overlays)
        var_lines = {k.split(".", 1)[1]: v for k, v in ln.items() if k.startswith("variables.")}
        variables = resolve_variables(profile.variables, rules, src, var_lines)
        arch = variables["arch"]
        for what, arches, where in (("release " + release.name, release.arches, release.source),
                                     ("target " + target.name, target.arches, target.source),
                                     *(("overlay " + o.name, o.arches, o.source) for o in overlays)):
            if arch not in arches:
                raise CatalogError("Architecture not supported", f"{what} does not support {arch}", file=src,
                                   line=var_lines.get("arch", ln.get("variables", 0)),
                                   hint=f"{what} supports: {', '.join(arches)} ({where})")
        return release, target, overlays, variables

    def context(self, release: Release, target: Target | None, overlays: list[Overlay],
                variables: dict[str, Any]) -> dict[str, Any]:
        """The values templates see (documented in the README, 'Template variables')."""
        arch = variables["arch"]
        agent = next((o.agent for o in overlays if o.agent), target.agent if target else "none")
        ctx: dict[str, Any] = {
            "release": {
                "name": release.name, "title": release.title, "major": int(release.name.rsplit("-", 1)[1]),
                "pykickstart": release.pykickstart, "eol": release.eol, "vault": release.vault,
                "tree_url": release.tree_url(arch), "stage2": release.stage2,
                "repos": [{"name": r.name, "url": expand_arch(r.url, arch)} for r in release.repos],
                "kernel_args": list(release.kernel_args),
            },
            "target": {"name": target.name, "title": target.title, "agent": agent,
                       "datasources": list(target.datasources), "formats": list(target.formats),
                       "default_user": target.default_user, "firmware": target.firmwares(release.name)} if target
                      else {"name": "", "title": "", "agent": agent, "datasources": [], "formats": [],
                            "default_user": None, "firmware": ["bios"]},
            "overlays": [o.name for o in overlays],
            "vars": dict(variables),
            "arch": arch,
        }
        # every catalog string a template sees is one line of plain text (values.py), wherever it came from
        check_context(ctx, {"release": release.source, "target": target.source if target else None},
                      key_line_finder(self.catalog.root))
        return ctx

    # -- composing -------------------------------------------------------------------------------------------

    def compose(self, profile: Profile) -> Composition:
        """Compose a profile: baseline, target, overlays, then the profile's own lines."""
        release, target, overlays, variables = self.resolve(profile)
        return self._compose(profile, release, target, overlays, variables)

    def compose_baseline(self, release_name: str, variables: dict[str, Any] | None = None) -> Composition:
        """The release's SIG baseline alone (no target, no overlay): what the diff view compares against.

        Only `arch` is taken from *variables*; every other variable keeps its default, so a profile's own
        choices (time zone, locale...) show up in its diff against the baseline.
        """
        arch = (variables or {}).get("arch")
        key = (release_name, arch)
        if key in self._baselines:
            return self._baselines[key]
        profile = choice(release_name, "", [], {"arch": arch} if arch else {}, name=f"baseline-{release_name}")
        if release_name not in self.catalog.releases:
            raise CatalogError("Unknown release", f"{release_name!r} is not a release",
                               hint=f"known releases: {', '.join(self.catalog.releases)}")
        release = self.catalog.releases[release_name]
        resolved = resolve_variables(profile.variables, self.catalog.variable_rules([]), "<baseline>")
        self._baselines[key] = self._compose(profile, release, None, [], resolved)
        return self._baselines[key]

    def _compose(self, profile: Profile, release: Release, target: Target | None, overlays: list[Overlay],
                 variables: dict[str, Any]) -> Composition:
        """Compose, then keep the templates compiled on the way (core/template_cache.py); a composition that
        fails keeps nothing: bad input writes nothing anywhere."""
        try:
            comp = self._compose_layers(profile, release, target, overlays, variables)
        except BaseException:
            self.renderer.code_cache.discard()
            raise
        self.renderer.code_cache.commit()
        return comp

    def _compose_layers(self, profile: Profile, release: Release, target: Target | None, overlays: list[Overlay],
                        variables: dict[str, Any]) -> Composition:
        ctx = self.context(release, target, overlays, variables)
        version = release.pykickstart
        layers: list[Layer] = [Layer("baseline", release, self.renderer.render(release.baseline, ctx))]
        specs: list[tuple[str, LayerSpec]] = [(f"target:{target.name}", target)] if target else []
        specs += [(f"overlay:{o.name}", o) for o in overlays]
        for label, spec in specs:
            lines = self.renderer.render(spec.fragment, ctx) if spec.fragment else []
            layers.append(Layer(label, spec, lines))
        plabel = f"profile:{profile.name}"
        psrc = profile.source or "(command line)"
        plines = [SourceLine(t, psrc, profile.kickstart_line + i)
                  for i, t in enumerate(profile.kickstart.split("\n"))] if profile.kickstart else []
        layers.append(Layer(plabel, profile, plines))

        m = _Merge()
        messages: list[LayerMessage] = []
        for layer in layers:
            if isinstance(layer.spec, LayerSpec):
                self._declared(m, layer.label, layer.spec)
            handler = self._parse_layer(layer, version, messages)
            if handler is not None:
                self._merge(m, layer, handler)
        self._profile_declared(m, plabel, profile, variables)
        return self._emit(m, profile, release, target, overlays, variables, layers, messages)

    def _parse_layer(self, layer: Layer, version: str, messages: list[LayerMessage]) -> Any:
        if not any(sl.text.strip() for sl in layer.lines):
            return None  # nothing to parse (most profiles have no kickstart lines of their own)
        text = "\n".join(sl.text for sl in layer.lines) + "\n"
        for sl in layer.lines:
            if re.match(r"\s*%(include|ksappend)\b", sl.text):
                raise KickstartSyntaxError("Include in a layer", "%include/%ksappend are not allowed in layers",
                                           file=sl.file, line=sl.line,
                                           hint='use a Jinja2 {% include "..." %} so provenance is kept')
        _refuse_repeated_commands(layer.lines)
        try:
            handler, problems = self._parse_layer_text(text, version)
        except KickstartError as exc:
            lineno = exc.lineno or _failing_line(layer.lines, version, str(exc.message))
            bad: SourceLine | None = layer.lines[lineno - 1] \
                if lineno and 0 < lineno <= len(layer.lines) else None
            raise KickstartSyntaxError(f"Not valid kickstart for {version}", str(exc.message).strip(),
                                       file=bad.file if bad else self._layer_file(layer),
                                       line=bad.line if bad else 0,
                                       hint=f"check the {layer.label} layer against pykickstart's {version} "
                                            "syntax (ksvalidator -v " + version + ")") from None
        for p in problems:
            at = layer.lines[p.line - 1] if 0 < p.line <= len(layer.lines) else None
            origin = Origin(layer.label, at.file if at else self._layer_file(layer), at.line if at else 0)
            messages.append(LayerMessage(p.severity, p.message, origin))
        return handler

    def _parse_layer_text(self, text: str, version: str) -> tuple[Any, list[Any]]:
        """parse_text(text, version, fatal=True), remembered for the last LAYER_PARSES layer texts (a failing
        parse is not remembered: it raises every time)."""
        key = (version, text)
        with self._layer_parses_lock:
            known = self._layer_parses.get(key)
            if known is not None:
                self._layer_parses.move_to_end(key)
                return known
        parsed = parse_text(text, version, fatal=True)
        with self._layer_parses_lock:
            self._layer_parses[key] = parsed
            while len(self._layer_parses) > LAYER_PARSES:
                self._layer_parses.popitem(last=False)
        return parsed

    @staticmethod
    def _layer_file(layer: Layer) -> str:
        spec = layer.spec
        if isinstance(spec, Release):
            return spec.baseline
        if isinstance(spec, LayerSpec):
            return spec.fragment or spec.source
        if isinstance(spec, Profile):
            return spec.source or "<choice>"
        return "<unknown>"

    # -- merging ---------------------------------------------------------------------------------------------

    def _declared(self, m: _Merge, label: str, spec: LayerSpec) -> None:
        """What a target or overlay declares in its YAML: packages, services, kernel arguments."""
        for i, pkg in enumerate(spec.packages):
            line = spec.packages_lines[i] if i < len(spec.packages_lines) else 0
            self._package(m, pkg, Origin(label, spec.source, line))
        for name in spec.services_enabled:
            self._service(m, name, True, Origin(label, spec.source, spec.services_lines.get(f"enabled:{name}", 0)))
        for name in spec.services_disabled:
            self._service(m, name, False,
                          Origin(label, spec.source, spec.services_lines.get(f"disabled:{name}", 0)))
        for i, arg in enumerate(spec.kernel_args):
            line = spec.kernel_args_lines[i] if i < len(spec.kernel_args_lines) else 0
            self._karg(m, arg, Origin(label, spec.source, line))

    def _profile_declared(self, m: _Merge, label: str, profile: Profile, variables: dict[str, Any]) -> None:
        src = profile.source or "(command line)"
        for key, adder in (("extra_packages", self._package), ("extra_kernel_args", self._karg)):
            line = profile.lines.get(f"variables.{key}", 0)
            for item in variables.get(key) or []:
                adder(m, item, Origin(label, src, line))

    def _package(self, m: _Merge, entry: str, origin: Origin) -> None:
        entry = entry.strip()
        if entry.startswith("-"):
            key = entry[1:]
            if key in m.pkgs:
                m.overrides.append(Override(f"package {key}", m.pkgs[key], origin, "added", "removed"))
                del m.pkgs[key]
                m.groups.pop(key[1:], None)
            m.pkg_excl.setdefault(key, origin)
            return
        key = entry.split()[0] if entry.startswith("@") else entry
        if key in m.pkg_excl:
            m.overrides.append(Override(f"package {key}", m.pkg_excl[key], origin, "removed", "added"))
            del m.pkg_excl[key]
        m.pkgs.setdefault(key, origin)

    def _service(self, m: _Merge, name: str, enable: bool, origin: Origin) -> None:
        if name.startswith("-"):  # `-name` in a layer's YAML: the service is neither enabled nor disabled
            gone = name[1:]
            for state, table in (("enabled", m.services_on), ("disabled", m.services_off)):
                if gone in table:
                    m.overrides.append(Override(f"service {gone}", table.pop(gone), origin, state, "(unset)"))
            return
        mine, other = (m.services_on, m.services_off) if enable else (m.services_off, m.services_on)
        if name in other:
            m.overrides.append(Override(f"service {name}", other[name], origin,
                                        "disabled" if enable else "enabled", "enabled" if enable else "disabled"))
            del other[name]
        mine.setdefault(name, origin)

    def _karg(self, m: _Merge, arg: str, origin: Origin) -> None:
        if arg.startswith("-"):  # `-key` removes every argument with that key, `-key=value` that exact one
            gone = arg[1:]
            exact = "=" in gone
            key = _karg_key(gone)
            seqs = m.karg_keys.get(key, [])
            kept = []
            for seq in seqs:  # in the order they were added, as the overrides report them
                a, o = m.kargs[seq]
                if exact and a != gone:
                    kept.append(seq)
                    continue
                m.overrides.append(Override(f"kernel argument {key}", o, origin, a, "(removed)"))
                del m.kargs[seq]
            if kept:
                m.karg_keys[key] = kept
            else:
                m.karg_keys.pop(key, None)
            return
        key = _karg_key(arg)
        seqs = m.karg_keys.setdefault(key, [])
        if any(m.kargs[seq][0] == arg for seq in seqs):  # one seq unless the key repeats (console=)
            return
        if seqs and key not in MULTI_KARGS:  # a key that does not repeat has one argument: replaced in place
            a, o = m.kargs[seqs[0]]
            m.overrides.append(Override(f"kernel argument {key}", o, origin, a, arg))
            m.kargs[seqs[0]] = (arg, origin)
            return
        m.kargs[m.karg_next] = (arg, origin)
        seqs.append(m.karg_next)
        m.karg_next += 1

    def _merge(self, m: _Merge, layer: Layer, h: Any) -> None:
        src = layer.lines

        def origin(lineno: int | None) -> Origin:
            if lineno and 0 < lineno <= len(src):
                return Origin(layer.label, src[lineno - 1].file, src[lineno - 1].line)
            return Origin(layer.label, self._layer_file(layer), 0)

        commands = unique_commands(h)
        if any((cmd.dataList() if cmd.dataList() is not None else cmd.seen) for name, cmd in commands
               if name in LAYOUT):
            for name in LAYOUT:
                if name in m.single:
                    prev, po = m.single.pop(name)
                    m.overrides.append(Override("storage layout", po, origin(None), str(prev).strip(),
                                                "replaced"))
                for d, po in m.data.pop(name, []):
                    m.overrides.append(Override("storage layout", po, origin(None), str(d).strip(), "replaced"))
        for name, cmd in commands:
            if name == "services":
                if cmd.seen:
                    o = origin(cmd.lineno)
                    for s in cmd.enabled:
                        self._service(m, s, True, o)
                    for s in cmd.disabled:
                        self._service(m, s, False, o)
                continue
            items = cmd.dataList()
            if items is not None:
                if not items:
                    continue
                merged = m.data.setdefault(name, [])
                for d in items:
                    o = origin(getattr(d, "lineno", None))
                    for i, (old, oo) in enumerate(merged):
                        if old == d:
                            if str(old) != str(d):
                                m.overrides.append(Override(f"{name}", oo, o, str(old).strip(), str(d).strip()))
                            merged[i] = (d, o)
                            break
                    else:
                        merged.append((d, o))
                        if len(merged) > MAX_REPEATED_ITEMS:
                            raise KickstartSyntaxError("Too many lines", f"the layers set over {MAX_REPEATED_ITEMS} "
                                                       f"{name} items together", file=o.file, line=o.line,
                                                       hint="an image needs a few of each; generate fewer")
                continue
            if not cmd.seen:
                continue
            o = origin(cmd.lineno)
            if name == "bootloader":
                for arg in (cmd.appendLine or "").split():
                    self._karg(m, arg, o)
                cmd = copy.copy(cmd)
                cmd.appendLine = None
                if name in m.single:
                    # bootloader is merged option by option: a layer that only adds kernel arguments keeps
                    # the earlier --timeout; an option it does set replaces the earlier one, reported.
                    self._merge_options(m, name, cmd, o, h.version)
                    continue
            if name in m.single:
                prev, po = m.single[name]
                if str(prev) != str(cmd):
                    m.overrides.append(Override(f"command {getattr(cmd, 'currentCmd', '') or name}", po, o,
                                                _cmd_text(prev), _cmd_text(cmd)))
            m.single[name] = (cmd, o)
        if h.packages.seen:
            self._merge_packages(m, h.packages, src, origin)
        for script in h.scripts:
            head = origin(script.lineno)
            body = [origin(script.lineno + 1 + i) for i in range(script.script.count("\n") + 1)]
            m.scripts.append((script, head, body))

    def _merge_options(self, m: _Merge, name: str, cmd: Any, o: Origin, version: Any) -> None:
        prev, po = m.single[name]
        default = make_handler(version_string(version)).commands[name]
        merged = copy.copy(prev)
        skip = {"lineno", "seen", "currentCmd", "currentLine", "handler", "op", "appendLine", "writePriority"}
        for key, value in vars(cmd).items():
            if key in skip or value == getattr(default, key, None):
                continue
            old = getattr(prev, key, None)
            if old != getattr(default, key, None) and old != value:
                m.overrides.append(Override(f"command {name} {key}", po, o, str(old), str(value)))
            setattr(merged, key, value)
        m.single[name] = (merged, o)

    def _merge_packages(self, m: _Merge, pk: Any, src: list[SourceLine], origin: Any) -> None:
        entry_line: dict[str, int] = {}
        header = 0
        inside = False
        for i, sl in enumerate(src, start=1):
            t = sl.text.strip()
            if not inside and t.startswith("%packages"):
                inside, header = True, i
                continue
            if inside:
                if t.startswith("%end"):
                    inside = False
                elif t and not t.startswith("#"):
                    entry_line.setdefault(t.split()[0], i)
        head = origin(header)
        m.pkg_header = head
        default = Packages()
        for opt in _PKG_OPTIONS:
            value = getattr(pk, opt)
            if value == getattr(default, opt):
                continue
            if opt in m.pkg_opts and m.pkg_opts[opt][0] != value:
                m.overrides.append(Override(f"%packages option {opt}", m.pkg_opts[opt][1], head,
                                            str(m.pkg_opts[opt][0]), str(value)))
            m.pkg_opts[opt] = (value, head)
        if pk.environment:
            self._package(m, "@^" + pk.environment, origin(entry_line.get("@^" + pk.environment, header)))
        for g in pk.groupList:
            key = "@" + g.name
            self._package(m, key, origin(entry_line.get(key, header)))
            m.groups[g.name] = g
        for p in pk.packageList:
            self._package(m, p, origin(entry_line.get(p, header)))
        for g in pk.excludedGroupList:
            self._package(m, "-@" + g.name, origin(entry_line.get("-@" + g.name, header)))
        for p in pk.excludedList:
            self._package(m, "-" + p, origin(entry_line.get("-" + p, header)))

    # -- emitting --------------------------------------------------------------------------------------------

    def _emit(self, m: _Merge, profile: Profile, release: Release, target: Target | None, overlays: list[Overlay],
              variables: dict[str, Any], layers: list[Layer], messages: list[LayerMessage]) -> Composition:
        h = make_handler(release.pykickstart)
        lines: list[OutputLine] = []
        overridden = {(o.earlier.file, o.earlier.line) for o in m.overrides} | \
                     {(o.later.file, o.later.line) for o in m.overrides}

        def add(text: str, origins: tuple[Origin, ...]) -> None:
            lines.append(OutputLine(len(lines) + 1, text, origins,
                                    any((o.file, o.line) in overridden for o in origins)))

        add(f"# Generated by ccis-workbench {__version__}: profile {profile.name}", ())
        add(f"# release {release.name}, target {target.name if target else '(baseline only)'}, overlays: "
            f"{', '.join(o.name for o in overlays) or 'none'}", ())
        add(f"#version={release.pykickstart}", ())

        owner: dict[int, Any] = {}
        for name, cmd in unique_commands(h):
            owner[id(cmd)] = name
            if name in m.single:
                winner, _ = m.single[name]
                state = {k: copy.copy(v) for k, v in vars(winner).items() if k != "handler"}
                cmd.__dict__.update(state)
            elif name in m.data:
                cmd.dataList()[:] = [d for d, _ in m.data[name]]
        kargs = [a for a, _ in m.kargs.values()]
        boot = h.commands["bootloader"]
        if kargs and not getattr(boot, "disabled", False):
            boot.appendLine = " ".join(kargs)
            boot.seen = True
        svc = h.commands["services"]
        svc.enabled = list(m.services_on)
        svc.disabled = list(m.services_off)
        svc.seen = bool(svc.enabled or svc.disabled)

        for obj in write_order(h):
            name = owner.get(id(obj), "")
            text = str(obj)
            if not text:
                continue
            chunk = text.rstrip("\n").split("\n")
            if name == "services":
                origins = tuple(m.services_off.values()) + tuple(m.services_on.values())
                for t in chunk:
                    add(t, origins)
            elif name in m.data:
                by_text: dict[str, Origin] = {}
                for d, o in m.data[name]:
                    for t in str(d).rstrip("\n").split("\n"):
                        by_text.setdefault(t, o)
                first = m.data[name][0][1]
                for t in chunk:
                    add(t, (by_text.get(t, first),))
            elif name in m.single or (name == "bootloader" and kargs):
                base = (m.single[name][1],) if name in m.single else ()
                extra = tuple(o for _, o in m.kargs.values()) if name == "bootloader" else ()
                for t in chunk:
                    add(t, base + extra if t.startswith("bootloader") else base or extra[:1])
            else:
                for t in chunk:
                    add(t, ())

        h.scripts[:] = []
        # A script whose body starts with the RUN_LAST marker (the baseline's seal) runs after every other
        # layer's scripts: sealing must come after the last package a target or overlay installs.
        ordered = sorted(m.scripts, key=lambda item: _runs_last(item[0]))
        for script, head, body in ordered:
            h.scripts.append(script)
            chunk = str(script).split("\n")
            # "\n%post ...\nbody...\n%end\n": blank, header, body lines, %end, trailing blank
            add("", ())
            add(chunk[1], (head,))
            for i, t in enumerate(chunk[2:-2]):
                add(t, (body[i] if i < len(body) else head,))
            add(chunk[-2], (head,))

        pin_version(h)
        pk = h.packages
        for opt, (value, _) in m.pkg_opts.items():
            setattr(pk, opt, value)
        pk.seen = bool(m.pkgs or m.pkg_excl or m.pkg_opts or m.pkg_header)
        pk.environment = next((k[2:] for k in m.pkgs if k.startswith("@^")), None)
        pk.groupList = [m.groups.get(k[1:]) or Group(name=k[1:]) for k in m.pkgs
                        if k.startswith("@") and not k.startswith("@^")]
        pk.packageList = [k for k in m.pkgs if not k.startswith("@")]
        pk.excludedGroupList = [Group(name=k[1:]) for k in m.pkg_excl if k.startswith("@")]
        pk.excludedList = [k for k in m.pkg_excl if not k.startswith("@")]
        text = str(pk)
        if text:
            header_origin = (m.pkg_header,) if m.pkg_header else ()
            for t in text.rstrip("\n").split("\n"):
                s = t.strip()
                if not s or s.startswith("%"):
                    add(t, header_origin if s else ())
                    continue
                key = s.split()[0]
                entry = m.pkg_excl.get(key[1:]) if key.startswith("-") else m.pkgs.get(key)
                add(t, (entry,) if entry else header_origin)

        comp = Composition(profile=profile, release=release, target=target, overlays=overlays,
                           variables=variables, layers=layers, lines=lines, overrides=m.overrides,
                           messages=messages, kernel_args=kargs, handler=h)
        self._validate_merged(comp)
        return comp

    def _validate_merged(self, comp: Composition) -> None:
        """The merged result must itself be valid for the release (layers can clash, e.g. two displaymodes)."""
        comp.parsed = parse_text(comp.text, comp.version)
        for p in comp.parsed[1]:
            if p.severity != "error":
                continue
            o = comp.origin_of(p.line)
            raise KickstartSyntaxError(f"Merged kickstart not valid for {comp.version}",
                                       f"line {p.line} of the merged kickstart: {p.message}",
                                       file=o.file if o else comp.profile.source, line=o.line if o else 0,
                                       hint="the layers combine into something pykickstart refuses")


def _refuse_repeated_commands(lines: list[SourceLine]) -> None:
    """Refuse a layer with more than MAX_REPEATED_ITEMS lines of one command (outside sections), at the first
    line over, before pykickstart spends quadratic time on them."""
    counts: dict[str, int] = {}
    inside = False
    for sl in lines:
        t = sl.text.strip()
        if not t or t.startswith("#"):
            continue
        if t.startswith("%"):
            inside = not t.startswith("%end")
            continue
        if inside:
            continue
        word = t.split(None, 1)[0]
        counts[word] = counts.get(word, 0) + 1
        if counts[word] > MAX_REPEATED_ITEMS:
            raise KickstartSyntaxError("Too many lines", f"over {MAX_REPEATED_ITEMS} {word} lines in one layer",
                                       file=sl.file, line=sl.line, hint="an image needs a few of each; generate fewer")


def _runs_last(script: Any) -> bool:
    first = next((ln.strip() for ln in script.script.split("\n") if ln.strip()), "")
    return first.replace(" ", "") == RUN_LAST.replace(" ", "")


def _cmd_text(cmd: Any) -> str:
    lines = [t for t in str(cmd).split("\n") if t and not t.startswith("#")]
    return " ".join(lines)


def default_name(release: str, target: str, overlays: list[str]) -> str:
    """What an unsaved choice is called: RELEASE-TARGET, then +OVERLAY for each overlay in order."""
    return f"{release}-{target}" + "".join(f"+{o}" for o in overlays)


def choice(release: str, target: str, overlays: list[str] | None = None, variables: dict[str, Any] | None = None,
           kickstart: str = "", name: str | None = None) -> Profile:
    """An ad-hoc profile from --release/--target/--overlay (the CLI's and the TUI's unsaved choice)."""
    return Profile(name=name or default_name(release, target, overlays or []), release=release,
                   target=target, overlays=list(overlays or []), variables=dict(variables or {}),
                   kickstart=kickstart, source=None)


def _failing_line(lines: list[SourceLine], version: str, message: str) -> int:
    """The line of a parse error pykickstart reported without one (an invalid option value such as
    `autopart --type=banana`): the first prefix of the layer that fails with the same message ends there.
    Layers are short; this runs only on an error."""
    for end in range(1, min(len(lines), 2000) + 1):
        text = "\n".join(sl.text for sl in lines[:end]) + "\n"
        try:
            parse_text(text, version, fatal=True)
        except KickstartError as exc:
            if str(exc.message).strip() == message.strip():
                return end
    return 0

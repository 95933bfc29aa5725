"""pykickstart, wrapped: parse text for a release, collect every error and deprecation with its line.

pykickstart stops at the first error (or prints to stderr when told not to); here a parser subclass collects
each problem as a `KsMessage` so lint can show all of them, and compose can map the first one back to the
layer file that produced the line.
"""

from __future__ import annotations

import copy
import re
import shlex
import threading
import warnings
from dataclasses import dataclass
from typing import Any

from pykickstart.errors import KickstartDeprecationWarning, KickstartError, KickstartParseWarning
from pykickstart.parser import KickstartParser
from pykickstart.sections import PackageSection
from pykickstart.version import makeVersion, stringToVersion

_LINE_RX = re.compile(r"\bon line (\d+)")


@dataclass
class KsMessage:
    """One problem pykickstart found: severity 'error', 'deprecated' or 'warning', 1-based line (0 unknown)."""

    severity: str
    message: str
    line: int


class _LinearPackageSection(PackageSection):
    """pykickstart's %packages section hands each line to Packages.add, which rebuilds two sets and sorts both
    lists every time: quadratic (10,000 packages took 18 s, 50,000 over 240 s). Here plain package lines (`name`,
    `-name`) are applied to two sets with the very same result, line by line, and the sorted lists are written
    back once: before any other line (groups and environments still go through Packages.add), when the section
    ends, and when reading it fails (see _CollectingParser._readSection)."""

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._sets: tuple[set[str], set[str]] | None = None

    def handleLine(self, line: str) -> None:
        stripped = line.partition("#")[0].strip()
        plain = bool(stripped) and stripped[0] != "@" and not (stripped[0] == "-" and stripped[1:2] in ("", "@"))
        if not plain:
            self.flush()
            super().handleLine(line)
            return
        pk = self.handler.packages
        first = self._sets is None
        if self._sets is None:
            self._sets = (set(pk.packageList), set(pk.excludedList))
        included, excluded = self._sets
        if stripped[0] == "-":  # Packages.add: included -= {name}; excluded = (excluded - included) | {name}
            included.discard(stripped[1:])
            excluded.add(stripped[1:])
        else:  # Packages.add: included |= {name}; excluded -= included
            included.add(stripped)
            excluded.discard(stripped)
        if first:  # after one line, Packages.add leaves the two disjoint; they stay so, line by line
            excluded.difference_update(included)

    def flush(self) -> None:
        if self._sets is not None:
            included, excluded = self._sets
            self.handler.packages.packageList = sorted(included)
            self.handler.packages.excludedList = sorted(excluded)
            self._sets = None

    def finalize(self) -> None:
        self.flush()
        super().finalize()


class _CollectingParser(KickstartParser):
    def __init__(self, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.problems: list[KsMessage] = []
        self.command_warnings: list[tuple[warnings.WarningMessage, int]] = []

    def setupSections(self) -> None:
        super().setupSections()
        self._packages_section = _LinearPackageSection(self.handler)
        self.registerSection(self._packages_section)

    def _readSection(self, lineIter: Any, lineno: int) -> Any:
        try:
            return super()._readSection(lineIter, lineno)
        finally:  # a section cut short by an error keeps what it read, as pykickstart's own does
            self._packages_section.flush()

    def handleCommand(self, lineno: int, args: Any) -> Any:
        # Some deprecation warnings do not say their line: catch them per command, where the line is known.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", KickstartDeprecationWarning)
            warnings.simplefilter("always", KickstartParseWarning)
            try:
                return super().handleCommand(lineno, args)
            finally:
                self.command_warnings.extend((w, lineno) for w in caught)

    def _tryFunc(self, fn: Any) -> None:
        try:
            fn()
        except KickstartError as exc:
            self.errorsCount += 1
            if self.errorsAreFatal:
                raise
            self.problems.append(KsMessage("error", str(exc.message).strip(), exc.lineno or 0))
        except Exception as exc:
            self.errorsCount += 1
            if self.errorsAreFatal:
                raise KickstartError(str(exc)) from exc
            self.problems.append(KsMessage("error", str(exc).strip(), 0))


_protos = threading.local()


def make_handler(version: str) -> Any:
    """A fresh pykickstart handler for a version name such as 'RHEL9'.

    pykickstart's makeVersion builds about 300 argparse parsers (40-50 ms); composing a profile needs one handler
    per layer. So the first handler of each version is kept as a prototype and later ones are deep copies that
    share the prototype's option parsers (2 ms). The parsers hold only the line being parsed, so prototypes are
    per thread. tests/test_ksparse.py checks that a copy parses exactly like a new handler.
    (copy.deepcopy also works but costs 4 ms; the one-level copy below costs a fraction of that.)
    """
    cache: dict[str, Any] = getattr(_protos, "cache", None) or {}
    _protos.cache = cache
    proto = cache.get(version)
    if proto is None:
        proto = cache[version] = makeVersion(stringToVersion(version))
    return _clone(proto)


def _copy_one_level(obj: Any) -> Any:
    """A shallow copy whose list, dict and set attributes are copies too (a pristine object holds no deeper
    mutable state: its lists are empty or hold constants)."""
    new = copy.copy(obj)
    for key, value in vars(new).items():
        if isinstance(value, (list, dict, set)):
            setattr(new, key, copy.copy(value))
    return new


def _clone(proto: Any) -> Any:
    """A fresh handler from a pristine prototype; the option parsers are shared, all state is new."""
    new = copy.copy(proto)
    fresh: dict[int, Any] = {}
    for cmd in proto.commands.values():
        if cmd is not None and id(cmd) not in fresh:
            c = _copy_one_level(cmd)
            if hasattr(c, "handler"):
                c.handler = new
            fresh[id(cmd)] = c
    new.commands = {name: fresh[id(cmd)] if cmd is not None else None for name, cmd in proto.commands.items()}
    new._writeOrder = {prio: [fresh[id(o)] for o in objs]  # noqa: SLF001 - pykickstart's own write order
                       for prio, objs in proto._writeOrder.items()}  # noqa: SLF001
    for key, value in vars(proto).items():
        if id(value) in fresh:
            setattr(new, key, fresh[id(value)])
    new.packages = _copy_one_level(proto.packages)
    new.scripts = []
    new.certificates = []
    new._null_section_strings = []  # noqa: SLF001
    return new


def _strip_line_prefix(message: str) -> str:
    # "Ignoring deprecated option on line 3:  The --foo option..." -> keep the explanation only.
    message = re.sub(r"^Ignoring deprecated (command|option) on line \d+:\s*", "", message)
    return re.sub(r"\s+", " ", message).strip()


def parse_text(text: str, version: str, *, follow_includes: bool = False,
               fatal: bool = False) -> tuple[Any, list[KsMessage]]:
    """Parse kickstart *text* for *version*; return (handler, problems) in line order.

    With fatal=True the first error raises pykickstart's KickstartError (compose uses that); otherwise every
    error is collected and parsing goes on, as ksvalidator does without -e.
    """
    handler = make_handler(version)
    parser = _CollectingParser(handler, followIncludes=follow_includes, errorsAreFatal=fatal)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", KickstartDeprecationWarning)
        warnings.simplefilter("always", KickstartParseWarning)
        try:
            parser.readKickstartFromString(text)
        except KickstartError as exc:
            if fatal:
                raise
            parser.problems.append(KsMessage("error", str(exc.message).strip(), exc.lineno or 0))
        except ValueError as exc:
            # pykickstart splits command lines with shlex outside its own error handling: an unclosed quote
            # escapes as a bare ValueError. Find the line ourselves.
            line = _unsplittable_line(text)
            if fatal:
                raise KickstartError(f"cannot split the line: {exc}", lineno=line) from None
            parser.problems.append(KsMessage("error", f"cannot split the line: {exc}", line))
    problems = list(parser.problems)
    for w, known_line in [(w, 0) for w in caught] + parser.command_warnings:
        if issubclass(w.category, (KickstartDeprecationWarning, KickstartParseWarning)):
            text_w = str(w.message)
            m = _LINE_RX.search(text_w)
            severity = "deprecated" if issubclass(w.category, KickstartDeprecationWarning) else "warning"
            problems.append(KsMessage(severity, _strip_line_prefix(text_w), int(m.group(1)) if m else known_line))
    problems.sort(key=lambda p: p.line)
    return pin_version(handler), problems


def _unsplittable_line(text: str) -> int:
    """The first line outside a section body that shlex cannot split (an unclosed quote), or 0."""
    in_body = False
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if stripped.startswith("%"):
            in_body = not stripped.startswith("%end") and not stripped.startswith(("%include", "%ksappend"))
            continue
        if in_body or not stripped or stripped.startswith("#"):
            continue
        try:
            shlex.split(line, comments=True)
        except ValueError:
            return number
    return 0


def unique_commands(handler: Any) -> list[tuple[str, Any]]:
    """(name, command object) for each command object once (aliases such as part/partition share one)."""
    seen: set[int] = set()
    out = []
    for name, cmd in handler.commands.items():
        if cmd is None or id(cmd) in seen:
            continue
        seen.add(id(cmd))
        out.append((name, cmd))
    return out


def pin_version(handler: Any) -> Any:
    """Make the handler's %packages and scripts print in its own version's syntax, whatever is parsed later.

    pykickstart keeps that version in class attributes (Packages._ver, Script._ver) that every new
    KickstartParser overwrites, so a RHEL8 handler printed after a RHEL10 parse would write `--inst-langs`.
    Instance attributes shadow the class ones.
    """
    handler.packages._ver = handler.version  # noqa: SLF001 - see docstring
    for script in handler.scripts:
        script._ver = handler.version  # noqa: SLF001
    return handler


def write_order(handler: Any) -> list[Any]:
    """The command objects in the order pykickstart writes them (its own canonical order)."""
    out = []
    for prio in sorted(handler._writeOrder):  # noqa: SLF001 - the only way to reproduce pykickstart's order
        out.extend(handler._writeOrder[prio])  # noqa: SLF001
    return out


def canonical(text: str, version: str) -> str:
    """pykickstart's own canonical rendering of *text* (comments and formatting normalised)."""
    handler, _ = parse_text(text, version)
    return str(handler)

"""What the rehearsal system stands in for: commands of %pre/%post scripts it cannot honour.

The rehearsal installs a busybox system with no rpm database, no package repositories, no network and no
interpreters besides sh. Scripts that call a package manager, `rpm --import|-U|-i|-e`, curl/wget or an interpreter
are not silently faked: files/stub and files/rpm record each such command and what it would have done, the
installer reports it on the console ("rehearsal emulated: CMD (kickstart line N): WHAT"), and the build maps N to
the layer file:line through the composition's provenance.

Pure: `plan_emulations` reads the flat kickstart (what `plan` shows before anything runs), `parse_emulated` reads
the installer's console or log after the build, `located` names the layer file:line of each.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The console/log line the rehearsal installer prints for each emulated command.
EMULATED_RX = re.compile(r"rehearsal emulated: (?P<cmd>.*?) \(kickstart line (?P<line>\d+)\): (?P<what>.*)$")
_SCRIPT_RX = re.compile(r"^%(pre|post|pre-install)(\s|$)")
_HEREDOC_RX = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")
_SPLIT_RX = re.compile(r"\|\||&&|[;|(`]|(?<![<>])&(?!>)|\$\(")
_PREFIXES = {"if", "then", "else", "elif", "do", "while", "until", "!", "{", "exec", "time", "sudo", "env"}
_SHELLS = {"/bin/sh", "/bin/bash", "/usr/bin/sh", "/usr/bin/bash"}
_PACKAGE_MANAGERS = {"dnf", "yum", "microdnf"}
_FETCHERS = {"curl", "wget"}
_INTERPRETERS = {"python", "python2", "python3", "perl"}


@dataclass(frozen=True)
class Emulation:
    """One command the rehearsal will stand in for (or did): the flat kickstart's line, the command, what it
    would have done on CentOS, and (once located) the layer file:line it came from."""

    line: int
    command: str
    what: str
    origin: str | None = None

    def message(self) -> str:
        where = f"layer {self.origin}" if self.origin else f"kickstart line {self.line}"
        return f"rehearsal emulated: {self.command} ({where}): {self.what}"

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "command": self.command, "what": self.what, "origin": self.origin}


def _classify(words: list[str]) -> str | None:
    """What the rehearsal does instead of *words* (a simple command), or None when it honours it."""
    while words and (words[0] in _PREFIXES or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0])):
        words = words[1:]
    if not words:
        return None
    name = words[0].rsplit("/", 1)[-1]
    args = words[1:]
    if name == "rpm" and args:
        a = args[0]
        if a == "--import":
            return "import the signing key(s): no rpm database in the rehearsal"
        if re.match(r"^-[UiF]", a) or a in ("--upgrade", "--install", "--freshen"):
            return "install the package(s): recorded in the rehearsal package list, nothing unpacked"
        if a in ("-e", "--erase"):
            return "erase the package(s): dropped from the rehearsal package list"
        return None
    if name in _PACKAGE_MANAGERS:
        sub = next((w for w in args if not w.startswith("-")), "")
        if sub in ("install", "reinstall", "update", "upgrade"):
            return f"{name} {sub}: recorded as installed in the rehearsal package list (no repositories)"
        if sub in ("remove", "erase"):
            return f"{name} {sub}: dropped from the rehearsal package list"
        return f"{name} {sub or '(no subcommand)'}: nothing done (no repositories in the rehearsal)"
    if name == "sshd":
        return "test the sshd configuration: not run (the rehearsal system has no sshd)"
    if name in _FETCHERS:
        return "fetch over the network: a placeholder file stands in (no network in the rehearsal)"
    if name in _INTERPRETERS:
        return f"run {name}: not run (the rehearsal system has no {name})"
    return None


def _commands(line: str) -> list[list[str]]:
    out = []
    for part in _SPLIT_RX.split(line):
        try:
            words = shlex.split(part, comments=True)
        except ValueError:
            words = part.split()
        if words:
            out.append(words)
    return out


def plan_emulations(kickstart: str) -> list[Emulation]:
    """Every command of the flat kickstart's %pre/%post scripts the rehearsal will stand in for, in order; a
    script whose --interpreter the rehearsal lacks is listed once, on its header line (it is skipped)."""
    found: list[Emulation] = []
    in_script = False
    heredoc: str | None = None
    for number, raw in enumerate(kickstart.splitlines(), start=1):
        line = raw.strip()
        if heredoc is not None:
            if line == heredoc:
                heredoc = None
            continue
        if not in_script:
            if _SCRIPT_RX.match(line):
                in_script = True
                interp = re.search(r"--interpreter(?:=|\s+)(\S+)", line)
                if interp and interp.group(1) not in _SHELLS:
                    found.append(Emulation(number, line, f"skipped: the rehearsal has no {interp.group(1)}"))
            continue
        if line == "%end":
            in_script = False
            continue
        if not line or line.startswith("#"):
            continue
        doc = _HEREDOC_RX.search(line)
        for words in _commands(line):
            what = _classify(words)
            if what:
                found.append(Emulation(number, " ".join(words), what))
        if doc:
            heredoc = doc.group(2)
    return found


def parse_emulated(text: str) -> list[Emulation]:
    """The emulations the rehearsal installer reported in its console output or log, in order, each once."""
    seen: set[tuple[int, str]] = set()
    out: list[Emulation] = []
    for raw in text.splitlines():
        m = EMULATED_RX.search(raw.rstrip("\r"))
        if m:
            key = (int(m["line"]), m["cmd"])
            if key not in seen:
                seen.add(key)
                out.append(Emulation(int(m["line"]), m["cmd"], m["what"]))
    return out


def located(emulations: list[Emulation], origin_of: Callable[[int], Any]) -> list[Emulation]:
    """*emulations* with the layer file:line of each (origin_of: `Composition.origin_of`)."""
    out = []
    for e in emulations:
        o = origin_of(e.line)
        out.append(Emulation(e.line, e.command, e.what, str(o) if o is not None else None))
    return out

"""Profile values are checked here, before any template sees them.

A value that reaches a kickstart template can change the meaning of the kickstart: a newline starts a new
command, a leading `%` opens a section (`%pre` runs as root in the installer), a leading `--` adds an option.
Every value is checked for those in general, then against the rule of its own variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ccis_workbench.core.errors import ValueRejected

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Rule:
    """A variable's type, default, pattern and human explanation."""

    type: str
    default: Any
    pattern: str | None
    explain: str
    minimum: int | None = None
    maximum: int | None = None
    check: Callable[[Any], str | None] | None = None  # returns why the value is wrong, or None


def _known_timezone(tz: str) -> str | None:
    """Where the host has a zoneinfo database, the zone must exist in it (typos like Europe/Brusels)."""
    if tz == "UTC" or not os.path.isdir("/usr/share/zoneinfo"):
        return None
    if os.path.isfile(os.path.join("/usr/share/zoneinfo", tz)):
        return None
    return f"{tz!r} is not a known time zone (see /usr/share/zoneinfo)"


#: The variables every profile has. Overlays add their own (VariableSpec in their YAML).
VARIABLES: dict[str, Rule] = {
    "arch": Rule("str", "x86_64", r"x86_64|aarch64|ppc64le|s390x", "a CentOS architecture"),
    "disk_size": Rule("int", 10, None, "the disk size in GiB", 2, 2048),
    "timezone": Rule("str", "UTC", r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}",
                     "an IANA time zone such as UTC or Europe/Brussels", check=_known_timezone),
    "locale": Rule("str", "en_US.UTF-8", r"[a-z]{2,3}(_[A-Z]{2})?(\.(UTF-8|utf8))?(@[a-z]+)?",
                   "a locale such as en_US.UTF-8"),
    "keyboard": Rule("str", "us", r"[a-z]{2,}([_-][a-z0-9]+)*", "a keyboard layout such as us or de-nodeadkeys"),
    "hostname": Rule("str", "localhost.localdomain",
                     r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                     r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*",
                     "a host name (letters, digits, hyphens, dots)"),
    "extra_packages": Rule("list", (), r"-?(@\^?)?[A-Za-z0-9_][A-Za-z0-9._+:*-]*",
                           "package names; a leading - removes a package, @ names a group"),
    "extra_kernel_args": Rule("list", (), r"-?[A-Za-z0-9_][A-Za-z0-9_.:,/=+@-]*",
                              "kernel arguments such as quiet or console=ttyS1; a leading - removes one"),
    "swap_size": Rule("int", 0, None, "the swap partition size in MiB (0: none)", 0, 65536),
}


def check_scalar(name: str, value: Any, rule: Rule, where: str, line: int) -> Any:
    """Return *value* if it is acceptable for variable *name*, else raise ValueRejected with file:line."""

    def reject(why: str, hint: str = "") -> ValueRejected:
        return ValueRejected("Value refused", f"{name}: {why}", file=where, line=line,
                             hint=hint or f"{name} must be {rule.explain}")

    if rule.type == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise reject(f"{value!r} is not a whole number")
        if rule.minimum is not None and value < rule.minimum:
            raise reject(f"{value} is below the minimum {rule.minimum}")
        if rule.maximum is not None and value > rule.maximum:
            raise reject(f"{value} is above the maximum {rule.maximum}")
        return value
    if rule.type == "bool":
        if not isinstance(value, bool):
            raise reject(f"{value!r} is not true or false")
        return value
    if not isinstance(value, str):
        raise reject(f"{value!r} is not text")
    if _CONTROL.search(value):
        raise reject("contains a newline or control character, which would start a new kickstart line")
    stripped = value.lstrip()
    if stripped.startswith("%"):
        raise reject("starts with %, which would open a kickstart section")
    if stripped.startswith("--"):
        raise reject("starts with --, which would add a kickstart option")
    if rule.pattern is not None and not re.fullmatch(rule.pattern, value):
        raise reject(f"{value!r} is not valid")
    if rule.check is not None:
        problem = rule.check(value)
        if problem:
            raise reject(problem)
    return value


def check_value(name: str, value: Any, rule: Rule, where: str, line: int) -> Any:
    """Check one variable (a list variable checks each item)."""
    if rule.type == "list":
        if not isinstance(value, (list, tuple)):
            raise ValueRejected("Value refused", f"{name}: must be a list", file=where, line=line,
                                hint=f"{name} must be a list of {rule.explain}, written [a, b] "
                                f"(or one item per line, each starting with '- ')")
        item_rule = Rule("str", None, rule.pattern, rule.explain)
        return [check_scalar(name, v, item_rule, where, line) for v in value]
    return check_scalar(name, value, rule, where, line)


def resolve_variables(given: Mapping[str, Any], rules: Mapping[str, Rule], where: str,
                      lines: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Fill defaults and check every given value; unknown variables are refused."""
    lines = lines or {}
    out: dict[str, Any] = {}
    for key in given:
        if key not in rules:
            raise ValueRejected("Unknown variable", f"{key!r} is not a variable of this profile", file=where,
                                line=lines.get(key, 0), hint=f"known variables: {', '.join(sorted(rules))}")
    for key, rule in rules.items():
        if key in given and given[key] is not None:
            out[key] = check_value(key, given[key], rule, where, lines.get(key, 0))
        else:
            out[key] = list(rule.default) if rule.type == "list" else rule.default
    return out

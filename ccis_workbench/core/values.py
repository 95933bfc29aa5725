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

from ccis_workbench.core import linear_regex
from ccis_workbench.core.errors import ValueRejected

#: A value is printable text: no character Unicode calls "Other" or "Separator" but the ASCII space. That
#: refuses C0 controls (newline, tab, the provenance markers \x1e \x1f), DEL and C1 controls (\x85 is a line
#: break), the line and paragraph separators (pykickstart splits lines with str.splitlines, which breaks at each
#: of these), the invisible format characters that hide or reorder what a reviewer reads (zero-width characters,
#: bidirectional overrides, byte order mark), surrogates (which cannot be written as UTF-8), private-use and
#: unassigned code points, and spaces other than " ".
#: Context keys whose values are words in a kickstart or config line (names, URLs, options): no whitespace.
_WORD_KEYS = frozenset(
    {
        "name",
        "agent",
        "datasources",
        "formats",
        "default_user",
        "pykickstart",
        "kernel_args",
        "overlays",
        "arch",
        "url",
        "tree_url",
        "stage2",
    }
)


def describe_char(ch: str) -> str:
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


def text_problem(value: str) -> str | None:
    """Why *value* cannot go into a kickstart line as it is (it would add a line, open a section, add an option
    or hide text), or None."""
    if not value.isprintable():
        ch = next(c for c in value if not c.isprintable())
        what = "a newline" if ch == "\n" else f"the character {describe_char(ch)}"
        return f"contains {what}, which would start a new kickstart line or hide text"
    stripped = value.lstrip()
    if stripped.startswith("%"):
        return "starts with %, which would open a kickstart section"
    if stripped.startswith("--"):
        return "starts with --, which would add a kickstart option"
    return None


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
    "timezone": Rule(
        "str",
        "UTC",
        r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}",
        "an IANA time zone such as UTC or Europe/Brussels",
        check=_known_timezone,
    ),
    "locale": Rule(
        "str", "en_US.UTF-8", r"[a-z]{2,3}(_[A-Z]{2})?(\.(UTF-8|utf8))?(@[a-z]+)?", "a locale such as en_US.UTF-8"
    ),
    "keyboard": Rule("str", "us", r"[a-z]{2,}([_-][a-z0-9]+)*", "a keyboard layout such as us or de-nodeadkeys"),
    "hostname": Rule(
        "str",
        "localhost.localdomain",
        r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*",
        "a host name (letters, digits, hyphens, dots)",
        check=lambda v: "a host name has at most 253 characters" if len(v) > 253 else None,
    ),
    "extra_packages": Rule(
        "list",
        (),
        r"-?(@\^?)?[A-Za-z0-9_][A-Za-z0-9._+:*-]*",
        "package names; a leading - removes a package, @ names a group",
    ),
    "extra_kernel_args": Rule(
        "list",
        (),
        r"-?[A-Za-z0-9_][A-Za-z0-9_.:,/=+@-]*",
        "kernel arguments such as quiet or console=ttyS1; a leading - removes one",
    ),
    "swap_size": Rule("int", 0, None, "the swap partition size in MiB (0: none)", 0, 65536),
}


def check_scalar(name: str, value: Any, rule: Rule, where: str, line: int) -> Any:
    """Return *value* if it is acceptable for variable *name*, else raise ValueRejected with file:line."""

    def reject(why: str, hint: str = "") -> ValueRejected:
        return ValueRejected(
            "Value refused", f"{name}: {why}", file=where, line=line, hint=hint or f"{name} must be {rule.explain}"
        )

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
    problem = text_problem(value)
    if problem:
        raise reject(problem)
    if rule.pattern is not None and not linear_regex.fullmatch(rule.pattern, value):  # RE2: linear time
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
            raise ValueRejected(
                "Value refused",
                f"{name}: must be a list",
                file=where,
                line=line,
                hint=f"{name} must be a list of {rule.explain}, written [a, b] "
                f"(or one item per line, each starting with '- ')",
            )
        item_rule = Rule("str", None, rule.pattern, rule.explain)
        return [check_scalar(name, v, item_rule, where, line) for v in value]
    return check_scalar(name, value, rule, where, line)


def resolve_variables(
    given: Mapping[str, Any], rules: Mapping[str, Rule], where: str, lines: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """Fill defaults and check every given value; unknown variables are refused."""
    lines = lines or {}
    out: dict[str, Any] = {}
    for key in given:
        if key not in rules:
            raise ValueRejected(
                "Unknown variable",
                f"{key!r} is not a variable of this profile",
                file=where,
                line=lines.get(key, 0),
                hint=f"known variables: {', '.join(sorted(rules))}",
            )
    for key, rule in rules.items():
        if key in given and given[key] is not None:
            out[key] = check_value(key, given[key], rule, where, lines.get(key, 0))
        else:
            out[key] = list(rule.default) if rule.type == "list" else rule.default
    return out


def check_context(
    context: Mapping[str, Any], sources: Mapping[str, str | None], line_of: Callable[[str, str], int] | None = None
) -> None:
    """Every string a template will see (release, target, overlays, variables, arch), wherever it came from,
    passes text_problem; names, URLs and other words have no whitespace. *sources* names the file each top-level
    key came from, *line_of(file, key)* finds the key's line in it. Raises ValueRejected at that file:line."""
    stack: list[tuple[str, str, Any]] = [(key, key, value) for key, value in context.items()]
    while stack:
        path, key, value = stack.pop()
        if isinstance(value, Mapping):
            stack.extend((f"{path}.{k}", str(k), v) for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend((f"{path}[{i}]", key, v) for i, v in enumerate(value))
        elif isinstance(value, str):
            problem = text_problem(value)
            if problem is None and key in _WORD_KEYS and re.search(r"\s", value):
                problem = "contains whitespace, which would split it into two words of the kickstart line"
            if problem:
                top = path.split(".", 1)[0].split("[", 1)[0]
                file = sources.get(top) or "(command line)"
                line = line_of(file, key) if line_of is not None and file != "(command line)" else 0
                raise ValueRejected(
                    "Value refused",
                    f"{path}: {value!r} {problem}",
                    file=file,
                    line=line,
                    hint="a value that reaches a kickstart template is one line of plain text",
                )


def key_line_finder(root: str | os.PathLike[str]) -> Callable[[str, str], int]:
    """line_of(file, key) for check_context: the first line of catalog file *file* (relative to *root*) that
    sets *key* (`key:` or `- key:`), 0 when there is none or the file cannot be read."""

    def line_of(file: str, key: str) -> int:
        try:
            with open(os.path.join(root, file), encoding="utf-8", errors="replace") as fh:
                for number, text in enumerate(fh, 1):
                    if re.match(rf"\s*(-\s+)?{re.escape(key)}\s*:", text):
                        return number
        except OSError:
            pass
        return 0

    return line_of

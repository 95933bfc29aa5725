"""A very small schema checker for catalog and profile YAML, with file:line in every message.

A schema is a dict of key -> Field. Unknown keys are refused (a typo must never be silently ignored).
"""

from __future__ import annotations

import builtins
import difflib
import functools
import re

try:  # the parser re itself uses; its public alias sre_parse is deprecated
    import re._constants as _sre
    import re._parser as _sre_parse
except ImportError:  # pragma: no cover - Python before 3.11
    import sre_constants as _sre  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ccis_workbench.core.errors import CatalogError
from ccis_workbench.core.linear_regex import check_linear
from ccis_workbench.core.yamlfile import LineDict, LineList

_TYPE_NAMES = {str: "a string", int: "a whole number", bool: "true or false", list: "a list",
               dict: "a mapping", float: "a number"}


@dataclass
class Field:
    """One key of a mapping: its type, whether it is required, item type for lists, choices, a check."""

    type: builtins.type
    required: bool = False
    items: builtins.type | None = None
    choices: Iterable[str] | None = None
    pattern: str | None = None
    check: Callable[[Any], str | None] | None = None
    schema: dict[str, Field] | None = None
    default: Any = None
    doc: str = ""
    _regex: re.Pattern[str] | None = field(default=None, init=False, repr=False)

    def regex(self) -> re.Pattern[str] | None:
        if self.pattern and self._regex is None:
            self._regex = re.compile(self.pattern)
        return self._regex


#: A regular expression from the catalog (a check's expected output, a variable's pattern) is at most this long.
MAX_REGEX_CHARS = 1000

_REPEATS = (_sre.MAX_REPEAT, _sre.MIN_REPEAT) + ((_sre.POSSESSIVE_REPEAT,) if hasattr(_sre, "POSSESSIVE_REPEAT")
                                                else ())
_ALL = None  # a character set that may hold any character (unknown, negated, or too wide to list)
_CATEGORY_CHARS = {
    _sre.CATEGORY_DIGIT: frozenset(range(0x30, 0x3A)),
    _sre.CATEGORY_SPACE: frozenset((0x20, 0x09, 0x0A, 0x0B, 0x0C, 0x0D)),
}


def _chars_of_set(items: list[tuple[Any, Any]]) -> frozenset[int] | None:
    out: set[int] = set()
    for op, av in items:
        if op is _sre.LITERAL:
            out.add(av)
        elif op is _sre.RANGE and av[1] - av[0] < 4096:
            out.update(range(av[0], av[1] + 1))
        elif op is _sre.CATEGORY and av in _CATEGORY_CHARS:
            out |= _CATEGORY_CHARS[av]
        else:  # NEGATE, word categories, wide ranges: could be anything
            return _ALL
    return frozenset(out)


def _first_char(sub: Any) -> frozenset[int] | None:
    """The characters the first, mandatory, one-character item of *sub* can match (None: unknown/any)."""
    for op, av in sub:
        if op is _sre.AT:
            continue
        if op is _sre.LITERAL:
            return frozenset((av,))
        if op is _sre.IN:
            return _chars_of_set(av)
        if op is _sre.SUBPATTERN:
            return _first_char(av[-1])
        return _ALL
    return _ALL


def _chars_of(sub: Any) -> frozenset[int] | None:
    """Every character *sub* can match anywhere (None: unknown/any)."""
    out: set[int] = set()
    for op, av in sub:
        if op is _sre.LITERAL:
            out.add(av)
        elif op is _sre.IN:
            chars = _chars_of_set(av)
            if chars is _ALL:
                return _ALL
            out |= chars
        elif op in _REPEATS:
            chars = _chars_of(av[2])
            if chars is _ALL:
                return _ALL
            out |= chars
        elif op is _sre.SUBPATTERN:
            chars = _chars_of(av[-1])
            if chars is _ALL:
                return _ALL
            out |= chars
        elif op is _sre.BRANCH:
            for alt in av[1]:
                chars = _chars_of(alt)
                if chars is _ALL:
                    return _ALL
                out |= chars
        elif op is _sre.AT:
            continue
        else:
            return _ALL
    return frozenset(out)


def _has_repeat_or_branch(sub: Any) -> bool:
    for op, av in sub:
        if op in _REPEATS:  # even `x?`: `(a?)+` can match each a in more than one round
            return True
        if op is _sre.BRANCH:
            return True
        if op is _sre.SUBPATTERN and _has_repeat_or_branch(av[-1]):
            return True
        if op in (_sre.ASSERT, _sre.ASSERT_NOT) and _has_repeat_or_branch(av[1]):
            return True
        if op is _sre.GROUPREF_EXISTS:
            return True
    return False


def _disjoint(a: frozenset[int] | None, b: frozenset[int] | None) -> bool:
    return a is not _ALL and b is not _ALL and not (a & b)


def _backtracking_problem(sub: Any) -> str | None:
    """Why matching *sub* could take exponential time, or None. A repetition (of more than one) may hold another
    repetition or an alternation only when each round starts with a character the inner parts cannot match
    (`(:[A-Z0-9-]+)*` is fine, `(a+)+`, `(a|aa)*` and `(.*x){9}` are not); alternatives of a repeated alternation
    must start with different characters. Two unbounded repetitions in a row where the first can match what
    the second starts with (`a*a*b`, `\\s*.*`) are refused too: polynomial, n squared on a long value."""
    chain: list[frozenset[int] | None] = []  # the characters of the unbounded repetitions read since a separator
    for op, av in sub:
        if op in _REPEATS and av[1] == _sre.MAXREPEAT:
            first = _first_char(av[2])
            if any(not _disjoint(c, first) for c in chain):
                return "two repetitions in a row that can match the same characters"
            chars = _chars_of(av[2])
            if av[0] >= 1 and all(_disjoint(c, chars) for c in chain):
                chain = [chars]  # at least one character none of the earlier ones can match: a separator
            else:
                chain.append(chars)
        elif not (op is _sre.AT or (op in _REPEATS and av[0] == 0)):
            chain = []
    for op, av in sub:
        if op in _REPEATS:
            body = av[2]
            while len(body) == 1 and body[0][0] is _sre.SUBPATTERN:  # (...)* repeats what the group holds
                body = body[0][1][-1]
            if av[1] > 1 and _has_repeat_or_branch(body):
                inner = _chars_of([(o, a) for o, a in body][1:]) if len(body) > 1 else _chars_of(body)
                first = _first_char(body)
                single_branch = len(body) == 1 and body[0][0] is _sre.BRANCH
                if single_branch:
                    firsts = [_first_char(alt) for alt in body[0][1][1]]
                    if any(not _disjoint(x, y) for i, x in enumerate(firsts) for y in firsts[i + 1:]):
                        return "a repeated alternation whose alternatives can start with the same character"
                    if any(_has_repeat_or_branch(alt) for alt in body[0][1][1]):
                        return "a repetition inside a repeated alternation"
                elif not _disjoint(first, inner):
                    return "a repetition (or alternation) nested inside a repetition"
            problem = _backtracking_problem(body)
        elif op is _sre.SUBPATTERN:
            problem = _backtracking_problem(av[-1])
        elif op is _sre.BRANCH:
            problem = next((p for alt in av[1] if (p := _backtracking_problem(alt))), None)
        elif op in (_sre.ASSERT, _sre.ASSERT_NOT):
            problem = _backtracking_problem(av[1])
        elif op is _sre.ATOMIC_GROUP if hasattr(_sre, "ATOMIC_GROUP") else False:
            problem = _backtracking_problem(av)
        elif op is _sre.GROUPREF_EXISTS:
            problem = "a conditional group"
        elif op is _sre.GROUPREF:
            problem = "a back reference"
        else:
            problem = None
        if problem:
            return problem
    return None


def compile_catalog_regex(pattern: str, what: str, file: str, line: int) -> re.Pattern[str]:
    """Compile a regular expression taken from the catalog, or raise a CatalogError at file:line: too long,
    invalid, or shaped so that Python's backtracking engine could take exponential time on some input (nested
    repetitions, ambiguous repeated alternations, back references)."""
    if len(pattern) > MAX_REGEX_CHARS:
        raise CatalogError("Invalid value", f"{what}: the regular expression is over {MAX_REGEX_CHARS} characters",
                           file=file, line=line, hint="a check or a variable needs a short pattern")
    compiled, invalid, problem = _analyse_regex(pattern)
    if invalid:
        raise CatalogError("Invalid value", f"{what}: not a regular expression: {invalid}", file=file, line=line,
                           hint="see https://docs.python.org/3/library/re.html")
    if problem:
        raise CatalogError("Invalid value", f"{what}: the regular expression has {problem}, which can take "
                           "exponential or polynomial time on some input", file=file, line=line,
                           hint="make each repeated part start with a character the rest of it cannot match, "
                                "e.g. (:[A-Z0-9-]+)* rather than ([A-Z0-9:-]+)*")
    check_linear(pattern, what, file, line)  # matched with RE2: back references and lookaround are refused here
    assert compiled is not None
    return compiled


@functools.lru_cache(maxsize=1024)
def _analyse_regex(pattern: str) -> tuple[re.Pattern[str] | None, str | None, str | None]:
    """(compiled, why it is invalid, why it could backtrack): each pattern is analysed once per process."""
    try:
        compiled = re.compile(pattern)
        tree = _sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        return None, str(exc), None
    return compiled, None, _backtracking_problem(tree)


def _type_ok(value: Any, expected: type) -> bool:
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _check_scalar(value: Any, fld: Field, file: str, line: int, key: str) -> None:
    if fld.choices is not None and value not in set(fld.choices):
        raise CatalogError("Invalid value", f"{key}: {value!r} is not one of: {', '.join(sorted(fld.choices))}",
                           file=file, line=line)
    rx = fld.regex()
    if rx is not None and isinstance(value, str) and not rx.fullmatch(value):
        raise CatalogError("Invalid value", f"{key}: {value!r} does not match {fld.pattern}", file=file, line=line)
    if fld.check is not None:
        problem = fld.check(value)
        if problem:
            raise CatalogError("Invalid value", f"{key}: {problem}", file=file, line=line)


def validate(data: Any, schema: dict[str, Field], file: str, *, what: str = "file") -> dict[str, Any]:
    """Check *data* (a LineDict) against *schema*; return a plain dict with defaults filled in."""
    if not isinstance(data, dict):
        line = getattr(data, "line", 1)
        raise CatalogError("Wrong type", f"the {what} must be a YAML mapping (key: value lines)", file=file,
                           line=line)
    lines = data if isinstance(data, LineDict) else None
    for key in data:
        if key not in schema:
            close = difflib.get_close_matches(str(key).replace("-", "_"), list(schema), n=1, cutoff=0.75)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(sorted(schema))}"
            raise CatalogError("Unknown key", f"{key!r} is not a known key of a {what}", file=file,
                               line=lines.line_of(key) if lines else 0, hint=hint)
    out: dict[str, Any] = {}
    for key, fld in schema.items():
        line = lines.line_of(key) if lines else 0
        if key not in data or data[key] is None:
            if fld.required:
                raise CatalogError("Missing key", f"a {what} needs {key!r}", file=file,
                                   line=lines.line if lines else 0)
            out[key] = fld.default() if callable(fld.default) else fld.default
            continue
        value = data[key]
        if not _type_ok(value, fld.type):
            raise CatalogError("Wrong type", f"{key} must be {_TYPE_NAMES.get(fld.type, fld.type.__name__)}, "
                               f"not {type(value).__name__}", file=file, line=line)
        if fld.type is list:
            items = []
            for i, item in enumerate(value):
                iline = value.line_of(i) if isinstance(value, LineList) else line
                if fld.items is not None and not _type_ok(item, fld.items):
                    raise CatalogError("Wrong type", f"each item of {key} must be "
                                       f"{_TYPE_NAMES.get(fld.items, fld.items.__name__)}", file=file, line=iline)
                if fld.schema is not None:
                    items.append(validate(item, fld.schema, file, what=f"{what} {key} item"))
                else:
                    _check_scalar(item, fld, file, iline, key)
                    items.append(item)
            out[key] = items
            continue
        elif fld.type is dict and fld.schema is not None:
            out[key] = validate(value, fld.schema, file, what=f"{what} {key}")
            continue
        else:
            _check_scalar(value, fld, file, line, key)
        out[key] = value
    return out

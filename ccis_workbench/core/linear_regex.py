"""Regular expressions from the catalog, matched in linear time.

A check's `output`, a derived rule's `output` and a variable's `pattern` are written by whoever edits the catalog
(or proposes a change to it) and are matched against text nobody controls: a guest's console, a value given on the
command line. Python's `re` backtracks: `.*a.*b.*c.*d.*e` searched in one megabyte without an `e` takes hours. These
patterns are therefore matched with RE2 (the `google-re2` package), an automaton that reads the text once, so a
search costs at most (pattern size) x (text size) steps and RE2's memory budget (`max_mem`, 8 MiB by default).
RE2 has no back references and no lookaround (`(?=`, `(?!`, `(?<=`, `(?<!`): such a pattern is refused where it is
written, with its file and line, by `check_linear` (called from schema.compile_catalog_regex).

The syntax is otherwise Python's, with two differences worth knowing: `\\d`, `\\w` and `\\s` are ASCII classes, and
`$` without `(?m)` matches only at the very end of the text.
"""

from __future__ import annotations

import functools
from typing import Any

from ccis_workbench.core.errors import CatalogError

#: what RE2 leaves out, in the words of its error messages, and what to write instead
_HINTS = {
    "invalid perl operator: (?=": "lookahead is not supported: for 'A and B on one line' write ^.*(?:A.*B|B.*A)",
    "invalid perl operator: (?!": "negative lookahead is not supported: check the absence with a second check",
    "invalid perl operator: (?<": "lookbehind is not supported: match the preceding text instead",
    "invalid escape sequence: \\": "back references (\\1) are not supported",
}


def _module() -> Any:
    import re2  # imported on first use: commands that match nothing do not pay for it

    return re2


@functools.lru_cache(maxsize=1)
def _options() -> Any:
    opts = _module().Options()
    opts.log_errors = False  # the error is ours to report, with a file and line
    return opts


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str, multiline: bool) -> Any:
    """The compiled RE2 program, or the error message RE2 gave (a str)."""
    re2 = _module()
    try:
        return re2.compile(("(?m)" if multiline else "") + pattern, options=_options())
    except re2.error as exc:
        msg = exc.args[0] if exc.args else str(exc)
        return msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)


def linear_problem(pattern: str) -> str | None:
    """Why RE2 cannot run *pattern* (a sentence), or None."""
    got = _compiled(pattern, False)
    if not isinstance(got, str):
        return None
    hint = next((h for k, h in _HINTS.items() if got.startswith(k)), None)
    return f"{got} ({hint})" if hint else got


def check_linear(pattern: str, what: str, file: str, line: int) -> None:
    """Raise a CatalogError at file:line when *pattern* cannot be matched in linear time."""
    problem = linear_problem(pattern)
    if problem:
        raise CatalogError(
            "Invalid value",
            f"{what}: the regular expression cannot be matched in linear time: {problem}",
            file=file,
            line=line,
            hint="catalog patterns are matched with RE2: no back references, no lookaround",
        )


def _program(pattern: str, multiline: bool) -> Any:
    got = _compiled(pattern, multiline)
    if isinstance(got, str):  # validated patterns never get here; a pattern from elsewhere gets a plain error
        raise CatalogError(
            "Invalid value", f"the regular expression /{pattern}/ cannot be matched in linear time: {got}"
        )
    return got


def search(pattern: str, text: str, *, multiline: bool = True) -> bool:
    """Whether *pattern* occurs in *text* (`^` and `$` at each line when *multiline*), in linear time."""
    return _program(pattern, multiline).search(text) is not None


def fullmatch(pattern: str, text: str) -> bool:
    """Whether *pattern* matches the whole of *text*, in linear time."""
    return _program(pattern, False).fullmatch(text) is not None

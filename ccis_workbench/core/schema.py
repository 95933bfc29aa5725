"""A very small schema checker for catalog and profile YAML, with file:line in every message.

A schema is a dict of key -> Field. Unknown keys are refused (a typo must never be silently ignored).
"""

from __future__ import annotations

import builtins
import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ccis_workbench.core.errors import CatalogError
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

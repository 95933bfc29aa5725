"""Size and time bounds for rendering untrusted templates.

Jinja2's sandbox keeps a template away from Python's internals, but not from the machine's memory and time:
`{{ "a" * 10000000000 }}` asks for 10 GB, `{{ "x" | center(3000000000) }}` for 3 GB. The bounded environment in
`templates.py` asks this module, *before* each operation that can multiply a size (binary operators, `~`,
string methods, filters, globals), how large the result would be, and refuses when it would be over the limit;
it also checks the clock at every call, loop and output chunk. A value is measured by the length of its text
(what `{{ value }}` would print), walked iteratively and abandoned as soon as it is over the budget, so that
measuring is itself bounded.

Whatever gets past these checks (a builtin that is slow on a large but allowed input) is the worker process's
business: untrusted catalogs are composed under address-space and CPU limits (`flows/isolated.py`).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import ItemsView, KeysView, Mapping, ValuesView
from dataclasses import dataclass
from typing import Any

from jinja2.utils import Namespace

MIB = 1024 * 1024


@dataclass(frozen=True)
class RenderLimits:
    """What one rendered layer may use. The defaults are stated in the README ("Limits")."""

    #: characters of output per rendered layer, and of any single value built while rendering
    max_output: int = MIB
    #: wall-clock seconds per rendered layer (checked at every call, loop step and output chunk)
    max_seconds: float = 2.0
    #: bits of any whole number built while rendering (`2 ** 100000000` is refused)
    max_int_bits: int = 65536
    #: items of a list a filter builds from a count (`batch`, `slice`)
    max_items: int = 100_000

    def describe_size(self) -> str:
        mib = self.max_output / MIB
        return f"{mib:g} MiB" if mib >= 1 else f"{self.max_output:,} characters"


class LimitExceeded(Exception):
    """A template went over a limit; templates.py turns it into a TemplateError naming the file and line."""

    def __init__(self, title: str, message: str, hint: str) -> None:
        super().__init__(message)
        self.title = title
        self.message = message
        self.hint = hint


def too_large(limits: RenderLimits, what: str, size: int | None = None) -> LimitExceeded:
    detail = f": {what} would make {size:,} characters" if size is not None else f": {what}"
    return LimitExceeded(
        "Template too large",
        f"template output over {limits.describe_size()}{detail}",
        "a fragment renders a few kilobytes of kickstart; remove the repetition or padding",
    )


def too_slow(limits: RenderLimits) -> LimitExceeded:
    return LimitExceeded(
        "Template too slow",
        f"template took over {limits.max_seconds:g} s",
        "a fragment renders in milliseconds; look for a loop or recursion that does not end",
    )


class Clock(threading.local):
    """The deadline of the render in progress, and the loop it last stepped (per thread: renders in different
    threads do not share them)."""

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.deadline: float | None = None
        self.loop: tuple[str, int] | None = None  # template name and line of the loop that last took a step

    def start(self) -> None:
        self.deadline = time.monotonic() + self.limits.max_seconds
        self.loop = None

    def stop(self) -> None:
        self.deadline = None

    def tick(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise too_slow(self.limits)


# -- measuring ---------------------------------------------------------------------------------------------------

_SCALAR = 24  # floats, None, booleans, ranges, functions: their text is short


def text_size(value: Any, budget: int) -> int:
    """How many characters `str(value)` would have, counted up to *budget* (a result over it means "too large").

    Containers count their items' text plus separators; the walk stops as soon as the count is over the budget,
    so a huge or self-referencing structure is measured in bounded time.
    """
    total = 0
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            total += len(v)
        elif isinstance(v, bool) or v is None:
            total += 5
        elif isinstance(v, int):
            total += v.bit_length() // 3 + 2
        elif isinstance(v, (list, tuple, set, frozenset, KeysView, ValuesView)):
            total += 2 + 2 * len(v)
            if total > budget:
                return total
            stack.extend(v)
        elif isinstance(v, (Mapping, ItemsView)):
            items = v.items() if isinstance(v, Mapping) else v
            total += 2 + 4 * len(items)
            if total > budget:
                return total
            for k, x in items:
                stack.append(k)
                stack.append(x)
        elif isinstance(v, Namespace):
            total += 12
            stack.append(v._Namespace__attrs)  # type: ignore[attr-defined]  # noqa: SLF001 - its text shows them
        else:
            total += _SCALAR
        if total > budget:
            return total
    return total


def nesting(value: Any, cap: int) -> int:
    """How deeply *value*'s containers nest (counted up to *cap*)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if d > deepest:
            deepest = d
            if deepest > cap:
                return deepest
        if isinstance(v, (list, tuple, set, frozenset)):
            stack.extend((x, d + 1) for x in v)
        elif isinstance(v, Mapping):
            stack.extend((x, d + 1) for x in v.values())
    return deepest


class Meter:
    """The size checks, for one set of limits."""

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.cap = limits.max_output

    def size(self, value: Any) -> int:
        return text_size(value, self.cap)

    def nesting(self, value: Any) -> int:
        return nesting(value, self.cap)

    def check(self, size: int, what: str) -> None:
        if size > self.cap:
            raise too_large(self.limits, what, size)

    def check_value(self, value: Any, what: str) -> None:
        """A value already built: refuse it if its text is over the limit (stops growth that compounds)."""
        if isinstance(value, str):
            self.check(len(value), what)
        elif isinstance(value, (list, tuple, dict, set, Namespace)):
            self.check(self.size(value), what)

    def check_int(self, bits: int, what: str) -> None:
        if bits > self.limits.max_int_bits:
            raise LimitExceeded(
                "Template too large",
                f"{what} would make a number of {bits:,} bits (the limit is {self.limits.max_int_bits:,})",
                "templates need small numbers only",
            )

    def count(self, n: Any, what: str) -> None:
        if isinstance(n, int) and n > self.limits.max_items:
            raise LimitExceeded(
                "Template too large",
                f"{what} would make {n:,} items (the limit is {self.limits.max_items:,})",
                "templates need short lists only",
            )

    # -- operators ---------------------------------------------------------------------------------------------

    def binop(self, op: str, left: Any, right: Any) -> None:
        num = (int, float)
        if op == "*":
            if isinstance(left, int) and isinstance(right, int):
                self.check_int(abs(left).bit_length() + abs(right).bit_length(), "'*'")
            elif isinstance(left, int) and not isinstance(right, num):
                self.check(self.size(right) * max(left, 0), "'*'")
            elif isinstance(right, int) and not isinstance(left, num):
                self.check(self.size(left) * max(right, 0), "'*'")
        elif op == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                self.check_int(abs(left).bit_length() * right, "'**'")
        elif op == "+":
            if not (isinstance(left, num) and isinstance(right, num)):
                self.check(self.size(left) + self.size(right), "'+'")
        elif op == "%" and isinstance(left, str):
            self.check(self.printf(left, right), "'%'")

    def printf(self, fmt: str, args: Any) -> int:
        """An upper bound of the length of `fmt % args`."""
        specs = _PRINTF.findall(fmt)
        if not specs:
            return len(fmt)
        values = list(args.values()) if isinstance(args, Mapping) else list(args) if isinstance(args, tuple) else [args]
        widest_arg = max((self.size(v) for v in values), default=0)
        numbers = [int(n) for spec in specs for n in re.findall(r"\d+", spec)]
        if any("*" in spec for spec in specs):
            numbers += [v for v in values if isinstance(v, int)]
        widest = max([widest_arg, *numbers])
        return len(fmt) + len(specs) * widest

    def format_field(self, spec: str) -> None:
        """A str.format field's spec, once its nested fields are filled in: its width and precision."""
        for n in re.findall(r"\d+", spec):
            self.check(int(n), "a format width")

    def concat(self, items: tuple[Any, ...]) -> None:
        self.check(sum(self.size(v) for v in items), "'~'")

    def collect(self, iterable: Any, what: str, separator: int = 0) -> list[Any]:
        """Materialise *iterable* for a join, refusing it as soon as the joined text would be over the limit."""
        items = []
        total = 0
        for item in iterable:
            total += self.size(item) + separator
            if total > self.cap:
                raise too_large(self.limits, what, total)
            items.append(item)
        return items

    # -- str methods reached through the sandbox's call() --------------------------------------------------------

    def str_method(self, s: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        what = f"str.{name}"

        def arg(i: int, key: str, default: Any) -> Any:
            return args[i] if len(args) > i else kwargs.get(key, default)

        if name in ("center", "ljust", "rjust", "zfill"):
            width = arg(0, "width", 0)
            if isinstance(width, int):
                self.check(width, what)
        elif name == "expandtabs":
            tab = arg(0, "tabsize", 8)
            if isinstance(tab, int):
                self.check(len(s) + s.count("\t") * max(tab, 0), what)
        elif name == "replace":
            self.check(self.replaced(s, arg(0, "old", ""), arg(1, "new", ""), arg(2, "count", -1)), what)
        elif name == "translate":
            table = arg(0, "table", None)
            if isinstance(table, Mapping):
                widest = max((self.size(v) for v in table.values()), default=1)
                self.check(len(s) * max(widest, 1), what)

    @staticmethod
    def replaced(s: str, old: Any, new: Any, count: Any) -> int:
        if not isinstance(old, str) or not isinstance(new, str):
            return len(s)
        n = s.count(old) if old else len(s) + 1
        if isinstance(count, int) and count >= 0:
            n = min(n, count)
        return len(s) + n * max(len(new) - len(old), 0)


_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?[diouxXeEfFgGcrsa%]")

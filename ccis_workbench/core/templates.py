"""Kickstart fragments are Jinja2 templates rendered in the sandbox, with line provenance.

Provenance trick: a Jinja2 extension rewrites the token stream so that every newline in template *data*
carries an invisible marker naming the template and the source line it came from. After rendering, each output
line ends with the marker of the template line that produced it (lines made inside an expression take the
marker of the line that follows them, which is the expression's own line). The markers are then stripped and
kept as a list of (file, line) per output line. Loops and includes are handled for free: a loop repeats its
line's marker, an included template carries its own name.
"""

from __future__ import annotations

import inspect
import re
import traceback
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import update_wrapper
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.ext import Extension
from jinja2.lexer import Token, TokenStream
from jinja2.runtime import markup_join, str_join
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedEscapeFormatter,
    SandboxedFormatter,
    SecurityError,
)
from jinja2.utils import _PassArg, generate_lorem_ipsum
from markupsafe import Markup

from ccis_workbench.core.cachedir import cache_root
from ccis_workbench.core.errors import TemplateError, WorkbenchError
from ccis_workbench.core.render_limits import Clock, LimitExceeded, Meter, RenderLimits, too_large
from ccis_workbench.core.template_cache import TemplateCodeCache
from ccis_workbench.core.textfile import read_text, require_regular

_MARK_OPEN = "\x1e"
_MARK_CLOSE = "\x1f"
_MARK_RX = re.compile("\x1e(\\d+):(\\d+)\x1f")
#: What an expression may not print: control characters but tab and newline (the markers above among them).
_EXPRESSION_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _last_mark(text: str) -> re.Match[str] | None:
    start = text.rfind(_MARK_OPEN)
    return _MARK_RX.match(text, start) if start >= 0 else None


@dataclass(frozen=True)
class SourceLine:
    """One rendered line and where it came from (file path relative to the catalog root, 1-based line)."""

    text: str
    file: str
    line: int


class _LineMarker(Extension):
    """Insert `\\x1eTEMPLATE:LINE\\x1f` before every newline of template data."""

    def filter_stream(self, stream: TokenStream) -> Iterator[Token]:
        env = self.environment
        # the id is baked into the compiled code: template_cache.py keys cached code by it
        tid = env.template_id(stream.name or "<string>")  # type: ignore[attr-defined]
        for token in stream:
            if token.type != "data" or "\n" not in token.value:
                yield token
                continue
            lineno = token.lineno
            parts = token.value.split("\n")
            out = []
            for i, part in enumerate(parts[:-1]):
                out.append(f"{part}{_MARK_OPEN}{tid}:{lineno + i}{_MARK_CLOSE}\n")
            out.append(parts[-1])
            yield Token(token.lineno, "data", "".join(out))


class _CatalogLoader(jinja2.BaseLoader):
    """Loads templates by catalog-relative name through read_text (size, binary and UTF-8 checks)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.filenames: set[str] = set()  # what tracebacks name: a failure is located in these, never elsewhere

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Any]:
        path = (self.root / template).resolve()
        try:
            path.relative_to(self.root.resolve())
        except ValueError:
            raise jinja2.TemplateNotFound(template) from None
        require_regular(path, what="template")  # a FIFO or a device: refused by name, never opened
        if not path.is_file():
            raise jinja2.TemplateNotFound(template)
        text = read_text(path, what="template")
        mtime = path.stat().st_mtime
        self.filenames.add(str(path))
        return text, str(path), lambda: path.exists() and path.stat().st_mtime == mtime


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja2's code generator, except that `a ~ b` asks the environment before joining (it cannot be
    intercepted like the other operators)."""

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            markup = "context.eval_ctx.volatile"
        else:
            markup = "True" if frame.eval_ctx.autoescape else "False"
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(f"), {markup})")


class _BoundedFormatter(SandboxedFormatter):
    """str.format in the sandbox, refusing a field width or a total over the size limit."""

    def __init__(self, env: _BoundedEnvironment, **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        self.meter = env.meter
        self.total = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        self.meter.format_field(format_spec)
        self.total += self.meter.size(value)
        self.meter.check(self.total, "str.format")
        return super().format_field(value, format_spec)


class _BoundedEscapeFormatter(_BoundedFormatter, SandboxedEscapeFormatter):
    pass


#: Filters whose result can be much larger than their input: checked before they run (the arguments are bound
#: to the filter's own signature). Every other filter's result is checked after it runs.
_FILTER_CHECKS: dict[str, Callable[[Meter, dict[str, Any]], None]] = {
    "center": lambda m, a: m.check(a["width"] if isinstance(a["width"], int) else 0, "center"),
    "indent": lambda m, a: m.check(
        m.size(a["s"])
        + (str(a["s"]).count("\n") + 1) * (len(a["width"]) if isinstance(a["width"], str) else max(int(a["width"]), 0)),
        "indent",
    ),
    "wordwrap": lambda m, a: m.check(m.size(a["s"]) * (1 + len(a["wrapstring"] or "\n")), "wordwrap"),
    "format": lambda m, a: m.check(m.printf(str(a["value"]), a["kwargs"] or a["args"]), "format"),
    "replace": lambda m, a: m.check(m.replaced(str(a["s"]), a["old"], a["new"], a["count"]), "replace"),
    "batch": lambda m, a: m.count(a["linecount"], "batch") if a["fill_with"] is not None else None,
    "slice": lambda m, a: m.count(a["slices"], "slice"),
    "tojson": lambda m, a: m.check(
        m.size(a["value"])
        * (
            6
            + m.nesting(a["value"])
            * (len(a["indent"]) if isinstance(a["indent"], str) else max(int(a["indent"] or 0), 0))
        ),
        "tojson",
    ),
    "urlize": lambda m, a: m.check(
        m.size(a["value"]) + (m.size(a["value"]) // 4 + 1) * (m.size(a["target"]) + m.size(a["rel"]) + 40), "urlize"
    ),
}


def _bounded_filter(meter: Meter, clock: Clock, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    passed = _PassArg.from_obj(func) is not None
    check = _FILTER_CHECKS.get(name)
    materialise = {"join": "value", "sum": "iterable"}.get(name)

    value_at = 1 if passed else 0  # where the filtered value is in the call (after what Jinja2 passes)
    binding: list[Any] = []  # [signature, skip], on the first call that binds (inspect costs 8 ms for all filters)

    def signature_and_skip() -> tuple[inspect.Signature, int]:
        if not binding:
            signature = inspect.signature(func)
            # A filter that Jinja2 passes a context, eval context or environment takes it first; an async
            # variant's signature (that of its sync function) may not show it, and it is then set aside for binding.
            first = next(iter(signature.parameters), "")
            binding[:] = [signature, 1 if passed and first not in ("context", "eval_ctx", "environment", "env")
                          else 0]
        return binding[0], binding[1]

    def bounded(*args: Any, **kwargs: Any) -> Any:
        clock.tick()
        if len(args) > value_at and isinstance(args[value_at], Iterator):
            # a lazy chain (`map`, `select`...) is made here, measured as it grows: `r | map(...) | list` can
            # no longer build gigabytes from items that are each allowed
            args = (*args[:value_at], meter.collect(args[value_at], f"the filter {name}"), *args[value_at + 1 :])
        if check is not None or materialise is not None:
            signature, skip = signature_and_skip()
            try:
                bound = signature.bind(*args[skip:], **kwargs)
            except TypeError:
                return func(*args, **kwargs)  # the filter's own error message
            bound.apply_defaults()
            a = bound.arguments
            if check is not None:
                check(meter, a)
            if materialise is not None and not (name == "sum" and isinstance(a["start"], (int, float))):
                sep = meter.size(a.get("d", ""))
                a[materialise] = meter.collect(a[materialise], name, sep)
                if name == "sum":
                    meter.check(meter.size(a[materialise]) + meter.size(a["start"]), name)
            result = func(*args[:skip], *bound.args, **bound.kwargs)
        else:
            result = func(*args, **kwargs)
        meter.check_value(result, f"the filter {name}")
        return result

    return update_wrapper(bounded, func)  # keeps jinja_pass_arg (context, eval_ctx, environment)


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, bounded in size and time (see render_limits.py for what is checked where)."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, limits: RenderLimits, **kwargs: Any) -> None:
        self.limits = limits
        self.meter = Meter(limits)
        self.clock = Clock(limits)  # per thread
        super().__init__(finalize=self._finalize, **kwargs)
        self.filters = {name: _bounded_filter(self.meter, self.clock, name, f) for name, f in self.filters.items()}
        meter = self.meter

        def lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # Jinja2's names
            meter.check(max * n * 16 if isinstance(n, int) and isinstance(max, int) else 0, "lipsum")
            return generate_lorem_ipsum(n, html, min, max)

        self.globals["lipsum"] = lipsum  # a plain function: its text shows nothing of the environment

        def bounded_range(*args: int) -> range:
            rng = range(*args)
            meter.count(len(rng), "range")  # the sandbox's own cap is the same, with a less clear message
            return rng

        self.globals["range"] = bounded_range

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        """Refuse an unsafe attribute at once. Jinja2 returns an undefined value that fails only when printed;
        inside a list (`[x] | map(attribute='__class__') | list`) it would print as "Undefined" instead."""
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe.")

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Every `{% for %}` iterates through bounded_iter, which checks the clock (a nest of empty loops
        calls nothing else that would)."""
        tree = super()._parse(source, name, filename)
        # Blocks that capture rendered text as a value: the capture holds the provenance markers of its lines,
        # which a template could then slice, edit and print to credit its lines to another layer. No catalog
        # fragment needs them (a plain {% set x = ... %} is fine).
        for kind, what in ((nodes.AssignBlock, "{% set %}...{% endset %}"), (nodes.FilterBlock, "{% filter %}"),
                           (nodes.CallBlock, "{% call %}"), (nodes.Macro, "{% macro %}")):
            for block in tree.find_all(kind):
                raise jinja2.TemplateSyntaxError(f"{what} is not allowed in catalog templates (its captured output "
                                          "could forge which layer produced a line)", block.lineno, name, filename)
        for loop in tree.find_all(nodes.For):
            where = [nodes.Const(name or "<string>"), nodes.Const(loop.lineno)]
            loop.iter = nodes.Call(
                nodes.EnvironmentAttribute("bounded_iter"), [loop.iter, *where], [], None, None, lineno=loop.lineno
            )
        return tree

    def bounded_iter(self, iterable: Iterable[Any], name: str, line: int) -> Iterator[Any]:
        clock = self.clock
        for i, item in enumerate(iterable):
            if not i & 63:
                clock.tick()
                clock.loop = (name, line)  # where the output grows when data lines repeat (see _collect)
            yield item

    def bounded_concat(self, items: tuple[Any, ...], markup: bool) -> str:
        self.clock.tick()
        self.meter.concat(items)
        return markup_join(items) if markup else str_join(items)

    def _finalize(self, value: Any) -> Any:
        self.clock.tick()
        self.meter.check_value(value, "an expression")
        if isinstance(value, str) and _EXPRESSION_CONTROL.search(value):
            # the provenance markers are control characters: an expression may not print one (nor any other
            # that a terminal or the kickstart parser would act on)
            raise SecurityError("an expression printed a control character "
                                f"({_EXPRESSION_CONTROL.search(value).group()!r}): not allowed in a kickstart")  # type: ignore[union-attr]
        return value

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        self.clock.tick()
        self.meter.binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(self, context: jinja2.runtime.Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.clock.tick()
        owner = getattr(obj, "__self__", None) if isinstance(obj, types.BuiltinMethodType) else None
        if isinstance(owner, str):
            if obj.__name__ == "join" and args:
                args = (self.meter.collect(args[0], "str.join", len(owner)), *args[1:])
            else:
                self.meter.str_method(owner, obj.__name__, args, kwargs)
        result = super().call(context, obj, *args, **kwargs)
        self.meter.check_value(result, "a call")
        return result

    def getattr(self, obj: Any, attribute: str) -> Any:
        self.clock.tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self.clock.tick()
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """str.format and str.format_map, through a formatter that checks widths and the total size."""
        if (
            not isinstance(value, (types.MethodType, types.BuiltinMethodType))
            or value.__name__ not in ("format", "format_map")
            or not isinstance(value.__self__, str)
        ):
            return None
        f_self: str = value.__self__
        is_format_map = value.__name__ == "format_map"
        env = self

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument and no keyword arguments")
                kwargs, args = args[0], ()
            if isinstance(f_self, Markup):
                formatter: _BoundedFormatter = _BoundedEscapeFormatter(env, escape=f_self.escape)
            else:
                formatter = _BoundedFormatter(env)
            env.meter.check(len(f_self), "str.format")
            return type(f_self)(formatter.vformat(f_self, args, kwargs))

        return update_wrapper(wrapper, value)


class FragmentRenderer:
    """Renders catalog fragments; one instance per catalog root (templates are compiled once and cached)."""

    def __init__(self, root: str | Path, limits: RenderLimits | None = None, *,
                 code_cache: Path | None = None) -> None:
        """*code_cache*: where compiled templates are kept between runs (template_cache.py); default
        $XDG_CACHE_HOME/ccis-workbench/templates."""
        self.root = Path(root)
        self.limits = limits or RenderLimits()
        self._loader = _CatalogLoader(self.root)
        self.code_cache = TemplateCodeCache(code_cache or cache_root() / "templates", self._template_id)
        self.env = _BoundedEnvironment(
            self.limits,
            loader=self._loader,
            bytecode_cache=self.code_cache,
            undefined=jinja2.StrictUndefined,
            extensions=[_LineMarker],
            autoescape=False,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._ids: dict[str, int] = {}
        self._names: list[str] = []
        self.env.template_id = self._template_id  # type: ignore[attr-defined]

    def _template_id(self, name: str) -> int:
        if name not in self._ids:
            self._ids[name] = len(self._names)
            self._names.append(name)
        return self._ids[name]

    def render(self, name: str, context: Mapping[str, Any]) -> list[SourceLine]:
        """Render template *name* (relative to the root) and return its lines with their sources.

        Bounded: the output, and any value built on the way, is at most `limits.max_output` characters, and the
        render takes at most `limits.max_seconds` (a TemplateError naming the file and line otherwise).
        """
        clock = self.env.clock
        clock.start()
        try:
            template = self.env.get_template(name)
            text = self._collect(template.generate(**context))
        except LimitExceeded as exc:
            file, line = self._locate(exc, name)
            raise TemplateError(exc.title, exc.message, file=file, line=line, hint=exc.hint) from None
        except RecursionError as exc:
            file, line = self._locate(exc, name)
            raise TemplateError(
                "Template too deep",
                "macros or includes call themselves too deeply",
                file=file,
                line=line,
                hint="a fragment needs no recursion; look for a macro or include that calls itself",
            ) from None
        except MemoryError as exc:
            file, line = self._locate(exc, name)
            raise TemplateError(
                "Template too large",
                "rendering ran out of memory",
                file=file,
                line=line,
                hint="a fragment renders a few kilobytes of kickstart; remove the repetition",
            ) from None
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                "Template syntax error",
                exc.message or "invalid template syntax",
                file=self._display(exc.name or name),
                line=exc.lineno,
                hint="see https://jinja.palletsprojects.com/templates/",
            ) from None
        except jinja2.TemplateNotFound as exc:
            file, line = self._locate(exc, name)  # an {% include %} of a missing file: the include's line
            raise TemplateError(
                "Template not found", f"{exc.name} does not exist in the catalog", file=file, line=line
            ) from None
        except jinja2.UndefinedError as exc:
            file, line = self._locate(exc, name)
            raise TemplateError(
                "Undefined template variable",
                str(exc),
                file=file,
                line=line,
                hint="use a variable the catalog defines (see README, 'Template variables')",
            ) from None
        except SecurityError as exc:
            file, line = self._locate(exc, name)
            raise TemplateError(
                "Unsafe template",
                f"the sandbox refused: {exc}",
                file=file,
                line=line,
                hint="templates may only use plain values and filters",
            ) from None
        except WorkbenchError as exc:  # e.g. an included file that is binary or too large
            if exc.location is not None:
                exc.location.file = self._display(exc.location.file)
            raise
        except Exception as exc:  # noqa: BLE001 - any other failure inside a template is the template's
            file, line = self._locate(exc, name)
            raise TemplateError("Template error", f"{type(exc).__name__}: {exc}", file=file, line=line) from None
        finally:
            clock.stop()
        return self._split(text)

    def _collect(self, chunks: Iterator[str]) -> str:
        """Join the rendered chunks, stopping at the size limit (located by the line markers near the cut)."""
        parts: list[str] = []
        total = 0
        cap = self.limits.max_output
        for chunk in chunks:
            total += len(chunk)
            if total > cap:
                mark = _MARK_RX.search(chunk, max(0, len(chunk) - (total - cap)))
                for _, later in zip(range(16), chunks, strict=False):  # an expression's line: the next marker
                    mark = mark or _MARK_RX.search(later)
                loop = self.env.clock.loop
                if mark is None and loop is None:
                    for part in reversed(parts):
                        mark = mark or _last_mark(part)
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
                file, line = (self._names[int(mark.group(1))], int(mark.group(2))) if mark else loop or ("", 0)
                err = too_large(self.limits, "the rendered layer")
                raise TemplateError(err.title, err.message, file=file or None, line=line, hint=err.hint)
            parts.append(chunk)
        return "".join(parts)

    def _display(self, name: str) -> str:
        p = Path(name)
        if p.is_absolute():
            try:
                return str(p.relative_to(self.root.resolve()))
            except ValueError:
                return str(p)
        return name

    def _locate(self, exc: BaseException, name: str) -> tuple[str, int]:
        """Find the innermost template frame of a rendering failure (Jinja2 rewrites frames to templates)."""
        file, line = name, 0
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename in self._loader.filenames or frame.filename == name:
                file, line = self._display(frame.filename), frame.lineno or 0
        return file, line

    def _split(self, text: str) -> list[SourceLine]:
        lines: list[SourceLine] = []
        pending: list[str] = []
        for raw in text.split("\n"):
            m = _MARK_RX.search(raw)
            if m is None:
                pending.append(raw)
                continue
            file = self._names[int(m.group(1))]
            line = int(m.group(2))
            clean = _MARK_RX.sub("", raw)
            for p in pending:  # lines produced inside an expression belong to the expression's line
                lines.append(SourceLine(p, file, line))
            pending = []
            lines.append(SourceLine(clean, file, line))
        if pending and pending != [""]:
            last = lines[-1] if lines else None
            for p in pending:
                if p:
                    lines.append(SourceLine(p, last.file if last else "", last.line if last else 0))
        return lines

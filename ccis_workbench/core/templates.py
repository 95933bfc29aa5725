"""Kickstart fragments are Jinja2 templates rendered in the sandbox, with line provenance.

Provenance trick: a Jinja2 extension rewrites the token stream so that every newline in template *data*
carries an invisible marker naming the template and the source line it came from. After rendering, each output
line ends with the marker of the template line that produced it (lines made inside an expression take the
marker of the line that follows them, which is the expression's own line). The markers are then stripped and
kept as a list of (file, line) per output line. Loops and includes are handled for free: a loop repeats its
line's marker, an included template carries its own name.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.ext import Extension
from jinja2.lexer import Token, TokenStream
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from ccis_workbench.core.errors import TemplateError, WorkbenchError
from ccis_workbench.core.textfile import read_text

_MARK_OPEN = "\x1e"
_MARK_CLOSE = "\x1f"
_MARK_RX = re.compile("\x1e(\\d+):(\\d+)\x1f")


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

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Any]:
        path = (self.root / template).resolve()
        try:
            path.relative_to(self.root.resolve())
        except ValueError:
            raise jinja2.TemplateNotFound(template) from None
        if not path.is_file():
            raise jinja2.TemplateNotFound(template)
        text = read_text(path, what="template")
        mtime = path.stat().st_mtime
        return text, str(path), lambda: path.exists() and path.stat().st_mtime == mtime


class FragmentRenderer:
    """Renders catalog fragments; one instance per catalog root (templates are compiled once and cached)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.env = SandboxedEnvironment(
            loader=_CatalogLoader(self.root),
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
        """Render template *name* (relative to the root) and return its lines with their sources."""
        try:
            template = self.env.get_template(name)
            text = template.render(**context)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError("Template syntax error", exc.message or "invalid template syntax",
                                file=self._display(exc.name or name), line=exc.lineno,
                                hint="see https://jinja.palletsprojects.com/templates/") from None
        except jinja2.TemplateNotFound as exc:
            raise TemplateError("Template not found", f"{exc.name} does not exist under {self.root}",
                                file=self._display(name)) from None
        except jinja2.UndefinedError as exc:
            file, line = self._locate(exc, name)
            raise TemplateError("Undefined template variable", str(exc), file=file, line=line,
                                hint="use a variable the catalog defines (see README, 'Template variables')"
                                ) from None
        except SecurityError as exc:
            file, line = self._locate(exc, name)
            raise TemplateError("Unsafe template", f"the sandbox refused: {exc}", file=file, line=line,
                                hint="templates may only use plain values and filters") from None
        except WorkbenchError as exc:  # e.g. an included file that is binary or too large
            if exc.location is not None:
                exc.location.file = self._display(exc.location.file)
            raise
        except Exception as exc:  # noqa: BLE001 - any other failure inside a template is the template's
            file, line = self._locate(exc, name)
            raise TemplateError("Template error", f"{type(exc).__name__}: {exc}", file=file, line=line) from None
        return self._split(text)

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
        root = str(self.root.resolve())
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename.startswith(root) or frame.filename == name:
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

"""Safe YAML loading that remembers where every key and list item came from.

Catalog and profile errors must name the line; PyYAML forgets marks once it builds Python objects, so the
loader below builds `LineDict`/`LineList` that keep them. Duplicate keys are an error (YAML would silently keep
the last one, the very loss this project exists to report).
"""

from __future__ import annotations

from typing import Any

import yaml

from ccis_workbench.core.errors import CatalogError
from ccis_workbench.core.textfile import read_text

try:  # the C scanner is about 5x faster; the constructor below stays Python either way
    _BaseLoader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing
    _BaseLoader = yaml.SafeLoader


class LineDict(dict):  # type: ignore[type-arg]
    """A mapping with `line` (its own first line) and `key_lines` (key -> 1-based line)."""

    line: int = 0
    key_lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list):  # type: ignore[type-arg]
    """A sequence with `line` and `item_lines` (index -> 1-based line)."""

    line: int = 0
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


class _LineLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    filename = "<yaml>"


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise CatalogError("YAML error", "a mapping key must be a plain value",
                               file=loader.filename, line=key_node.start_mark.line + 1) from None
        if key in result:
            raise CatalogError("Duplicate key", f"key {key!r} appears twice in the same mapping",
                               file=loader.filename, line=key_node.start_mark.line + 1,
                               hint=f"first defined on line {result.key_lines[key]}; keep one")
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml_text(text: str, filename: str) -> Any:
    """Parse YAML *text* (safe tags only) into LineDict/LineList values; errors name *filename*:line."""
    loader = _LineLoader(text)
    loader.filename = filename
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        problem = exc.problem or "invalid YAML"
        if exc.context:
            problem = f"{exc.context}: {problem}"
        raise CatalogError("YAML syntax error", problem, file=filename, line=line,
                           hint="check indentation and quoting on that line") from None
    except yaml.YAMLError as exc:
        raise CatalogError("YAML error", str(exc), file=filename) from None
    finally:
        loader.dispose()


def load_yaml_file(path: str, *, what: str = "YAML file") -> Any:
    """Read and parse a YAML file; see load_yaml_text."""
    return load_yaml_text(read_text(path, what=what), path)

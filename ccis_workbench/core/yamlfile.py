"""Safe YAML loading that remembers where every key and list item came from.

Catalog and profile errors must name the line; PyYAML forgets marks once it builds Python objects, so the
loader below builds `LineDict`/`LineList` that keep them. Duplicate keys are an error (YAML would silently keep
the last one, the very loss this project exists to report).

Catalog files are untrusted input (reviewers run contributors' branches): before any Python object is built,
the node graph is checked against small budgets, so that a few hundred bytes of nested aliases (a "billion
laughs") or deep nesting cannot cost minutes and gigabytes in whatever later walks or prints the values.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from ccis_workbench.core.errors import CatalogError
from ccis_workbench.core.textfile import describe_char, find_control, read_text, refuse_controls

try:  # the C scanner is about 5x faster; the constructor below stays Python either way
    _BaseLoader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing
    _BaseLoader = yaml.SafeLoader


#: Aliases (re-uses of an anchored node) one document may contain; the shipped catalog uses none.
MAX_YAML_ALIASES = 100
#: The size of a document with every alias expanded: one per node plus the characters of each scalar. A file
#: without aliases stays under its own size in bytes, so this only stops expansion.
MAX_YAML_EXPANDED = 4 * 1024 * 1024
#: Nesting depth of mappings and sequences.
MAX_YAML_DEPTH = 64
#: Digits of a whole number (Python refuses to convert more than 4,300; no catalog value needs more than a few).
MAX_YAML_INT_CHARS = 64

_INT_TAG = "tag:yaml.org,2002:int"


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


def _children(node: yaml.Node) -> list[tuple[yaml.Node, int]]:
    """The child nodes of a collection with the line an alias among them would be written on."""
    if isinstance(node, yaml.MappingNode):
        out = []
        for key, value in node.value:
            line = key.start_mark.line + 1  # `key: *alias` is on the key's line
            out.append((key, line))
            out.append((value, line))
        return out
    if isinstance(node, yaml.SequenceNode):
        return [(child, node.start_mark.line + 1) for child in node.value]
    return []


def check_node_budget(root: yaml.Node, filename: str) -> None:
    """Refuse a composed YAML node graph that is recursive, too deep, uses too many aliases, expands beyond
    MAX_YAML_EXPANDED, or holds a whole number too long to convert or a control character; every error names
    *filename*:line.

    Iterative (no recursion limit to hit) and linear in the number of distinct nodes plus aliases."""
    size: dict[int, int] = {}  # id(node) -> expanded size, for nodes already finished
    open_nodes: set[int] = set()  # nodes whose children are being walked (an alias to one is a cycle)
    aliases = 0
    # (node, depth, line an alias to it would be on, its children once they are being walked)
    stack: list[tuple[yaml.Node, int, int, list[tuple[yaml.Node, int]] | None]] = [
        (root, 1, root.start_mark.line + 1, None)]
    while stack:
        node, depth, ref_line, children = stack.pop()
        key = id(node)
        if children is not None:  # all its children are done
            open_nodes.discard(key)
            total = 1 + sum(size[id(child)] for child, _ in children)
            if total > MAX_YAML_EXPANDED:
                raise CatalogError("YAML too large", f"with its aliases expanded this value would be over "
                                   f"{MAX_YAML_EXPANDED // (1024 * 1024)} million nodes and characters",
                                   file=filename, line=node.start_mark.line + 1,
                                   hint="write the values out instead of nesting aliases")
            size[key] = total
            continue
        if key in open_nodes:
            raise CatalogError("YAML error", "an alias refers to a collection that contains it (a recursive value)",
                               file=filename, line=ref_line, hint="aliases must not refer to an enclosing anchor")
        if key in size:
            aliases += 1
            if aliases > MAX_YAML_ALIASES:
                raise CatalogError("Too many YAML aliases", f"over {MAX_YAML_ALIASES} aliases (*name) in one file",
                                   file=filename, line=ref_line, hint="write the values out instead of aliases")
            continue
        if depth > MAX_YAML_DEPTH:
            raise CatalogError("YAML too deep", f"mappings and lists are nested over {MAX_YAML_DEPTH} levels deep",
                               file=filename, line=node.start_mark.line + 1,
                               hint="catalog files need a few levels at most")
        if isinstance(node, yaml.ScalarNode):
            _check_scalar_node(node, filename)
            size[key] = 1 + len(node.value)
            continue
        open_nodes.add(key)
        children = _children(node)
        stack.append((node, depth, ref_line, children))
        stack.extend((child, depth + 1, child_line, None) for child, child_line in reversed(children))


def _check_scalar_node(node: yaml.ScalarNode, filename: str) -> None:
    value = node.value
    if node.tag == _INT_TAG and len(value) > MAX_YAML_INT_CHARS:
        raise CatalogError("Invalid value", f"a whole number of {len(value)} characters is too large",
                           file=filename, line=node.start_mark.line + 1,
                           hint="no catalog value needs more than a few digits")
    found = find_control(value)  # also what "\x1e" or "\e" escapes in a quoted string make
    if found is not None:
        line = node.start_mark.line + 1
        literal = node.style == "|"  # its lines are the file's; in other styles, escapes and folding
        raise CatalogError("Control character", f"a value contains the control character "
                           f"{describe_char(found[2])}; only tab and newline are allowed", file=filename,
                           line=line + found[0] if literal else line, hint="remove the character")


def load_yaml_text(text: str, filename: str) -> Any:
    """Parse YAML *text* (safe tags only) into LineDict/LineList values; errors name *filename*:line.

    The composed node graph passes check_node_budget before any object is constructed."""
    refuse_controls(text, filename, what="YAML text")  # libyaml refuses them too, but without a line
    loader = _LineLoader(text)
    loader.filename = filename
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        check_node_budget(node, filename)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        problem = exc.problem or "invalid YAML"
        if exc.context:
            problem = f"{exc.context}: {problem}"
        opened, found = exc.context_mark, exc.problem_mark
        if opened is not None and found is not None and found.line > opened.line and found.column == 0:
            # an unclosed [ or quote: the parser notices at the start of a later line (or the end of the file);
            # the mistake is on the line that opened it
            line = opened.line + 1
            problem += f" (opened on line {line}, still open at line {found.line + 1})"
        raise CatalogError("YAML syntax error", problem, file=filename, line=line,
                           hint="check indentation and quoting on that line") from None
    except yaml.YAMLError as exc:
        raise CatalogError("YAML error", str(exc), file=filename) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # a value no constructor can build
        raise CatalogError("YAML error", f"a value cannot be read: {type(exc).__name__}", file=filename,
                           hint="check the tags (!!...) and numbers in the file") from None
    finally:
        loader.dispose()


def load_yaml_file(path: str, *, what: str = "YAML file", within: str | os.PathLike[str] | None = None) -> Any:
    """Read and parse a YAML file; see load_yaml_text. Given the catalog root *within*, the file must resolve
    inside it (a symbolic link out of the catalog is refused without being read)."""
    return load_yaml_text(read_text(path, what=what, within=within), path)

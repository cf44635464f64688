"""Edits of a settings document for `gpulab config set|unset|add-item|remove-item`.

Pure functions over ruamel's round-trip document, so comments and key order in a
hand-edited gpulab.yaml survive an edit from the command line.
"""

from __future__ import annotations

import io
import re
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq


class EditError(Exception):
    """An edit that cannot be made as asked; the message says why."""


def split_key(key: str) -> list[str]:
    parts = key.split(".")
    if not key or any(not part for part in parts):
        raise EditError(f"{key!r} is not a key path; use dots between keys, e.g. hub.port")
    return parts


def parse_value(text: str) -> Any:
    """A command-line value read as YAML: `8000` is a number, `true` a boolean, `[a, b]` a list."""
    if text == "":
        return ""
    try:
        return YAML(typ="safe").load(text)
    except Exception:
        return text


def _child(node: Any, part: str, where: str, create: bool) -> Any:
    """`node[part]`, where a list takes an item number (`profiles.1.idle_timeout`)."""
    if isinstance(node, list):
        if not part.isdigit():
            raise EditError(f"{where} is a list: name an item by its number, from 0 (e.g. {where}.0)")
        if int(part) >= len(node):
            raise EditError(f"{where}.{part} is not set: {where} has {len(node)} item(s), numbered from 0")
        return node[int(part)]
    if part not in node and create:
        node[part] = CommentedMap()
    return node.get(part)


def _parent(doc: CommentedMap, parts: list[str], create: bool) -> Any:
    """The mapping (or list) that holds the last part of the key path."""
    node: Any = doc
    for i, part in enumerate(parts[:-1]):
        where = ".".join(parts[:i])
        child = _child(node, part, where, create)
        if not isinstance(child, (dict, list)):
            where = ".".join(parts[: i + 1])
            raise EditError(f"{where} is not a mapping" if child is not None else f"{where} is not set")
        node = child
    return node


def _last(parent: Any, parts: list[str]) -> Any:
    """The key (or list index) the edit applies to within `parent`."""
    if not isinstance(parent, list):
        return parts[-1]
    where = ".".join(parts[:-1])
    part = parts[-1]
    if not part.isdigit():
        raise EditError(f"{where} is a list: name an item by its number, from 0 (e.g. {where}.0)")
    if int(part) >= len(parent):
        raise EditError(f"{where}.{part} is not set: {where} has {len(parent)} item(s), numbered from 0")
    return int(part)


def set_value(doc: CommentedMap, key: str, value: Any) -> None:
    parts = split_key(key)
    parent = _parent(doc, parts, create=True)
    parent[_last(parent, parts)] = value


def unset_value(doc: CommentedMap, key: str) -> None:
    parts = split_key(key)
    parent = _parent(doc, parts, create=False)
    if isinstance(parent, dict) and parts[-1] not in parent:
        raise EditError(f"{key} is not set")
    del parent[_last(parent, parts)]


def add_item(doc: CommentedMap, key: str, value: Any) -> None:
    parts = split_key(key)
    parent = _parent(doc, parts, create=True)
    if isinstance(parent, dict):
        parent.setdefault(parts[-1], CommentedSeq())
    items = parent[_last(parent, parts)]
    if not isinstance(items, list):
        raise EditError(f"{key} is not a list")
    if value not in items:
        items.append(value)


def remove_item(doc: CommentedMap, key: str, value: Any) -> None:
    parts = split_key(key)
    parent = _parent(doc, parts, create=False)
    items = parent.get(parts[-1]) if isinstance(parent, dict) else parent[_last(parent, parts)]
    if not isinstance(items, list) or value not in items:
        raise EditError(f"{value!r} is not in {key}")
    items.remove(value)


_KEY_LINE = re.compile(r"^( *)([^\s#-][^:#]*):\s*(#.*)?$")  # "key:" opening a nested block
_ITEM_LINE = re.compile(r"^( *)- ")


def guess_indentation(text: str) -> tuple[int, int]:
    """(mapping indent, offset of a list's "- " under its key) as the file already uses them,
    so an edit rewrites no line it did not change; 2 and 2 for a new file."""
    mapping, offset = None, None
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    for line, following in zip(lines, lines[1:]):
        opened = _KEY_LINE.match(line)
        if not opened:
            continue
        step = len(following) - len(following.lstrip(" ")) - len(opened.group(1))
        if _ITEM_LINE.match(following):
            offset = step if offset is None and step >= 0 else offset
        elif step > 0 and mapping is None:
            mapping = step
    return mapping or 2, 2 if offset is None else offset


def dump(doc: Any, like: str = "") -> str:
    """The document as YAML, indented like `like` (the file's text before the edit); long
    flow mappings stay on one line and quotes stay as written (settings.parse_yaml keeps them)."""
    mapping, offset = guess_indentation(like)
    yaml = YAML(typ="rt")
    yaml.width = 4096
    yaml.indent(mapping=mapping, sequence=offset + 2, offset=offset)
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def mask_secrets(values: Any, secrets: set[tuple], prefix: tuple = ()) -> Any:
    """A copy of `values` with every non-empty secret replaced by a marker."""
    if isinstance(values, dict):
        return {k: mask_secrets(v, secrets, prefix + (k,)) for k, v in values.items()}
    if prefix in secrets and values:
        return "(hidden)"
    return values

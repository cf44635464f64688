"""Edits of a settings document for `gpulab config set|unset|add-item|remove-item`.

Pure functions over ruamel's round-trip document, so comments and key order in a
hand-edited gpulab.yaml survive an edit from the command line.
"""

from __future__ import annotations

import io
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


def _parent(doc: CommentedMap, parts: list[str], create: bool) -> CommentedMap:
    node = doc
    for i, part in enumerate(parts[:-1]):
        if part not in node and create:
            node[part] = CommentedMap()
        child = node.get(part)
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise EditError(f"{where} is not a mapping" if child is not None else f"{where} is not set")
        node = child
    return node


def set_value(doc: CommentedMap, key: str, value: Any) -> None:
    parts = split_key(key)
    _parent(doc, parts, create=True)[parts[-1]] = value


def unset_value(doc: CommentedMap, key: str) -> None:
    parts = split_key(key)
    parent = _parent(doc, parts, create=False)
    if parts[-1] not in parent:
        raise EditError(f"{key} is not set")
    del parent[parts[-1]]


def add_item(doc: CommentedMap, key: str, value: Any) -> None:
    parts = split_key(key)
    parent = _parent(doc, parts, create=True)
    items = parent.setdefault(parts[-1], CommentedSeq())
    if not isinstance(items, list):
        raise EditError(f"{key} is not a list")
    if value not in items:
        items.append(value)


def remove_item(doc: CommentedMap, key: str, value: Any) -> None:
    parts = split_key(key)
    items = _parent(doc, parts, create=False).get(parts[-1])
    if not isinstance(items, list) or value not in items:
        raise EditError(f"{value!r} is not in {key}")
    items.remove(value)


def dump(doc: Any) -> str:
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
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

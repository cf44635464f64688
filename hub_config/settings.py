"""Load, validate and complete gpulab.yaml.

The schema is a folder of YAML files (one per section) that `bundled_schema()` inlines
into one JSON Schema document. A settings file goes through four pure steps after it
is read: parse (with line numbers), merge command-line overrides, validate (every
problem names the key path, the value and what was expected), fill defaults, and
resolve relative paths against the file's folder.
"""

from __future__ import annotations

import copy
import functools
import io
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import jsonschema
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

if TYPE_CHECKING:  # pydantic is imported where settings are loaded, not by every importer of this module
    from .typed_settings import Settings

SCHEMA_PACKAGE = "gpulab.hub_config.schema"
ROOT_SCHEMA = "gpulab.schema.yaml"
DEFAULT_FILENAME = "gpulab.yaml"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a settings file."""

    path: str
    message: str
    line: int | None = None

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        return f"{where}: {self.path or '(top level)'}: {self.message}"


class ConfigError(Exception):
    """Settings that must not start a hub. `str()` lists every problem, one a line."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(p.render(source) for p in problems))


@dataclass(frozen=True)
class LoadedSettings:
    """Validated settings with defaults filled and paths made absolute: `settings`, typed and
    frozen, is what code reads; `values`, the same as a plain dict, is for what still takes
    one (`gpulab config show`, `gpulab config set`)."""

    values: dict
    source: Path | None
    config_dir: Path
    problems: list[Problem] = field(default_factory=list)
    settings: Settings = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from .typed_settings import Settings

        object.__setattr__(self, "settings", Settings.from_values(self.values))

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.hub.data_dir)


# ---------------------------------------------------------------- schema


@functools.cache
def bundled_schema() -> dict:
    """The whole schema as one document: every `$ref: file.yaml` replaced by that file."""
    folder = resources.files(SCHEMA_PACKAGE)
    yaml = YAML(typ="safe")

    def inline(node):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.endswith(".yaml"):
                return inline(yaml.load(folder.joinpath(ref).read_text()))
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return inline(yaml.load(folder.joinpath(ROOT_SCHEMA).read_text()))


def subschema(schema: dict, path: list[str]) -> dict | None:
    """The schema of the key at `path`, or None when no such key is declared."""
    node = schema
    for key in path:
        props = node.get("properties", {})
        if key in props:
            node = props[key]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return None
    return node


def secret_paths(schema: dict, prefix: tuple = ()) -> set[tuple]:
    """Key paths marked `writeOnly` (secrets): masked whenever settings are shown."""
    found = set()
    if schema.get("writeOnly"):
        found.add(prefix)
    for key, sub in schema.get("properties", {}).items():
        found |= secret_paths(sub, prefix + (key,))
    return found


# ---------------------------------------------------------------- parsing


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    yaml.preserve_quotes = True  # `gpulab config set` writes back what it read, quotes as written
    return yaml


def parse_yaml(text: str, source: str = DEFAULT_FILENAME) -> CommentedMap:
    """Parse settings text, keeping line numbers. Raises ConfigError on invalid YAML."""
    try:
        doc = _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        path = _path_before_error(text, (mark.line, mark.column) if mark else None)
        problem = (exc.problem or str(exc)).strip()
        if "duplicate key" in str(exc):
            problem = f"duplicate key {str(exc).split('duplicate key')[1].split(' with')[0].strip()}"
        message = f"invalid YAML: {problem}" + (f" (column {mark.column + 1})" if mark else "")
        raise ConfigError(source, [Problem(path, message, line)]) from None
    if doc is None:
        return CommentedMap()
    if not isinstance(doc, dict):
        raise ConfigError(source, [Problem("", f"expected a mapping of settings, got {_kind(doc)}", 1)])
    return cast(CommentedMap, doc)  # (ruamel's round-trip loader makes every mapping one)


def _path_before_error(text: str, stop_at: tuple[int, int] | None = None) -> str:
    """The key path the parser had reached at `stop_at` (line, column; 0-based) or where it failed."""
    stack: list[list] = []  # [kind, key-or-index, expecting_key]
    names = {"MappingStartEvent", "SequenceStartEvent", "MappingEndEvent", "SequenceEndEvent",
             "ScalarEvent", "AliasEvent"}

    def consumed_value():
        if stack and stack[-1][0] == "map":
            stack[-1][2] = True
        elif stack and stack[-1][0] == "seq":
            stack[-1][1] += 1

    try:
        for event in YAML(typ="safe").parse(io.StringIO(text)):
            name = type(event).__name__
            if name not in names:
                continue
            if stop_at and (event.start_mark.line, event.start_mark.column) >= stop_at:
                break
            if name == "ScalarEvent" and stack and stack[-1][0] == "map" and stack[-1][2]:
                stack[-1][1], stack[-1][2] = event.value, False
            elif name in ("ScalarEvent", "AliasEvent"):
                consumed_value()
            elif name == "MappingStartEvent":
                stack.append(["map", None, True])
            elif name == "SequenceStartEvent":
                stack.append(["seq", 0, False])
            else:
                stack.pop()
                consumed_value()
    except MarkedYAMLError:
        pass
    parts = []
    for kind, key, expecting_key in stack:
        if kind == "map" and key is not None:
            parts.append(str(key))
        elif kind == "seq":
            parts.append(f"[{key}]")
    return ".".join(parts).replace(".[", "[")


def plain(node: Any) -> Any:
    """ruamel's round-trip containers as plain dicts and lists."""
    if isinstance(node, dict):
        return {str(key): plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [plain(item) for item in node]
    return node


def _line_of(doc: Any, path: list) -> int | None:
    """1-based line of the key at `path` in a round-trip document (the deepest one found)."""
    line = None
    node = doc
    for key in path:
        if isinstance(node, CommentedMap) and key in node:
            line = node.lc.key(key)[0] + 1
            node = node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and key < len(node):
            line = node.lc.item(key)[0] + 1
            node = node[key]
        else:
            break
    return line


# ---------------------------------------------------------------- validation


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _expected_type(schema: dict) -> str:
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    words = {"integer": "an integer", "number": "a number", "string": "a string",
             "boolean": "true or false", "array": "a list", "object": "a mapping", "null": "null"}
    text = " or ".join(words.get(k, str(k)) for k in kinds)
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        text += f" from {low} to {high}"
    elif low is not None:
        text += f" of at least {low}"
    elif high is not None:
        text += f" of at most {high}"
    return text


def _show(value: Any, secret: bool) -> str:
    if secret:
        return "(hidden)"
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(error: jsonschema.ValidationError, secrets: set[tuple]) -> list[tuple[list, str]]:
    """(path, message) pairs for one jsonschema error, in words a person can act on."""
    path = list(error.absolute_path)
    schema = error.schema
    value = error.instance
    shown = _show(value, tuple(path) in secrets)
    hint = ""
    if isinstance(schema.get("description"), str):
        hint = " — " + schema["description"].split(". ")[0].rstrip(".") + "."
    kind = error.validator
    if "propertyNames" in error.relative_schema_path or "propertyNames" in error.schema_path:
        return [(path + [str(value)], f"not an allowed key name (expected one matching {schema.get('pattern')})")]
    if kind == "additionalProperties" and isinstance(value, dict):
        declared = list(schema.get("properties", {}))
        extras = [k for k in value if k not in declared]
        return [(path + [k], f"unknown key (expected one of: {', '.join(declared)})") for k in extras]
    if kind == "type":
        return [(path, f"got {shown} ({_kind(value)}), expected {_expected_type(schema)}{hint}")]
    if kind in ("enum", "const"):
        options = schema.get("enum", [schema.get("const")])
        return [(path, f"got {shown}, expected one of: {', '.join(map(str, options))}{hint}")]
    if kind in ("minimum", "maximum"):
        return [(path, f"got {shown}, expected {_expected_type({**schema, 'type': 'number'})}{hint}")]
    if kind == "minLength" and error.validator_value == 1:
        return [(path, f"got {shown}, expected a non-empty string{hint}")]
    if kind == "pattern":
        return [(path, f"got {shown}, expected a string matching {error.validator_value}{hint}")]
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return [(path + [missing], "missing (required)")]
    if kind == "uniqueItems":
        return [(path, f"got {shown}, expected no repeated items")]
    return [(path, f"got {shown}: {error.message}")]


def validate(values: dict, schema: dict | None = None, doc: Any = None) -> list[Problem]:
    """Every problem in `values`, sorted by where it is in the file."""
    schema = schema or bundled_schema()
    secrets = secret_paths(schema)
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in validator.iter_errors(values):
        leaves = [error]
        if error.validator in ("allOf", "anyOf", "oneOf") and error.context:
            leaves = error.context
        for leaf in leaves:
            for path, message in _describe(leaf, secrets):
                dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
                problems.append(Problem(dotted, message, _line_of(doc, path) if doc is not None else None))
    unique = {(p.path, p.message): p for p in problems}
    return sorted(unique.values(), key=lambda p: (p.line or 0, p.path))


# ---------------------------------------------------------------- completion


def with_defaults(schema: dict, values: Any) -> Any:
    """A copy of `values` with every missing key that has a default filled in (in list items too)."""
    if schema.get("type") == "array" and isinstance(values, list) and isinstance(schema.get("items"), dict):
        return [with_defaults(schema["items"], item) for item in values]
    if schema.get("type") != "object" or not isinstance(values, dict):
        return copy.deepcopy(values)
    out = copy.deepcopy(values)
    for key, sub in schema.get("properties", {}).items():
        if key in out:
            out[key] = with_defaults(sub, out[key])
        elif "default" in sub:
            out[key] = with_defaults(sub, copy.deepcopy(sub["default"]))
        elif sub.get("type") == "object" and "properties" in sub:
            out[key] = with_defaults(sub, {})
    return out


def resolve_paths(schema: dict, values: Any, base: Path) -> Any:
    """Make every non-empty value declared `format: path` absolute, relative to `base`."""
    if isinstance(values, dict) and schema.get("type") == "object":
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {k: resolve_paths(props[k], v, base) if k in props
                else resolve_paths(extra, v, base) if isinstance(extra, dict) else v
                for k, v in values.items()}
    if isinstance(values, list) and isinstance(schema.get("items"), dict):
        return [resolve_paths(schema["items"], item, base) for item in values]
    if schema.get("format") == "path" and isinstance(values, str) and values:
        return str((base / Path(values).expanduser()).resolve())
    return values


def deep_merge(base: dict, overrides: dict) -> dict:
    """`overrides` on top of `base`; nested mappings merge, everything else replaces."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def complete(values: dict, config_dir: Path, schema: dict | None = None) -> dict:
    """Defaults filled and paths resolved: what `Settings.from_values` (and so apply_config) expects."""
    schema = schema or bundled_schema()
    values = with_defaults(schema, values)
    if isinstance(values, dict) and isinstance(values.get("profiles"), list):
        from gpulab.compute.profiles import with_profile_ids

        values["profiles"] = with_profile_ids(values["profiles"])
    return resolve_paths(schema, values, config_dir)


def load_settings(path: Path | None, overrides: dict | None = None) -> LoadedSettings:
    """Read, validate and complete a settings file (or only defaults when path is None).

    `overrides` (from the command line) are merged on top before validation, so a bad
    override is reported like a bad file. Raises ConfigError listing every problem.
    """
    source = str(path) if path else DEFAULT_FILENAME
    doc: Any = CommentedMap()
    if path is not None:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(source, [Problem("", f"cannot read the file: {exc.strerror}")]) from None
        doc = parse_yaml(text, source)
    values = deep_merge(plain(doc), overrides or {})
    problems = validate(values, doc=doc)
    if problems:
        raise ConfigError(source, problems)
    config_dir = path.parent.resolve() if path else Path.cwd()
    loaded = LoadedSettings(complete(values, config_dir), path, config_dir)
    problems = cross_check(loaded.settings, doc)
    if problems:
        raise ConfigError(source, problems)
    return loaded


# Rules JSON Schema cannot express (a default profile that exists, environment ids that are
# in the catalog, ...): "module:function" names, imported when settings are loaded, each
# returning Problems for the typed settings.
CROSS_CHECKS = ["gpulab.spawner.checks:check_settings"]


def cross_check(s: Settings, doc: Any = None) -> list[Problem]:
    import importlib

    problems = []
    for name in CROSS_CHECKS:
        module, _, function = name.partition(":")
        for problem in getattr(importlib.import_module(module), function)(s):
            line = _line_of(doc, _path_parts(problem.path)) if doc is not None else None
            problems.append(Problem(problem.path, problem.message, problem.line or line))
    return problems


def _path_parts(dotted: str) -> list:
    parts: list = []
    for piece in dotted.replace("[", ".[").split("."):
        if piece.startswith("[") and piece.endswith("]"):
            parts.append(int(piece[1:-1]))
        elif piece:
            parts.append(piece)
    return parts

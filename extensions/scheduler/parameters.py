"""Notebook parameters read exactly as Papermill's command line reads them (pure, no I/O).

Papermill merges its options in a fixed order, later ones winning: `-b` (base64 YAML),
`-f` (YAML files), `-y` (YAML), `-p` (a value whose type is inferred: int, float,
True/False/None, else the string itself) and `-r` (the raw string). Its YAML never makes
dates (`2024-01-01` stays a string). gpulab keeps that order and those rules so that a
cron+papermill job moved to gpulab gets the same injected parameters cell.

Values then travel as JSON to the scheduler and the runner. A value Papermill injects as its
text (a YAML `!!binary`, the pairs of an `!!omap`) is sent as that text, and mapping keys as
strings, as Papermill writes them. NaN and infinity are refused: Papermill injects
`float('nan')`, but JSON (and PostgreSQL's JSON) has no such number to carry it.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any, Iterable

import yaml


class ParameterError(ValueError):
    """A parameter Papermill would not accept either, or one that cannot travel as JSON."""


class NoDatesLoader(yaml.SafeLoader):
    """YAML's safe loader without the implicit timestamp type, like Papermill's."""


NoDatesLoader.yaml_implicit_resolvers = {
    first: [resolver for resolver in resolvers if resolver[0] != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _converts(kind: type, value: str) -> bool:
    try:
        kind(value)
    except ValueError:
        return False
    return True


def infer(value: str) -> Any:
    """`-p NAME VALUE`: Papermill's inference (`int()` then `float()` as Python reads them)."""
    special = {"True": True, "False": False, "None": None}
    if value in special:
        return special[value]
    if _converts(int, value):
        return int(value)
    if _converts(float, value):
        return float(value)
    return value


def yaml_mapping(text: str | bytes, where: str) -> dict:
    """A YAML document of parameters (empty is none); `where` names it in errors."""
    try:
        found = yaml.load(text, Loader=NoDatesLoader)
    except yaml.YAMLError as error:
        raise ParameterError(f"{where}: not YAML ({_first_line(error)})") from None
    if found is None:
        return {}
    if not isinstance(found, dict):
        raise ParameterError(f"{where}: expected a YAML mapping of NAME: VALUE, got {type(found).__name__}")
    return found


def base64_mapping(text: str, where: str) -> dict:
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ParameterError(f"{where}: not base64") from None
    return yaml_mapping(decoded, where)


def split_pair(pair: str, option: str) -> tuple[str, str]:
    """`NAME=VALUE` (gpulab's spelling of Papermill's `NAME VALUE`)."""
    name, sep, value = pair.partition("=")
    if not sep or not name:
        raise ParameterError(f"{option} {pair!r}: expected NAME=VALUE, e.g. {option} lr=0.01")
    return name, value


def merge(*, base64_yaml: Iterable[str] = (), yaml_files: Iterable[tuple[str, str]] = (),
          yaml_texts: Iterable[str] = (), inferred: Iterable[str] = (), raw: Iterable[str] = ()) -> dict:
    """All parameter options in Papermill's order of precedence; `yaml_files` are (name, text) pairs."""
    found: dict = {}
    for text in base64_yaml:
        found.update(base64_mapping(text, f"-b {_short(text)}"))
    for name, text in yaml_files:
        found.update(yaml_mapping(text, f"-f {name}"))
    for text in yaml_texts:
        found.update(yaml_mapping(text, f"-y {_short(text)}"))
    for pair in inferred:
        name, value = split_pair(pair, "-p")
        found[name] = infer(value)
    for pair in raw:
        name, value = split_pair(pair, "-r")
        found[name] = value
    return checked(found)


def checked(parameters: dict) -> dict:
    """Names that can be assigned to, and values as JSON carries them (see the module's docstring)."""
    for name in parameters:
        if not isinstance(name, str) or not name.isidentifier():
            raise ParameterError(f"parameter name {name!r} is not a Python identifier")
    return {name: _portable(value, name) for name, value in parameters.items()}


def _portable(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            # Papermill injects float('nan'); JSON (and PostgreSQL's JSON) has no such value: refuse, never change it
            raise ParameterError(f"parameter {where}: {value} cannot be sent (JSON has no NaN or infinity)")
        return value
    if isinstance(value, dict):
        # Papermill writes every key as a string ({1: a} is {"1": "a"}), as JSON does
        return {str(key): _portable(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [_portable(item, f"{where}[{index}]") for index, item in enumerate(value)]
    return str(value)  # Papermill's last resort too: the value's text, quoted


def from_strings(parameters: dict | None) -> dict:
    """Parameters typed in a form as text (JupyterLab's job dialog): inferred like `papermill -p`."""
    return checked({name: infer(value) if isinstance(value, str) else value
                    for name, value in (parameters or {}).items()})


def _short(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__

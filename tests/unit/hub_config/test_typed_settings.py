"""The typed settings against the schema: every property is a field (and every field a
property) of the same type, enum and default; built from complete values they give those
values back, and nothing in them can be changed."""

from __future__ import annotations

import copy
import operator
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from gpulab.hub_config.settings import bundled_schema, complete
from gpulab.hub_config.typed_settings import Settings, plain

# Properties the schema leaves without a default that the loader always fills (settings.complete),
# so the model requires them.
FILLED_BY_THE_LOADER = {"profiles[].id"}

SCALARS = {"string": str, "integer": int, "boolean": bool}


def _args(annotation) -> tuple:
    return typing.get_args(annotation)


def _without_none(annotation):
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in _args(annotation) if a is not type(None)]
        if len(rest) < len(_args(annotation)):
            return rest[0] if len(rest) == 1 else typing.Union[tuple(rest)], True
    return annotation, False


def _unannotated(annotation):
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = _args(annotation)[0]
    return annotation


def type_problems(node: dict, annotation, path: str, absent_is_none: bool = False) -> list[str]:
    """Where `annotation` does not hold what the schema `node` allows (recursing into models);
    `absent_is_none`: a key with no default that may be left out is None in the model."""
    annotation = _unannotated(annotation)
    kinds = node.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    annotation, nullable = _without_none(annotation)
    annotation = _unannotated(annotation)
    if ("null" in kinds or absent_is_none) != nullable:
        return [f"{path}: null allowed by the schema {'null' in kinds}, by the model {nullable}"]
    kind = [k for k in kinds if k != "null"][0] if kinds != [None] else None
    origin = typing.get_origin(annotation)
    if kind is None:
        return [] if annotation is typing.Any else [f"{path}: any value in the schema, {annotation} in the model"]
    if "enum" in node:
        if origin is not typing.Literal or set(_args(annotation)) != set(node["enum"]):
            return [f"{path}: enum {node['enum']} in the schema, {annotation} in the model"]
        return []
    if kind in SCALARS:
        return [] if annotation is SCALARS[kind] else [f"{path}: {kind} in the schema, {annotation} in the model"]
    if kind == "number":
        ok = origin in (typing.Union, types.UnionType) and set(_args(annotation)) == {int, float}
        return [] if ok else [f"{path}: number in the schema, {annotation} in the model (want int | float)"]
    if kind == "array":
        if origin is not tuple or len(_args(annotation)) != 2 or _args(annotation)[1] is not Ellipsis:
            return [f"{path}: array in the schema, {annotation} in the model (want tuple[X, ...])"]
        return type_problems(node.get("items", {}), _args(annotation)[0], f"{path}[]")
    if kind == "object" and "properties" in node:
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return [f"{path}: an object with properties in the schema, {annotation} in the model"]
        return model_problems(node, annotation, path)
    if kind == "object":
        if origin is not typing.Mapping and origin is not getattr(__import__("collections.abc").abc, "Mapping"):
            return [f"{path}: an open object in the schema, {annotation} in the model (want a FrozenMap)"]
        extra = node.get("additionalProperties")
        value_schema = extra if isinstance(extra, dict) and extra.get("type") else {}
        return type_problems(value_schema, _args(annotation)[1], f"{path}.*")
    return [f"{path}: schema type {kind} is not handled"]


def default_problem(node: dict, field: FieldInfo, path: str, required: bool) -> str | None:
    if "default" in node:
        if field.is_required():
            return f"{path}: default {node['default']!r} in the schema, required in the model"
        value = field.get_default(call_default_factory=True)
        if isinstance(value, tuple) and value and isinstance(value[0], BaseModel):
            value = [item.model_dump(mode="json", exclude_unset=True) for item in value]
        if plain(value) != node["default"]:
            return f"{path}: default {node['default']!r} in the schema, {value!r} in the model"
        return None
    if required or path in FILLED_BY_THE_LOADER:
        return None if field.is_required() else f"{path}: required in the schema, optional in the model"
    if node.get("type") == "object" and "properties" in node:
        return None if field.default_factory is not None else f"{path}: the model has no default section"
    return None if field.default is None and not field.is_required() else f"{path}: no default in the schema, " \
                                                                         f"the model's should be None"


def model_problems(node: dict, model: type[BaseModel], path: str = "") -> list[str]:
    properties = node.get("properties", {})
    problems = [f"{path}.{key}: in the schema, not in {model.__name__}".lstrip(".")
                for key in properties if key not in model.model_fields]
    problems += [f"{path}.{key}: in {model.__name__}, not in the schema".lstrip(".")
                 for key in model.model_fields if key not in properties]
    hints = typing.get_type_hints(model, include_extras=True)
    for key, sub in properties.items():
        if key not in model.model_fields:
            continue
        where = f"{path}.{key}".lstrip(".")
        absent = "default" not in sub and key not in node.get("required", []) and where not in FILLED_BY_THE_LOADER \
            and not (sub.get("type") == "object" and "properties" in sub)
        problems += type_problems(sub, hints[key], where, absent)
        problem = default_problem(sub, model.model_fields[key], where, key in node.get("required", []))
        if problem:
            problems.append(problem)
    return problems


def test_the_models_match_the_bundled_schema():
    assert model_problems(bundled_schema(), Settings) == []


def test_the_check_finds_a_missing_field_a_type_and_a_default():
    schema = {"type": "object", "properties": {
        "hub": {"type": "object", "properties": {
            "port": {"type": "string", "default": "8000"},
            "ip": {"type": "string", "default": "::"},
            "nowhere": {"type": "string", "default": ""}}}}}
    problems = [p for p in model_problems(schema, Settings) if p.startswith("hub.")]
    assert "hub.nowhere: in the schema, not in Hub" in problems
    assert "hub.port: string in the schema, <class 'int'> in the model" in problems
    assert "hub.ip: default '::' in the schema, '0.0.0.0' in the model" in problems
    assert any(p.startswith("hub.data_dir: in Hub, not in the schema") for p in problems)


RICH = {
    "hub": {"data_dir": "/srv/gpulab/data", "port": 443},
    "spawner": {"environment": {"HF_HOME": "/data/hf"}},
    "profiles": [
        {"display_name": "CPU", "default": True},
        {"display_name": "1 GPU (A100)", "gpu": {"count": 1, "models": ["A100"]}, "cpu": {"limit": 4, "guarantee": 0.5},
         "memory": {"limit": "32G"}, "tolerations": [{"key": "gpu", "operator": "Exists"}],
         "kubespawner_override": {"image": "x", "args": ["--a"], "drop": None,
                                  "extra_resource_limits": {"ephemeral-storage": "20Gi"}},
         "profile_options": {"image": {"display_name": "Image", "choices": {
             "scipy": {"display_name": "SciPy", "kubespawner_override": {"image": "scipy"}}},
             "unlisted_choice": {"enabled": True}}}},
    ],
    "quotas": {"users": {"alice": {"max_gpus": 4}}, "groups": {"ml": {"gpu_hours_per_month": 200}}},
    "auth": {"admin_users": ["alice"]},
}


@pytest.mark.parametrize("given", [{}, RICH], ids=["defaults", "rich"])
def test_built_from_complete_values_they_give_the_same_values_back(given):
    values = complete(given, Path("/srv/gpulab"))
    assert Settings.from_values(values).as_dict() == values


def test_typed_values_read_as_attributes_and_numbers_keep_their_type():
    s = Settings.from_values(complete(RICH, Path("/srv/gpulab")))
    assert s.hub.port == 443 and s.hub.data_dir == "/srv/gpulab/data"
    gpu = s.profiles[1]
    assert gpu.id == "1-gpu-a100" and gpu.gpu.models == ("A100",)
    assert gpu.cpu.limit == 4 and isinstance(gpu.cpu.limit, int) and gpu.cpu.guarantee == 0.5
    assert s.quotas.users["alice"].max_gpus == 4 and s.quotas.groups["ml"].max_servers is None
    assert gpu.profile_options["image"].choices["scipy"].kubespawner_override["image"] == "scipy"


def test_nothing_in_them_can_be_changed():
    s = Settings.from_values(complete(RICH, Path("/srv/gpulab")))
    with pytest.raises(ValidationError):
        s.hub.port = 80
    gpu = s.profiles[1]
    for mapping, key, value in ((s.spawner.environment, "X", "1"),
                                (gpu.kubespawner_override["extra_resource_limits"], "cpu", "1"),
                                (gpu.tolerations[0], "key", "other"),
                                (s.quotas.users, "bob", s.quotas.default)):
        with pytest.raises(TypeError):
            operator.setitem(mapping, key, value)
    with pytest.raises(AttributeError):
        gpu.kubespawner_override["args"].append("--more")  # a tuple: read-only too
    assert isinstance(s.auth.admin_users, tuple)


def test_a_deep_copy_is_the_same_value():
    s = Settings.from_values(complete(RICH, Path("/srv/gpulab")))
    assert copy.deepcopy(s) is s and copy.deepcopy({"s": s})["s"] == s


def test_of_takes_either_form():
    """`Model.of`, what a service reads its JSON back with: a dict typed, typed settings as they are."""
    values = complete({}, Path("/srv/gpulab"))
    typed = Settings.from_values(values)
    assert Settings.of(typed) is typed
    assert Settings.of(values) == typed


# What runs in user servers, in runners and in the zygote, where importing pydantic (and building
# these models) would add a few hundred milliseconds to every start: they read no typed settings.
WITHOUT_PYDANTIC = ["gpulab.spawner.singleuser", "gpulab.extensions.tensorboard.extension",
                    "gpulab.extensions.tensorboard.launcher", "gpulab.extensions.ssh.endpoint",
                    "gpulab.extensions.scheduler.runner", "gpulab.spawner.backends.local.zygote",
                    "gpulab.spawner.backends.local.warm_start", "gpulab.spawner.backends.local.runner_process",
                    "gpulab.compute.limits", "gpulab.compute.claims", "gpulab.db"]


@pytest.mark.parametrize("module", WITHOUT_PYDANTIC)
def test_servers_runners_and_the_zygote_do_not_load_the_models(module):
    code = f"import importlib, sys; importlib.import_module({module!r}); print('pydantic' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"

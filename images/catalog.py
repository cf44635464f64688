"""Read and validate `catalog.yaml` (see catalog.schema.yaml for every field)."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ruamel.yaml import YAML

from gpulab.hub_config.settings import ConfigError, Problem, parse_yaml, plain, validate


@dataclass(frozen=True)
class Environment:
    id: str
    display_name: str
    description: str
    image: str  # full reference: registry/repository:tag
    gpu: bool
    python: str
    approx_size_gb: float
    local_python: str
    cuda: str | None = None
    min_driver: str | None = None
    parent: str = ""
    frameworks: dict = field(default_factory=dict)
    tools: tuple = ()


def catalog_schema() -> dict:
    return YAML(typ="safe").load(resources.files("gpulab.images").joinpath("catalog.schema.yaml").read_text())


def default_catalog_path() -> Path:
    return Path(str(resources.files("gpulab.images").joinpath("catalog.yaml")))


def parse_catalog(text: str, source: str = "catalog.yaml") -> list[Environment]:
    """The catalog's environments. Raises ConfigError naming the key path of each problem."""
    doc = parse_yaml(text, source)
    data = plain(doc)
    problems = validate(data, catalog_schema(), doc=doc)
    ids = [env.get("id") for env in data.get("environments", []) if isinstance(env, dict)]
    problems += [Problem("environments", f"id {i!r} appears more than once") for i in sorted(set(ids)) if ids.count(i) > 1]
    if problems:
        raise ConfigError(source, problems)
    registry = data["registry"].rstrip("/")
    return [
        Environment(
            **{k: v for k, v in env.items() if k not in ("image", "tag", "tools")},
            image=f"{registry}/{env['image']}:{env['tag']}",
            tools=tuple(env.get("tools", ())),
        )
        for env in data["environments"]
    ]


def load_catalog(path: Path | None = None) -> list[Environment]:
    path = path or default_catalog_path()
    return parse_catalog(path.read_text(), str(path))

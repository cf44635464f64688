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
    build: str = ""  # folder under images/: its build context (and Dockerfile, unless `dockerfile`)
    dockerfile: str = ""  # folder under images/ with a Dockerfile shared with other images


@dataclass(frozen=True)
class CatalogImage:
    """One image of the build hierarchy: a build-only image (base, hub) or an environment's."""

    id: str
    registry: str  # e.g. "ghcr.io/gpulab"
    name: str  # repository under the registry, e.g. "pytorch"
    tag: str
    build: str  # folder under images/: its build context ("" = not built here)
    parent: str  # id of the catalog image it is built FROM ("" = an external image)
    offered: bool  # an environment users pick, not a build-only image
    dockerfile: str = ""  # folder under images/ of its Dockerfile ("" = the one in `build`)
    build_args: tuple[tuple[str, str], ...] = ()  # the catalog's values a shared Dockerfile needs

    @property
    def dockerfile_folder(self) -> str:
        return self.dockerfile or self.build

    @property
    def reference(self) -> str:
        return f"{self.registry}/{self.name}:{self.tag}"


def catalog_schema() -> dict:
    return YAML(typ="safe").load(resources.files("gpulab.images").joinpath("catalog.schema.yaml").read_text())


def default_catalog_path() -> Path:
    return Path(str(resources.files("gpulab.images").joinpath("catalog.yaml")))


def _validated(text: str, source: str) -> dict:
    doc = parse_yaml(text, source)
    data = plain(doc)
    problems = validate(data, catalog_schema(), doc=doc)
    problems += _hierarchy_problems(data)
    if problems:
        raise ConfigError(source, problems)
    return data


def parse_catalog(text: str, source: str = "catalog.yaml") -> list[Environment]:
    """The catalog's environments. Raises ConfigError naming the key path of each problem."""
    data = _validated(text, source)
    registry = data["registry"].rstrip("/")
    return [
        Environment(
            **{k: v for k, v in env.items() if k not in ("image", "tag", "tools")},
            image=f"{registry}/{env['image']}:{env['tag']}",
            tools=tuple(env.get("tools", ())),
        )
        for env in data["environments"]
    ]


def parse_images(text: str, source: str = "catalog.yaml") -> list[CatalogImage]:
    """Every image the catalog builds: build-only images first, then the environments' images."""
    data = _validated(text, source)
    registry = data["registry"].rstrip("/")
    sections = [(data.get("build_images", []), False), (data["environments"], True)]
    return [
        CatalogImage(entry["id"], registry, entry["image"], entry["tag"], entry.get("build", ""),
                     entry.get("parent", ""), offered, entry.get("dockerfile", ""),
                     shared_dockerfile_args(entry) if entry.get("dockerfile") else ())
        for entries, offered in sections for entry in entries
    ]


def shared_dockerfile_args(entry: dict) -> tuple[tuple[str, str], ...]:
    """What a shared Dockerfile (images/framework) reads from the catalog entry, as build arguments."""
    return (("ENVIRONMENT_ID", entry["id"]), ("DISPLAY_NAME", entry["display_name"]),
            ("DESCRIPTION", entry["description"].rstrip(".")), ("CUDA", entry.get("cuda") or ""),
            ("MIN_DRIVER", entry.get("min_driver") or ""))


def _hierarchy_problems(data: dict) -> list[Problem]:
    """Ids unique across build images and environments; every parent is one of them, without cycles."""
    entries = [(section, i, entry) for section in ("build_images", "environments")
               for i, entry in enumerate(data.get(section) or [])
               if isinstance(entry, dict) and isinstance(entry.get("id"), str)]
    ids = [entry["id"] for _, _, entry in entries]
    problems = [Problem("environments", f"id {i!r} appears more than once") for i in sorted(set(ids))
                if ids.count(i) > 1]
    parents = {entry["id"]: entry.get("parent", "") for _, _, entry in entries}
    for section, i, entry in entries:
        parent = entry.get("parent", "")
        if not isinstance(parent, str):
            continue
        if parent and parent not in parents:
            problems.append(Problem(f"{section}[{i}].parent", f"{parent!r} is not an image in the catalog"))
            continue
        seen = {entry["id"]}
        while parent and parent in parents:
            if parent in seen:
                problems.append(Problem(f"{section}[{i}].parent", f"{entry['id']!r} is its own ancestor"))
                break
            seen.add(parent)
            parent = parents[parent]
    return problems


def load_catalog(path: Path | None = None) -> list[Environment]:
    path = path or default_catalog_path()
    return parse_catalog(path.read_text(), str(path))


def load_images(path: Path | None = None) -> list[CatalogImage]:
    path = path or default_catalog_path()
    return parse_images(path.read_text(), str(path))

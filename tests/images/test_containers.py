"""The built images, run by a real Docker engine (docker-py, as docker-stacks tests do).

These run only where a Docker engine answers and the images were built first
(`docker buildx bake -f images/docker-bake.hcl`, or GPULAB_TEST_REGISTRY pointing at a registry
holding them); elsewhere every test here is skipped with the reason. The GPU checks need the
NVIDIA container runtime and a GPU as well. There is no Docker engine on gpulab's CI machines,
so there these tests are skipped: the Dockerfiles are covered there by hadolint and the policy
tests, and the start-up scripts by tests/unit/test_images_startup.py and tests that spawn real
servers through the entrypoint (tests/images/test_startup_in_hub.py).
"""

from __future__ import annotations

import os
import re

import pytest

from gpulab.images.catalog import load_catalog

docker = pytest.importorskip("docker", reason="docker-py is not installed")

ENVIRONMENTS = load_catalog(None)


def reference(environment) -> str:
    registry = os.environ.get("GPULAB_TEST_REGISTRY")
    return environment.image if not registry else registry.rstrip("/") + "/" + environment.image.split("/", 1)[1]


@pytest.fixture(scope="module")
def engine():
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as error:  # no socket, no permission, no daemon
        pytest.skip(f"no Docker engine to run the images: {error}")
    return client


def image_or_skip(engine, environment) -> str:
    ref = reference(environment)
    try:
        engine.images.get(ref)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{ref} is not built here (docker buildx bake -f images/docker-bake.hcl {environment.id})")
    return ref


def run(engine, image: str, command: list[str], **options) -> str:
    output = engine.containers.run(image, command, remove=True, stderr=True, **options)
    return output.decode()


@pytest.mark.parametrize("environment", ENVIRONMENTS, ids=lambda e: e.id)
def test_runs_as_the_unprivileged_user_under_tini(engine, environment):
    image = image_or_skip(engine, environment)
    assert run(engine, image, ["id", "-u"]).strip().splitlines()[-1] == "1000"
    assert run(engine, image, ["cat", "/proc/1/comm"]).strip().splitlines()[-1] == "tini"
    # started as root, the entrypoint still runs the command as the image's user
    assert run(engine, image, ["id", "-u"], user="0").strip().splitlines()[-1] == "1000"


@pytest.mark.parametrize("environment", ENVIRONMENTS, ids=lambda e: e.id)
def test_singleuser_matches_the_hub_major_and_keeps_the_image_path(engine, environment):
    import jupyterhub

    image = image_or_skip(engine, environment)
    version = run(engine, image, ["jupyterhub-singleuser", "--version"]).strip().splitlines()[-1]
    assert version.split(".")[0] == jupyterhub.__version__.split(".")[0]
    # the hub's environment may replace PATH; the image's own entries come back in front
    path = run(engine, image, ["bash", "-c", "echo $PATH"], environment={"PATH": "/usr/bin:/bin"})
    assert path.strip().splitlines()[-1].startswith("/opt/gpulab/env/bin")


@pytest.mark.parametrize("environment", [e for e in ENVIRONMENTS if e.gpu], ids=lambda e: e.id)
def test_cuda_works_and_matches_the_variant(engine, environment):
    image = image_or_skip(engine, environment)
    if "nvidia" not in (engine.info().get("Runtimes") or {}):
        pytest.skip("the NVIDIA container runtime is not installed in this Docker engine")
    gpus = [docker.types.DeviceRequest(count=1, capabilities=[["gpu"]])]
    if "torch" in environment.frameworks:
        code = "import torch; assert torch.cuda.is_available(); print(torch.version.cuda)"
    else:
        code = ("import tensorflow as tf; assert tf.config.list_physical_devices('GPU');"
                "print(tf.sysconfig.get_build_info()['cuda_version'])")
    try:
        output = run(engine, image, ["python", "-c", code], device_requests=gpus)
    except docker.errors.APIError as error:
        pytest.skip(f"no GPU for containers here: {error}")
    cuda = re.findall(r"^(\d+\.\d+)", output.strip().splitlines()[-1])
    assert cuda and cuda[0] == environment.cuda, output

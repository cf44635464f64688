"""The built images, run by a real engine: Podman's Docker API through docker-py, as docker-stacks
tests do. The `container_engine` fixture builds `base` and `cpu` (and `hub_image` the hub) from
the committed Dockerfiles, on a Debian root file system made with debootstrap instead of the
Ubuntu image (no registry here; tests/support/containers.py says what else differs: nothing).

What this does not cover: the CUDA images (pytorch, tensorflow) are not built in the tests (about
3 GB each; images/README.md records a build made by hand), and there is no GPU here: the driver
check is exercised with a stand-in driver version file, and the CUDA test runs only where the
engine has the NVIDIA runtime and a GPU image is present.
"""

from __future__ import annotations

import os
import re
import time

import pytest
import requests
from jupyterhub.utils import random_port

from gpulab.images.catalog import load_catalog, load_images

docker = pytest.importorskip("docker", reason="docker-py is not installed")

ENVIRONMENTS = load_catalog(None)
REFERENCES = {image.id: image.reference for image in load_images(None)}
BUILT_IN_TESTS = ["base", "cpu"]  # what the container_engine fixture builds
OLD_DRIVER = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n"
NEW_DRIVER = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.82.07  Release Build\n"


@pytest.fixture(scope="module")
def engine(container_engine):
    client = container_engine.client()
    yield client
    client.close()


LOGS_RACE = "failed to obtain logs"  # Podman 4.3 as root, a container that ended at once: ask again


def run(engine, image: str, command: list[str] | None, **options) -> str:
    """What `docker run --rm` prints (stdout and stderr), or ContainerError as `containers.run`
    raises it. The container runs detached and is waited for: attached, Podman 4.3 once never
    closed the output stream of a container that had ended (under load; the test hung 300 s)."""
    container = engine.containers.run(image, command, detach=True, **options)
    try:
        status = container.wait(timeout=120)["StatusCode"]
        for _ in range(3):
            output = container.logs(stdout=True, stderr=True).decode()
            if LOGS_RACE not in output:
                break
        if status != 0:
            raise docker.errors.ContainerError(container, status, command, image,
                                               container.logs(stdout=False, stderr=True))
        return output
    finally:
        container.remove(force=True)


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


@pytest.mark.parametrize("image", BUILT_IN_TESTS)
def test_runs_as_the_unprivileged_user_under_tini(engine, image):
    reference = REFERENCES[image]
    assert last_line(run(engine, reference, ["id", "-u"])) == "1000"
    assert last_line(run(engine, reference, ["cat", "/proc/1/comm"])) == "tini"
    # started as root, the entrypoint still runs the command as the image's user
    output = run(engine, reference, ["id", "-u"], user="0")
    # (the entrypoint's note is on stderr: the engine's log may put it before or after the output)
    assert "1000" in output.splitlines()
    assert "started as root; continuing as uid 1000" in output


@pytest.mark.parametrize("image", BUILT_IN_TESTS)
def test_singleuser_matches_the_hub_major_and_keeps_the_image_path(engine, image):
    import jupyterhub

    reference = REFERENCES[image]
    version = last_line(run(engine, reference, ["jupyterhub-singleuser", "--version"]))
    assert version.split(".")[0] == jupyterhub.__version__.split(".")[0]
    # the hub's environment may replace PATH; the image's own entries come back in front
    path = run(engine, reference, ["bash", "-c", "echo $PATH"], environment={"PATH": "/usr/bin:/bin"})
    assert last_line(path).startswith("/opt/gpulab/env/bin")


def test_the_cpu_environment_has_its_catalog_frameworks(engine):
    cpu = next(e for e in ENVIRONMENTS if e.id == "cpu")
    code = "import numpy, pandas, sklearn, mlflow, gpulab; print(numpy.__version__, pandas.__version__, sklearn.__version__)"
    versions = last_line(run(engine, cpu.image, ["python", "-c", code])).split()
    assert versions == [cpu.frameworks["numpy"], cpu.frameworks["pandas"], cpu.frameworks["scikit-learn"]]


def test_a_mounted_home_gets_the_images_home_files_without_overwriting(engine, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("# the user's own\n")
    os.chown(home, 1000, 100)
    run(engine, REFERENCES["cpu"], ["true"], volumes={str(home): {"bind": "/home/jovyan", "mode": "rw"}})
    assert (home / ".bashrc").read_text() == "# the user's own\n"
    assert (home / ".profile").exists()  # copied from /opt/gpulab/home-defaults
    assert (home / ".profile").stat().st_uid == 1000


@pytest.mark.parametrize("driver, refused", [(OLD_DRIVER, True), (NEW_DRIVER, False)], ids=["old", "new"])
def test_the_driver_check_refuses_a_too_old_driver_naming_both_versions(engine, tmp_path, driver, refused):
    """No GPU here: the driver's version file is a stand-in mounted where gpulab-start reads it,
    and NVIDIA_VISIBLE_DEVICES says GPUs are attached, as the NVIDIA runtime would."""
    version_file = tmp_path / "version"
    version_file.write_text(driver)
    version_file.chmod(0o644)
    options = dict(environment={"GPULAB_MIN_DRIVER": "560.28.03", "GPULAB_CUDA": "12.6",
                                "NVIDIA_VISIBLE_DEVICES": "GPU-6f1c3a1e-0000-4000-8000-000000000001",
                                "GPULAB_DRIVER_VERSION_FILE": "/run/driver-version"},
                   volumes={str(version_file): {"bind": "/run/driver-version", "mode": "ro"}})
    if not refused:
        assert last_line(run(engine, REFERENCES["cpu"], ["echo", "started"], **options)) == "started"
        return
    with pytest.raises(docker.errors.ContainerError) as error:
        run(engine, REFERENCES["cpu"], ["echo", "started"], **options)
    assert error.value.exit_status == 1
    message = error.value.stderr.decode()
    assert "needs NVIDIA driver 560.28.03 or newer (CUDA 12.6); this machine has 535.104.05" in message


def test_started_alone_it_runs_jupyterlab(engine):
    """Outside a hub (no JUPYTERHUB_API_TOKEN) the default command runs plain JupyterLab on 8888,
    published here on a free local port (Podman's bridge network)."""
    port = random_port()
    container = engine.containers.run(REFERENCES["cpu"], detach=True, ports={"8888/tcp": ("127.0.0.1", port)})
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/api/status", timeout=5)
                break
            except requests.ConnectionError:
                container.reload()
                logs = container.logs().decode(errors="replace")
                assert container.status == "running" and time.monotonic() < deadline, logs
                time.sleep(0.5)
        assert answer.status_code in (200, 403)  # JupyterLab answers (a token is required)
        assert "not started by a hub: running JupyterLab on port 8888" in container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


def test_the_hub_image_refuses_a_missing_settings_file(engine, hub_image):
    with pytest.raises(docker.errors.ContainerError) as error:
        run(engine, hub_image, None)
    assert error.value.exit_status == 2
    assert "no settings file at /etc/gpulab/gpulab.yaml" in error.value.stderr.decode()
    assert last_line(run(engine, hub_image, ["id", "-u"])) == "1000"


@pytest.mark.parametrize("environment", [e for e in ENVIRONMENTS if e.gpu], ids=lambda e: e.id)
def test_cuda_works_and_matches_the_variant(engine, environment):
    if "nvidia" not in (engine.info().get("Runtimes") or {}):
        pytest.skip("no GPU here: the engine has no NVIDIA container runtime")
    try:
        engine.images.get(environment.image)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{environment.image} is not built here (docker buildx bake -f images/docker-bake.hcl {environment.id})")
    gpus = [docker.types.DeviceRequest(count=1, capabilities=[["gpu"]])]
    if "torch" in environment.frameworks:
        code = "import torch; assert torch.cuda.is_available(); print(torch.version.cuda)"
    else:
        code = ("import tensorflow as tf; assert tf.config.list_physical_devices('GPU');"
                "print(tf.sysconfig.get_build_info()['cuda_version'])")
    output = run(engine, environment.image, ["python", "-c", code], device_requests=gpus)
    cuda = re.findall(r"^(\d+\.\d+)", last_line(output))
    assert cuda and cuda[0] == environment.cuda, output

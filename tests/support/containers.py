"""A container engine for the tests: Podman, its Docker API on a Unix socket, and gpulab's images
built from the committed Dockerfiles.

The only difference from a production build (`docker buildx bake -f images/docker-bake.hcl`):
no registry is reachable here, so the Ubuntu base image is replaced by a Debian bookworm root file
system made locally with debootstrap from the Debian mirror apt uses, imported as
`localhost/gpulab-test/debian:bookworm` (build argument UBUNTU_IMAGE). Everything after the
`FROM` line is the committed Dockerfile as it is. pip reaches PyPI with the host's CA bundle,
mounted for the build only (never baked into an image).

Built images carry the catalog's own references (ghcr.io/gpulab/cpu:cpu-python-3.12, ...) in
the local store, plus a label with a hash of the Dockerfile, the build arguments, the context's
files and the parent image: a build whose hash matches is skipped, and Podman's layer cache makes
a rebuild after a code change redo only the layers after the changed COPY. The store is Podman's
own (/var/lib/containers as root), so the cache outlives the test session. Builds take a file
lock, so parallel pytest workers build each image once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from gpulab.images.catalog import load_images
from tests.support.processes import terminate

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".test-cache" / "images"
CONTAINERS_CONF = Path(__file__).with_name("containers.conf")
DEBIAN_IMAGE = "localhost/gpulab-test/debian:bookworm"
HASH_LABEL = "dev.gpulab.test-build-hash"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def root_context(dockerfile: Path) -> tuple[str, ...]:
    """What an image built from the repository root may copy: its .dockerignore's `!` entries."""
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore").read_text().splitlines()
    return tuple(line[1:].strip() for line in ignore if line.startswith("!"))


def podman_env() -> dict:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], env=podman_env(), check=check, text=True,
                          capture_output=kwargs.pop("capture_output", True), **kwargs)


def missing_engine() -> str | None:
    """Why there is no engine here (None: podman, runc and debootstrap are installed, as root)."""
    if os.geteuid() != 0:
        return "the container tests run Podman as root (./test.sh as root installs it)"
    missing = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (./test.sh as root installs them: apt-get install podman runc debootstrap)"
    return None


# ---------------------------------------------------------------- the Docker API


class PodmanService:
    """`podman system service` serving the Docker API on a Unix socket, until stop()."""

    def __init__(self, folder: Path):
        self.socket = folder / "podman.sock"
        self.log_path = folder / "podman-service.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 60) -> "PodmanService":
        import docker

        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(["podman", "system", "service", "--time=0", self.url], env=podman_env(),
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"podman system service exited: {self.log_path.read_text()[-2000:]}")
            try:
                client = docker.DockerClient(base_url=self.url, timeout=30)
                client.ping()
                client.close()
                return self
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def client(self):
        import docker

        return docker.DockerClient(base_url=self.url, timeout=120)

    def remove_containers(self, name_prefix: str) -> None:
        client = self.client()
        try:
            for container in client.containers.list(all=True):
                if container.name.startswith(name_prefix):
                    container.remove(force=True)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process, grace=20)


# ---------------------------------------------------------------- the images


@dataclass(frozen=True)
class BuildSpec:
    """One image: where its Dockerfile and context are, its parent, the reference it gets."""

    id: str
    reference: str
    dockerfile: Path
    context: Path
    context_paths: tuple[str, ...] | None  # None: the whole context folder
    parent: str | None  # the id of the image it is built on; None: the Debian root file system
    parent_arg: str


def build_specs() -> dict[str, BuildSpec]:
    images = {image.id: image.reference for image in load_images(None)}
    return {
        "base": BuildSpec("base", images["base"], REPO / "images/base/Dockerfile", REPO,
                          root_context(REPO / "images/base/Dockerfile"),
                          None, "UBUNTU_IMAGE"),
        "hub": BuildSpec("hub", images["hub"], REPO / "images/hub/Dockerfile", REPO,
                         root_context(REPO / "images/hub/Dockerfile"),
                         None, "UBUNTU_IMAGE"),
        "cpu": BuildSpec("cpu", images["cpu"], REPO / "images/cpu/Dockerfile", REPO / "images/cpu", None,
                         "base", "PARENT_IMAGE"),
    }


def context_files(spec: BuildSpec) -> list[Path]:
    roots = [spec.context / p for p in spec.context_paths] if spec.context_paths else [spec.context]
    files = []
    for root in roots:
        candidates = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        files += [p for p in candidates if "__pycache__" not in p.parts and p.suffix != ".pyc"]
    return files


def build_hash(spec: BuildSpec, parent_id: str) -> str:
    digest = hashlib.sha256()
    digest.update(spec.dockerfile.read_bytes())
    digest.update(f"{spec.parent_arg}={parent_id}".encode())
    for path in context_files(spec):
        digest.update(str(path.relative_to(spec.context)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:24]


def image_id(reference: str) -> str | None:
    result = podman("image", "inspect", "--format", "{{.Id}}", reference, check=False)
    return result.stdout.strip() or None if result.returncode == 0 else None


def image_label(reference: str, label: str) -> str | None:
    result = podman("image", "inspect", "--format", f'{{{{index .Labels "{label}"}}}}', reference, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def debian_mirror() -> str:
    """The Debian archive apt uses on this machine (the build needs no other network)."""
    for source in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in source.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    return "http://deb.debian.org/debian"


@dataclass
class BuildRecord:
    id: str
    seconds: float
    built: bool  # False: the cached image was kept


def ensure_debian_image(log) -> BuildRecord:
    started = time.monotonic()
    if image_id(DEBIAN_IMAGE):
        return BuildRecord("debian", 0.0, False)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="rootfs-") as rootfs:
        subprocess.run(["debootstrap", "--variant=minbase", "bookworm", rootfs, debian_mirror()],
                       check=True, stdout=log, stderr=subprocess.STDOUT)
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["podman", "import", "-", DEBIAN_IMAGE], stdin=tar.stdout, env=podman_env(), check=True,
                       stdout=log, stderr=subprocess.STDOUT)
        tar.stdout.close()
        if tar.wait() != 0:
            raise RuntimeError("tar of the Debian root file system failed")
    return BuildRecord("debian", time.monotonic() - started, True)


def build_image(spec: BuildSpec, specs: dict[str, BuildSpec], log) -> BuildRecord:
    started = time.monotonic()
    parent = specs[spec.parent].reference if spec.parent else DEBIAN_IMAGE
    digest = build_hash(spec, image_id(parent) or "")
    if image_label(spec.reference, HASH_LABEL) == digest:
        return BuildRecord(spec.id, 0.0, False)
    pip_conf = CACHE / "pip.conf"
    pip_conf.write_text("[global]\ncert = /run/host-ca.crt\n")
    command = ["build", "--format", "docker", "--network", "host", "--layers", "-f", str(spec.dockerfile), "-t", spec.reference,
               "--build-arg", f"{spec.parent_arg}={parent}", "--label", f"{HASH_LABEL}={digest}",
               "-v", f"{HOST_CA_BUNDLE}:/run/host-ca.crt:ro", "-v", f"{pip_conf}:/etc/pip.conf:ro",
               str(spec.context)]
    subprocess.run(["podman", *command], env=podman_env(), check=True, stdout=log, stderr=subprocess.STDOUT)
    return BuildRecord(spec.id, time.monotonic() - started, True)


def build_order(wanted: list[str], specs: dict[str, BuildSpec]) -> list[str]:
    order: list[str] = []
    for image in wanted:
        chain: list[str] = []
        while image is not None and image not in order and image not in chain:
            chain.insert(0, image)
            image = specs[image].parent
        order += [i for i in chain if i not in order]
    return order


def ensure_images(wanted: list[str]) -> list[BuildRecord]:
    """Build what is missing or out of date among `wanted` (and their parents); the output of
    every build goes to .test-cache/images/build.log, which a failure names."""
    CACHE.mkdir(parents=True, exist_ok=True)
    specs = build_specs()
    log_path = CACHE / "build.log"
    with open(CACHE / "build.lock", "w") as lock, open(log_path, "a") as log:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            records = [ensure_debian_image(log)]
            for image in build_order(wanted, specs):
                log.write(f"\n==== {image} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
                log.flush()
                records.append(build_image(specs[image], specs, log))
            if any(r.built for r in records):
                # the images these builds replaced, and nothing else (the label is in every gpulab Dockerfile)
                podman("image", "prune", "--force", "--filter", "label=dev.gpulab.image", check=False)
        except subprocess.CalledProcessError as error:
            raise RuntimeError(f"building the test images failed ({error}); see {log_path}") from None
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    with contextlib.suppress(OSError), open(CACHE / "timings.log", "a") as timings:
        timings.write(" ".join(f"{r.id}={r.seconds:.0f}s{'' if r.built else '(cached)'}" for r in records) + "\n")
    return records


if __name__ == "__main__":  # python -m tests.support.containers [image ...]: build (or check) the test images
    import sys

    for record in ensure_images(sys.argv[1:] or ["base", "cpu"]):
        print(f"{record.id}: {'built in %.0f s' % record.seconds if record.built else 'cached'}")

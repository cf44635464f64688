"""MLflow serves artifacts from its own artifact root only.

`mlflow server` builds an artifact repository for whatever location an experiment names, and
a client may name any (`file:///home/bob`, `s3://someone-elses-bucket`): the server then
reads and writes there with its own rights. gpulab's service allows only:

- its artifacts destination (a local folder, or an `s3://bucket/prefix`), and paths under it;
- `mlflow-artifacts:` (the proxied root, which the server maps onto the destination) and
  `runs:`/`models:` (which resolve to another location, checked again).

Everything else is refused with INVALID_PARAMETER_VALUE (400). A local folder is checked again
at every use after resolving symlinks, so a link inside the root never leads out of it.
Experiments cannot choose a location at all (hooks.py); this catches locations stored before.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from urllib.parse import urlparse

RESOLVED_SCHEMES = ("mlflow-artifacts", "runs", "models")
LOCAL_SCHEMES = ("", "file")


class ArtifactRoot:
    """Where this server keeps artifacts, and whether a location lies within it (lexical, pure)."""

    def __init__(self, destination: str):
        self.destination = destination
        parsed = urlparse(destination)
        self.scheme = parsed.scheme if "://" in destination else ""
        self.local = Path(os.path.normpath(os.path.abspath(destination))) if not self.scheme else None
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")

    def refusal(self, uri: str) -> str | None:
        """Why this server will not use `uri` as an artifact location, or None if it may."""
        parsed = urlparse(uri)
        scheme = parsed.scheme if ":" in uri and len(parsed.scheme) > 1 else ""  # "C:" is no scheme
        if scheme in RESOLVED_SCHEMES:
            return None
        if scheme in LOCAL_SCHEMES and self.local is not None:
            if scheme == "file" and parsed.netloc not in ("", "localhost"):
                return self.outside(uri)
            path = Path(os.path.normpath(os.path.abspath(parsed.path if scheme else uri)))
            return None if self.contains(path) else self.outside(uri)
        if self.scheme and scheme == self.scheme and parsed.netloc == self.bucket:
            key = posixpath.normpath("/" + parsed.path).strip("/")
            if not self.prefix or key == self.prefix or key.startswith(self.prefix + "/"):
                return None
        if scheme and scheme != self.scheme and scheme not in LOCAL_SCHEMES:
            return (f"artifact location {uri!r} is refused: this MLflow server stores artifacts only in "
                    f"its own artifact store, and no {scheme}:// store is configured (mlflow.artifacts_destination)")
        return self.outside(uri)

    def contains(self, path: Path) -> bool:
        return self.local is not None and (path == self.local or self.local in path.parents)

    def outside(self, uri: str) -> str:
        return (f"artifact location {uri!r} is outside this MLflow server's artifact root; "
                "artifacts live only under the server's own store (mlflow-artifacts:/)")


def install(root: ArtifactRoot) -> None:
    """Put the root's checks in front of every artifact repository MLflow builds in this process."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
    from mlflow.store.artifact.artifact_repository_registry import _artifact_repository_registry as registry
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository
    from mlflow.utils.uri import validate_path_is_safe, validate_path_within_directory

    real_root = Path(os.path.realpath(root.local)) if root.local is not None else None

    class ConfinedLocalArtifactRepository(LocalArtifactRepository):
        """A local repository whose folder, symlinks resolved, must lie inside the root (at every use)."""

        @property
        def artifact_dir(self):
            real = Path(os.path.realpath(self._artifact_dir))
            if real_root is None or not (real == real_root or real_root in real.parents):
                raise MlflowException(root.outside(self.artifact_uri), error_code=INVALID_PARAMETER_VALUE)
            return self._artifact_dir

        def delete_artifacts(self, artifact_path=None):
            # MLflow checks the other operations' paths against the folder, not this one.
            target = os.path.join(self.artifact_dir, validate_path_is_safe(artifact_path)) if artifact_path else None
            if target:
                validate_path_within_directory(self.artifact_dir, target)
            return super().delete_artifacts(artifact_path)

    def guarded(factory):
        def build(artifact_uri, tracking_uri=None, registry_uri=None):
            reason = root.refusal(artifact_uri)
            if reason:
                raise MlflowException(reason, error_code=INVALID_PARAMETER_VALUE)
            return factory(artifact_uri, tracking_uri=tracking_uri, registry_uri=registry_uri)
        return build

    for scheme, factory in list(registry.get_registered_artifact_repositories().items()):
        confined = ConfinedLocalArtifactRepository if scheme in LOCAL_SCHEMES else factory
        registry.register(scheme, guarded(confined))

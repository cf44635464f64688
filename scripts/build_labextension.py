#!/usr/bin/env python3
"""Rebuild JupyterLab's "Run as a gpulab job…" extension (extensions/scheduler/labextension/prebuilt/).

The built bundle is committed, so installing gpulab (`gpulab up` on a fresh machine, the user
images) needs no node: setup.py installs prebuilt/ as a prebuilt JupyterLab extension. Run this
after changing anything in labextension/ (it needs node and npm, and this checkout's .venv):

    .venv/bin/python scripts/build_labextension.py

npm installs the packages of package-lock.json in .test-cache/labextension/ (not in the source
folder, whose every .js file setup.py would ship); @jupyterlab/builder builds against the
JupyterLab in this Python environment. The bundle records the sha256 of the sources it was
built from (source.sha256 in it); tests/unit/extensions/scheduler/test_labextension.py fails when they differ.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "extensions" / "scheduler" / "labextension"
OUTPUT = "prebuilt/@gpulab/jobs"  # package.json's jupyterlab.outputDir: a labextensions folder's layout
WORK = REPO / ".test-cache" / "labextension"
# What the bundle is built from; prebuilt/ itself is what it builds.
SOURCE_FILES = ("package.json", "package-lock.json", "src/*.js", "style/*.css")


def source_files(folder: Path) -> list[Path]:
    return sorted({path for pattern in SOURCE_FILES for path in folder.glob(pattern) if path.is_file()})


def source_digest(folder: Path) -> str:
    """One sha256 over the sources' relative paths and contents."""
    digest = hashlib.sha256()
    for path in source_files(folder):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def run(*command: str, cwd: Path) -> None:
    print("+", " ".join(command), file=sys.stderr)
    subprocess.run(command, cwd=cwd, check=True)


def build() -> None:
    for path in source_files(SOURCE):
        target = WORK / path.relative_to(SOURCE)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    if (SOURCE / "package-lock.json").exists():
        run("npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", cwd=WORK)
    else:  # the first build pins the packages
        run("npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", cwd=WORK)
        shutil.copyfile(WORK / "package-lock.json", SOURCE / "package-lock.json")
    shutil.rmtree(WORK / "prebuilt", ignore_errors=True)
    # @jupyterlab/builder from npm, against the shared packages of the JupyterLab installed here
    # (what `jupyter labextension build` ran before JupyterLab 4.6 moved it to another Python package)
    import jupyterlab

    core = Path(jupyterlab.__file__).parent / "staging"
    run("node", "node_modules/@jupyterlab/builder/lib/build-labextension.js", "--core-path", str(core), ".", cwd=WORK)
    shutil.rmtree(SOURCE / "prebuilt", ignore_errors=True)
    shutil.copytree(WORK / OUTPUT, SOURCE / OUTPUT)
    # `jupyter labextension list` names the Python package that installed it
    (SOURCE / OUTPUT / "install.json").write_text(json.dumps(
        {"packageManager": "python", "packageName": "gpulab", "uninstallInstructions": "pip uninstall gpulab"},
        indent=2) + "\n")
    (SOURCE / OUTPUT / "source.sha256").write_text(source_digest(SOURCE) + "\n")
    print(f"built {SOURCE / OUTPUT}", file=sys.stderr)


if __name__ == "__main__":
    build()

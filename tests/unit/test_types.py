"""The whole tree passes the type checker, and static tools see `gpulab.*`.

mypy runs as pyproject.toml's [tool.mypy] says: gpulab's packages, the tests and the benchmarks,
with `gpulab.*` found through namespace/gpulab/ (links to the top-level folders, the mapping
setup.py gives the installed package). Bodies of functions without annotations are not checked
(mypy's default); tests and benchmarks are not asked to narrow Optionals.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.source_tree import folder_mapping


ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = ROOT / "namespace" / "gpulab"


def test_the_namespace_links_are_setup_pys_mapping():
    """A folder added to setup.py's FOLDERS gets its link, or static tools would not see it."""
    wanted = {name.removeprefix("gpulab."): f"../../{folder}" for folder, name in folder_mapping().items()}
    found = {entry.name: os.readlink(entry) for entry in NAMESPACE.iterdir()}
    assert found == wanted
    for name in found:
        assert (NAMESPACE / name / "__init__.py").is_file(), name


def test_the_tree_type_checks():
    done = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-8000:]

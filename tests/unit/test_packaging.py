"""The wheel carries every data file gpulab reads at run time (non-editable installs use it)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_wheel_contains_schema_templates_migrations_and_catalog(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("gpulab-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    schema_files = {f"gpulab/hub_config/schema/{p.name}" for p in (REPO / "hub_config/schema").glob("*.yaml")}
    expected = schema_files | {
        "gpulab/hub_config/jupyterhub_config.py",
        "gpulab/hub_config/templates/page.html",
        "gpulab/hub_config/templates/home.html",
        "gpulab/extensions/usage/templates/held.html",
        "gpulab/hub_config/services/templates/error.html",
        "gpulab/db/migrations/env.py",
        "gpulab/db/migrations/script.py.mako",
        "gpulab/images/catalog.yaml",
        "gpulab/images/catalog.schema.yaml",
    }
    assert expected <= names, sorted(expected - names)
    # the prebuilt JupyterLab extension for jobs, installed under share/jupyter/labextensions
    assert any(n.endswith(".data/data/share/jupyter/labextensions/@gpulab/jobs/package.json") for n in names)

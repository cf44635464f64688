"""The committed JupyterLab extension ("Run as a gpulab job…"): built from the sources next to it,
and installed by gpulab's wheel where JupyterLab finds prebuilt extensions (no node needed)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path


REPO = Path(__file__).resolve().parents[4]
SOURCE = REPO / "extensions" / "scheduler" / "labextension"
BUILT = SOURCE / "prebuilt" / "@gpulab" / "jobs"


def build_script():
    spec = importlib.util.spec_from_file_location("build_labextension", REPO / "scripts" / "build_labextension.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_bundle_was_built_from_the_committed_sources():
    built_from = (BUILT / "source.sha256").read_text().strip()
    assert build_script().source_digest(SOURCE) == built_from, (
        "labextension/ changed since its bundle was built: run .venv/bin/python scripts/build_labextension.py "
        "and commit prebuilt/")


def test_the_digest_covers_every_source(tmp_path):
    script = build_script()
    for name in ("package.json", "package-lock.json", "src/index.js", "style/index.css"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(name)
    before = script.source_digest(tmp_path)
    for name in ("package.json", "package-lock.json", "src/index.js", "style/index.css"):
        (tmp_path / name).write_text(name + " changed")
        assert script.source_digest(tmp_path) != before, name
        (tmp_path / name).write_text(name)
    (tmp_path / "src" / "more.js").write_text("")
    assert script.source_digest(tmp_path) != before


def test_the_bundle_is_a_prebuilt_extension_jupyterlab_can_load():
    package = json.loads((BUILT / "package.json").read_text())
    assert package["name"] == "@gpulab/jobs"
    assert (BUILT / package["jupyterlab"]["_build"]["load"]).is_file()
    assert json.loads((BUILT / "install.json").read_text())["packageName"] == "gpulab"


def test_setup_installs_every_built_file_under_share_jupyter_labextensions(monkeypatch):
    """setup.py's data_files, read without building a wheel (test_packaging.py builds one in this
    tree; two builds at once would share build/)."""
    import runpy

    import setuptools

    given: dict = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: given.update(kwargs))
    monkeypatch.chdir(REPO)
    runpy.run_path(str(REPO / "setup.py"))
    installed = {f"{folder}/{Path(file).name}" for folder, files in given["data_files"] for file in files}
    target = "share/jupyter/labextensions/@gpulab/jobs/"
    expected = {target + path.relative_to(BUILT).as_posix() for path in BUILT.rglob("*") if path.is_file()}
    assert len(expected) >= 5 and installed == expected, sorted(installed ^ expected)

"""Maps the top-level folders onto one import namespace, `gpulab.*`.

The folders are the architecture (see DESIGN.md); the mapping gives them one clean
import name. Subpackages are discovered so a new module needs no edit here.
"""

from pathlib import Path

from setuptools import find_packages, setup

FOLDERS = {
    "hub_config": "gpulab.hub_config",
    "spawner": "gpulab.spawner",
    "compute": "gpulab.compute",
    "extensions": "gpulab.extensions",
    "db": "gpulab.db",
    "images": "gpulab.images",
}

packages = []
package_dir = {}
for folder, name in FOLDERS.items():
    packages.append(name)
    package_dir[name] = folder
    packages += [f"{name}.{sub}" for sub in find_packages(folder)]

# JupyterLab's "Run as a gpulab job…", built and committed (scripts/build_labextension.py), installed
# where JupyterLab finds prebuilt extensions: no node is needed to install gpulab.
LABEXTENSION = Path("extensions/scheduler/labextension/prebuilt/@gpulab/jobs")
LABEXTENSION_TARGET = "share/jupyter/labextensions/@gpulab/jobs"
labextension_files: dict[str, list[str]] = {}
for path in sorted(LABEXTENSION.rglob("*")):
    if path.is_file():
        folder = path.parent.relative_to(LABEXTENSION).as_posix()
        target = LABEXTENSION_TARGET if folder == "." else f"{LABEXTENSION_TARGET}/{folder}"
        labextension_files.setdefault(target, []).append(path.as_posix())

setup(
    packages=packages,
    package_dir=package_dir,
    # data files in each package and in its plain folders (schema/, templates/, ...)
    package_data={"": [f"**/*.{ext}" for ext in ("yaml", "json", "html", "ini", "mako", "svg", "css", "js", "txt")]},
    include_package_data=True,
    data_files=sorted(labextension_files.items()),
)

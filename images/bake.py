"""The build file, images/docker-bake.hcl, generated from the catalog (the one list of images).

`python -m gpulab.images.bake` rewrites it; `--check` exits 1 when the committed file differs
from what the catalog says (the test suite runs that check). Each image is a bake target; an
image built on another gets its parent through a named context `parent = "target:<id>"`,
which makes bake build the parent first and hand it over without a registry round trip.
"""

from __future__ import annotations

import argparse
import posixpath
import sys
from pathlib import Path

from .catalog import CatalogImage, default_catalog_path, load_images

BAKE_FILE = "docker-bake.hcl"
PARENT_CONTEXT = "parent"  # the name child Dockerfiles' PARENT_IMAGE gets from bake

HEADER = """\
# Generated from images/catalog.yaml by `python -m gpulab.images.bake`: edit the catalog, not
# this file. Run from the repository root (images/README.md):
#   docker buildx bake -f images/docker-bake.hcl                  every image, parents first
#   docker buildx bake -f images/docker-bake.hcl pytorch-cuda12   one image and its parents
#   REGISTRY=registry.example.com/ml DATE_TAG=$(date +%Y%m%d) \\
#     docker buildx bake -f images/docker-bake.hcl --push
"""


def build_order(images: list[CatalogImage]) -> list[CatalogImage]:
    """Parents before children, otherwise in catalog order (the catalog rules out cycles)."""
    by_id = {image.id: image for image in images}
    ordered: list[CatalogImage] = []

    def visit(image: CatalogImage) -> None:
        if image in ordered:
            return
        if image.parent:
            visit(by_id[image.parent])
        ordered.append(image)

    for image in images:
        visit(image)
    return ordered


def _hcl_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _target(image: CatalogImage) -> str:
    lines = [f"target {_hcl_string(image.id)} {{", '  inherits = ["_common"]']
    if image.parent:
        # the Dockerfile's path is relative to the context (images/<build>)
        dockerfile = posixpath.relpath(f"{image.dockerfile_folder}/Dockerfile", image.build)
        args = [("PARENT_IMAGE", PARENT_CONTEXT), *image.build_args]
        lines += [
            f"  context = {_hcl_string('images/' + image.build)}",
            f"  dockerfile = {_hcl_string(dockerfile)}",
            f"  contexts = {{ {PARENT_CONTEXT} = {_hcl_string('target:' + image.parent)} }}",
            "  args = { " + ", ".join(f"{name} = {_hcl_string(value)}" for name, value in args) + " }",
        ]
    else:  # the roots install gpulab itself, so their context is the repository
        lines += ['  context = "."', f"  dockerfile = {_hcl_string('images/' + image.build + '/Dockerfile')}"]
    lines += [f"  tags = tags({_hcl_string(image.name)}, {_hcl_string(image.tag)})", "}"]
    return "\n".join(lines)


def render(images: list[CatalogImage], version: str) -> str:
    """The bake file for `images` (pure: the same catalog always gives the same text)."""
    registry = images[0].registry
    ordered = [image for image in build_order(images) if image.build]
    names = lambda chosen: ", ".join(_hcl_string(image.id) for image in chosen)  # noqa: E731
    parts = [
        HEADER,
        f'variable "REGISTRY" {{ default = {_hcl_string(registry)} }}',
        'variable "DATE_TAG" { default = "" }  # e.g. 20261105: also push <tag>-<DATE_TAG>',
        f'variable "GPULAB_VERSION" {{ default = {_hcl_string(version)} }}',
        'variable "GIT_REVISION" { default = "unknown" }',
        'variable "BUILD_DATE" { default = "unknown" }  # RFC 3339, for the created label',
        "",
        "# The catalog's moving tag, and a dated one when DATE_TAG is set.",
        'function "tags" {',
        "  params = [repository, tag]",
        '  result = compact(["${REGISTRY}/${repository}:${tag}",',
        '    notequal(DATE_TAG, "") ? "${REGISTRY}/${repository}:${tag}-${DATE_TAG}" : ""])',
        "}",
        "",
        f'group "default" {{ targets = [{names(ordered)}] }}',
        f'group "environments" {{ targets = [{names([i for i in ordered if i.offered])}] }}',
        "",
        'target "_common" {',
        '  platforms = ["linux/amd64"]',
        "  args = { GPULAB_VERSION = GPULAB_VERSION, GIT_REVISION = GIT_REVISION, BUILD_DATE = BUILD_DATE }",
        "}",
    ]
    for image in ordered:
        parts += ["", _target(image)]
    return "\n".join(parts) + "\n"


def catalog_bake_file(catalog: Path | None = None) -> str:
    from gpulab.hub_config import __version__

    return render(load_images(catalog), __version__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpulab.images.bake", description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, help="catalog file (default: the one shipped with gpulab)")
    parser.add_argument("--output", type=Path, help=f"bake file (default: {BAKE_FILE} beside the catalog)")
    parser.add_argument("--check", action="store_true", help="exit 1 if the bake file is not what the catalog says")
    args = parser.parse_args(argv)
    output = args.output or (args.catalog or default_catalog_path()).parent / BAKE_FILE
    wanted = catalog_bake_file(args.catalog)
    if args.check:
        current = output.read_text() if output.exists() else ""
        if current != wanted:
            sys.stderr.write(f"{output} is out of date: run `python -m gpulab.images.bake`\n")
            return 1
        return 0
    output.write_text(wanted)
    sys.stdout.write(f"wrote {output}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The catalog's build hierarchy (build-only images, parents) and the bake file generated from it."""

from __future__ import annotations

import posixpath

import hcl2
import pytest

from gpulab.hub_config import __version__
from gpulab.hub_config.settings import ConfigError
from gpulab.images.bake import BAKE_FILE, build_order, catalog_bake_file, main, render
from gpulab.images.catalog import default_catalog_path, load_catalog, load_images, parse_catalog, parse_images

ENV = ("{{id: {id}, display_name: X, description: d, image: x, tag: t, gpu: false, python: '3.12', "
       "approx_size_gb: 1, local_python: '', parent: '{parent}'}}")


def catalog(*environments: str, build_images: str = "") -> str:
    text = "registry: r.example/team\n"
    if build_images:
        text += f"build_images:\n{build_images}"
    return text + "environments:\n" + "".join(f"  - {e}\n" for e in environments)


BASE = "  - {id: base, description: root, image: base, tag: py, build: base}\n"


def test_the_shipped_catalog_builds_every_environment_from_base():
    images = {image.id: image for image in load_images()}
    assert {"base", "hub"} <= set(images)
    assert not images["base"].offered and not images["hub"].offered
    for environment in load_catalog():
        chain, image = [], images[environment.id]
        while image.parent:
            chain.append(image.parent)
            image = images[image.parent]
        assert chain[-1] == "base", environment.id
        assert environment.build and images[environment.id].offered
    assert images["hub"].tag == __version__


def test_build_only_images_are_not_offered_and_parents_resolve():
    text = catalog(ENV.format(id="cpu", parent="base"), build_images=BASE)
    assert [e.id for e in parse_catalog(text)] == ["cpu"]
    images = parse_images(text)
    assert [(i.id, i.parent, i.offered, i.reference) for i in images] == [
        ("base", "", False, "r.example/team/base:py"),
        ("cpu", "base", True, "r.example/team/x:t"),
    ]


def test_an_unknown_parent_is_named_with_its_key_path():
    with pytest.raises(ConfigError, match=r"environments\[0\]\.parent: 'gpu-base' is not an image in the catalog"):
        parse_catalog(catalog(ENV.format(id="cpu", parent="gpu-base"), build_images=BASE))


def test_a_parent_cycle_is_refused():
    text = catalog(ENV.format(id="a", parent="b"), ENV.format(id="b", parent="a"))
    with pytest.raises(ConfigError, match=r"environments\[0\]\.parent: 'a' is its own ancestor"):
        parse_catalog(text)


def test_ids_must_be_unique_across_build_images_and_environments():
    with pytest.raises(ConfigError, match="id 'base' appears more than once"):
        parse_catalog(catalog(ENV.format(id="base", parent=""), build_images=BASE))


def test_a_build_folder_must_be_a_relative_path_under_images():
    bad = BASE.replace("build: base", "build: ../etc")
    with pytest.raises(ConfigError, match=r"build_images\[0\]\.build: got \"\.\./etc\""):
        parse_images(catalog(ENV.format(id="cpu", parent="base"), build_images=bad))


def test_parents_are_built_first_whatever_the_catalog_order():
    text = catalog(ENV.format(id="torch", parent="cpu"), ENV.format(id="cpu", parent="base"), build_images=BASE)
    assert [i.id for i in build_order(parse_images(text))] == ["base", "cpu", "torch"]


def test_the_committed_bake_file_is_what_the_catalog_says():
    committed = default_catalog_path().parent / BAKE_FILE
    assert committed.read_text() == catalog_bake_file(), "run `python -m gpulab.images.bake`"
    assert main(["--check"]) == 0


def test_the_check_fails_on_a_stale_bake_file(tmp_path, capsys):
    stale = tmp_path / BAKE_FILE
    stale.write_text(catalog_bake_file().replace("cuda12-pytorch", "cuda11-pytorch"))
    assert main(["--check", "--output", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err


def test_the_bake_file_builds_each_image_from_its_parent_target():
    """Parsed as HCL (what `docker buildx bake` reads); no buildx here to run `--print`."""
    images = load_images()
    plain = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
    document = hcl2.loads(render(images, "1.2.3"), serialization_options=plain)
    targets = {name: body for block in document["target"] for name, body in block.items()}
    groups = {name: body for block in document["group"] for name, body in block.items()}
    order = groups["default"]["targets"]
    assert sorted(order) == sorted(i.id for i in images)
    assert groups["environments"]["targets"] == [i.id for i in build_order(images) if i.offered]
    for image in images:
        target = targets[image.id]
        assert target["inherits"] == ["_common"]
        assert f'tags("{image.name}", "{image.tag}")' in str(target["tags"])
        if image.parent:
            assert target["contexts"] == {"parent": f"target:{image.parent}"}
            assert target["args"] == {"PARENT_IMAGE": "parent", **dict(image.build_args)}
            assert target["context"] == f"images/{image.build}"
            # the Dockerfile's path is relative to the context; a shared one gets the catalog's values
            assert posixpath.normpath(posixpath.join(target["context"], target["dockerfile"])) == \
                f"images/{image.dockerfile_folder}/Dockerfile"
            if image.dockerfile:
                assert dict(image.build_args)["ENVIRONMENT_ID"] == image.id
            assert order.index(image.parent) < order.index(image.id)
        else:
            assert target["context"] == "." and target["dockerfile"] == f"images/{image.build}/Dockerfile"
    variables = {name: body for block in document["variable"] for name, body in block.items()}
    assert variables["GPULAB_VERSION"]["default"] == "1.2.3"
    assert variables["REGISTRY"]["default"] == images[0].registry


def test_gpu_environments_carry_nvidias_gpu_dashboards_and_cpu_ones_do_not():
    """jupyterlab-nvdashboard reads every GPU NVML sees: in a GPU container only that container's
    (the device plugin's or the engine's device request), so it goes into the GPU images alone;
    gpulab's own local Python does not get it (there NVML sees every GPU of the machine)."""
    from pathlib import Path

    images = Path(default_catalog_path()).parent
    for environment in load_catalog():
        requirements = images / environment.build / "requirements.txt" if environment.build else None
        pinned = requirements is not None and requirements.is_file() and any(
            line.startswith("jupyterlab-nvdashboard==") for line in requirements.read_text().splitlines())
        assert ("jupyterlab-nvdashboard" in environment.tools, pinned) == (environment.gpu, environment.gpu), environment.id

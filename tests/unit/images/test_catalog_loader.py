"""The image catalog loader: the shipped catalog, and problems named by entry."""

from __future__ import annotations

import pytest

from gpulab.hub_config.settings import ConfigError
from gpulab.images.catalog import load_catalog, parse_catalog


def test_the_shipped_catalog_is_valid_and_has_a_cpu_environment():
    environments = load_catalog()
    cpu = [e for e in environments if not e.gpu]
    assert cpu and all(e.cuda is None for e in cpu)
    assert all(e.image.count(":") == 1 for e in environments)


def test_catalog_problems_name_the_entry():
    text = ("registry: r\nenvironments:\n  - id: a\n    display_name: A\n    description: d\n    image: a\n"
            "    tag: t\n    gpu: maybe\n    python: '3.12'\n    approx_size_gb: 1\n    local_python: ''\n")
    with pytest.raises(ConfigError, match=r"environments\[0\].gpu: got \"maybe\""):
        parse_catalog(text)


def test_duplicate_ids_are_refused():
    entry = ("  - {id: a, display_name: A, description: d, image: a, tag: t, gpu: false, python: '3.12', "
             "approx_size_gb: 1, local_python: ''}\n")
    with pytest.raises(ConfigError, match="id 'a' appears more than once"):
        parse_catalog("registry: r\nenvironments:\n" + entry + entry)

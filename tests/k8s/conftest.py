"""The Kubernetes tests' hub: gpulab on the kubernetes backend, on the emulated cluster (tests/conftest.py's
`cluster`), one per test module."""

from __future__ import annotations

import pytest

from tests.support.cluster import NAMESPACE
from tests.support.gpu_hub import catalog


TUNED = {
    "id": "tuned", "display_name": "Tuned", "kubespawner_override": {"extra_labels": {"team": "ml"}},
    "profile_options": {"image": {
        "display_name": "Image",
        "choices": {"minimal": {"display_name": "Minimal", "default": True,
                                "kubespawner_override": {"image": "test/minimal:1"}},
                    "scipy": {"display_name": "SciPy", "kubespawner_override": {
                        "image": "test/scipy:2", "environment": {"FLAVOUR": "scipy"}, "mem_limit": "6G"}}},
        "unlisted_choice": {"enabled": True, "display_name": "Image", "validation_regex": "^test/",
                            "validation_message": "images come from test/", "kubespawner_override": {"image": "{value}"}},
    }},
}


@pytest.fixture(scope="module")
def hub(module_hub_factory, cluster, tmp_path_factory):
    folder = tmp_path_factory.mktemp("kube-hub")
    kubeconfig = cluster.kubeconfig(folder)
    return module_hub_factory.start({
        "spawner": {"backend": "kubernetes", "kubernetes": {"namespace": NAMESPACE}},
        "profiles": [
            {"id": "cpu", "display_name": "CPU", "default": True, "cpu": {"limit": 2}, "memory": {"limit": "4G"}},
            {"id": "a100", "display_name": "1 A100", "gpu": {"count": 1, "models": ["A100"]}, "memory": {"limit": "8G"}},
            {"id": "quad", "display_name": "4 GPUs", "gpu": {"count": 4}},
            TUNED,  # tests/k8s/test_scheduler_jobs.py: options for a run as for a server
        ],
        "environments": {"catalog": str(catalog(folder))},
        "quotas": {"users": {"capped": {"max_gpus": 1}}},  # tests/k8s/test_scheduler_jobs.py
    }, name="kube", extra_env={"KUBECONFIG": str(kubeconfig)})

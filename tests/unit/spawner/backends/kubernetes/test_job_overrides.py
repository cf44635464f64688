"""A run's Job pod gets its profile's and chosen options' KubeSpawner overrides (pure builders).

The expected pods are literal dicts; KubeSpawner's own merge (kubespawner.utils.recursive_update)
decides dicts, None and lists, as for a server's pod (tests/k8s/test_scheduler_jobs.py compares
a run's pod with a server's of the same choices through a real hub).
"""

from __future__ import annotations

import copy

import pytest

from gpulab.spawner.backends.kubernetes.job_overrides import apply_overrides, unsupported


JOB = {
    "spec": {"template": {
        "metadata": {"labels": {"gpulab.dev/run": "r1"}, "annotations": {"gpulab.dev/owner": "ann"}},
        "spec": {
            "containers": [{
                "image": "test/cpu:t", "imagePullPolicy": "IfNotPresent",
                "env": [{"name": "A", "value": "1"}, {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"},
                        {"name": "GPULAB_RUN_TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "t"}}}],
                "resources": {"limits": {"cpu": "2", "memory": "4000000000"}},
                "volumeMounts": [{"name": "home", "mountPath": "/home/jovyan"}],
            }],
            "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": "claim-ann"}}],
            "nodeSelector": {"pool": "cpu"},
        },
    }},
}


def test_no_overrides_leave_the_job_as_built():
    assert apply_overrides(JOB, [{}, {}]) is JOB


def test_overrides_apply_in_order_with_kubespawners_merge():
    before = copy.deepcopy(JOB)
    job = apply_overrides(JOB, [
        {"image": "test/minimal:1", "extra_labels": {"team": "ml", "gpulab.dev/run": "spoofed"},
         "environment": {"B": "2"}},
        {"image": "test/scipy:2", "mem_limit": "8G", "cpu_guarantee": 0.5,
         "extra_resource_limits": {"ephemeral-storage": "10Gi"},
         "environment": {"A": None, "FLAVOUR": "scipy"},  # None removes, as in z2jh's extraEnv
         "node_selector": {"pool": "gpu", "zone": "b"},
         "tolerations": [{"key": "gpu", "operator": "Exists"}],
         "volumes": [{"name": "scratch", "emptyDir": {}}], "volume_mounts": [{"name": "scratch", "mountPath": "/s"}],
         "start_timeout": 600},  # an interactive server's only: no meaning for a run
    ])
    assert JOB == before  # a new dict
    template = job["spec"]["template"]
    pod, container = template["spec"], template["spec"]["containers"][0]
    assert container["image"] == "test/scipy:2"
    assert container["resources"] == {"limits": {"ephemeral-storage": "10Gi", "cpu": "2", "memory": str(8 << 30)},
                                      "requests": {"cpu": "0.5"}}
    assert container["env"] == [
        {"name": "B", "value": "2"}, {"name": "FLAVOUR", "value": "scipy"},
        {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"},
        {"name": "GPULAB_RUN_TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "t"}}},
    ]
    assert pod["nodeSelector"] == {"pool": "gpu", "zone": "b"}  # a dict is merged
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    assert pod["volumes"] == [{"name": "scratch", "emptyDir": {}}]  # a list is replaced, as KubeSpawner does
    assert container["volumeMounts"] == [{"name": "scratch", "mountPath": "/s"}]
    assert template["metadata"]["labels"] == {"team": "ml", "gpulab.dev/run": "r1"}  # gpulab's own labels win


@pytest.mark.parametrize("overrides, refused", [
    ([{"image": "x", "start_timeout": 5}], []),
    ([{"lifecycle_hooks": {}}, {"privileged": True}], ["privileged"]),
    ([{"extra_container_config": {}}, {"uid": 0, "image": "x"}], ["extra_container_config", "uid"]),
])
def test_settings_a_run_cannot_honour_are_named(overrides, refused):
    assert unsupported(overrides) == refused

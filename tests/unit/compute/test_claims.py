"""One claim for servers and runs: typed refusals, what each purpose counts, the two pools."""

from __future__ import annotations

import pytest

from gpulab.compute.availability import Availability
from gpulab.compute.claims import ClusterPool, DevicesBusy, OverQuota, Purpose, Refused, Standing, claim
from gpulab.compute.processes import ProcessRef
from gpulab.compute.profiles import GpuRequest, Profile

CPU = Profile("cpu", "CPU")
GPU = Profile("gpu", "1 GPU", gpu=GpuRequest(1))
QUOTAS = {"default": {"max_gpus": 2, "max_servers": 1}, "users": {}, "groups": {"ml": {"max_gpus": 3}}}


def cluster(held: dict, free: int = 4) -> ClusterPool:
    return ClusterPool(lambda: held, lambda profile: Availability(free, 4, f"{free} of 4 GPUs free", free >= 1))


def test_a_server_counts_towards_max_servers_and_a_run_does_not():
    standing = Standing(servers=1)
    with pytest.raises(OverQuota, match="^over quota: ann runs 1 of 1 servers allowed$"):
        claim("ann", [], Purpose.server("ann", "two"), CPU, quotas=QUOTAS, standing=standing, pool=None)
    assert claim("ann", [], Purpose.run("7"), CPU, quotas=QUOTAS, standing=standing, pool=None) is None


def test_gpus_held_by_the_owner_and_by_the_group_count_for_every_purpose():
    for purpose in (Purpose.server("ann", ""), Purpose.run("7")):
        with pytest.raises(OverQuota, match="ann holds 2 of 2 GPUs allowed and this needs 1 more"):
            claim("ann", [], purpose, GPU, quotas=QUOTAS, standing=Standing(), pool=cluster({"ann": 2}))
        group = Standing(group_members={"ml": ("ann", "bob")})
        with pytest.raises(OverQuota, match="group ml holds 3 of 3 GPUs allowed"):
            claim("ann", ["ml"], purpose, GPU, quotas=QUOTAS, standing=group, pool=cluster({"ann": 1, "bob": 2}))


def test_a_cluster_pool_refuses_when_no_node_has_the_gpus_free_or_leaves_it_to_the_cluster():
    with pytest.raises(DevicesBusy, match="^full: 0 of 4 GPUs free$") as busy:
        claim("ann", [], Purpose.server("ann", ""), GPU, quotas=QUOTAS, standing=Standing(), pool=cluster({}, free=0))
    assert isinstance(busy.value, Refused) and not isinstance(busy.value, OverQuota)
    queued = ClusterPool(lambda: {})  # a Job waits in the cluster's queue
    granted = claim("ann", [], Purpose.run("7"), GPU, quotas=QUOTAS, standing=Standing(), pool=queued)
    assert granted.claim_id == "" and granted.devices == () and granted.purpose == "run:7"


def test_purposes_read_as_the_ledger_records_them():
    assert str(Purpose.server("alice", "gpu")) == "server:alice/gpu" and str(Purpose.run("42")) == "run:42"


def test_a_process_reference_reads_back_what_it_wrote():
    assert ProcessRef.parse(str(ProcessRef(42, 1234))) == ProcessRef(42, 1234)
    assert ProcessRef.parse("42:None") == ProcessRef(42, None)  # a process that was gone before it was read

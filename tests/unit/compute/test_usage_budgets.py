"""Monthly GPU-hour budgets through compute's one claim: refusals typed as OverBudget with what
was used, warnings from 80%, per user, group and project, a new month starting afresh, from the
local pool and from a cluster's (a real SQLite ledger and a controllable clock; no GPU)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from gpulab.compute.claims import ClusterPool, OverBudget, OverQuota, Purpose, Standing, claim
from gpulab.compute.inventory import Device
from gpulab.compute.ledger import Ledger, LocalPool
from gpulab.compute.profiles import GpuRequest, Profile
from gpulab.compute.usage_report import spent_reader
from gpulab.db import make_engine, make_session_factory
from gpulab.db.migrate import upgrade

DEVICES = [Device(f"GPU-{i}", "NVIDIA A100", 81920, "570.86.15", str(i)) for i in range(4)]
GPU = Profile("gpu", "1 GPU", gpu=GpuRequest(1))
START = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc).timestamp()


def quotas(**budgets) -> dict:
    return {"default": {}, "users": {}, "groups": {}, "projects": {}, **budgets}


@pytest.fixture
def pool(tmp_path):
    url = f"sqlite:///{tmp_path / 'gpulab.sqlite'}"
    upgrade(url)
    clock = {"now": START}
    ledger = Ledger(make_session_factory(make_engine(url)), clock=lambda: clock["now"])
    pool = LocalPool(ledger, lambda: DEVICES)
    pool.clock = clock
    return pool


def use(pool, owner: str, hours: float, project: str = "") -> None:
    """`owner` holds one GPU for `hours` (no budget applies while it is taken)."""
    held = claim(owner, [], Purpose.run("x", project), GPU, quotas=quotas(), standing=Standing(), pool=pool)
    pool.clock["now"] += hours * 3600
    pool.release(held.claim_id)


def test_a_spent_user_budget_refuses_with_what_was_used_and_when_it_renews(pool):
    budget = quotas(default={"gpu_hours_per_month": 2})
    use(pool, "ann", 1.5)
    granted = claim("ann", [], Purpose.server("ann", ""), GPU, quotas=budget, standing=Standing(), pool=pool)
    assert granted.warnings == ()  # 75%: under the warning
    pool.clock["now"] += 0.5 * 3600
    pool.release(granted.claim_id)
    with pytest.raises(OverBudget) as refused:
        claim("ann", [], Purpose.run("7"), GPU, quotas=budget, standing=Standing(), pool=pool)
    assert refused.value.message == "over budget: ann used 2.00 of 2 GPU-hours this month; none left until 2026-12-01"
    assert isinstance(refused.value, OverQuota)  # shown like a quota refusal (403 for a spawn)
    assert claim("bob", [], Purpose.run("8"), GPU, quotas=budget, standing=Standing(), pool=pool).devices


def test_from_80_percent_a_claim_is_granted_with_a_warning(pool):
    use(pool, "ann", 1.7)
    granted = claim("ann", [], Purpose.run("7"), GPU, quotas=quotas(users={"ann": {"gpu_hours_per_month": 2}}),
                    standing=Standing(), pool=pool)
    assert granted.warnings == ("ann has used 1.70 of 2 GPU-hours this month (85%); 0.30 left",)


def test_group_and_project_budgets_count_their_members_and_their_claims(pool):
    use(pool, "ann", 1)
    use(pool, "bob", 2, project="vision")
    group = quotas(groups={"ml": {"gpu_hours_per_month": 3}})
    standing = Standing(group_members={"ml": ("ann", "bob")})
    with pytest.raises(OverBudget, match="over budget: group ml used 3.00 of 3 GPU-hours"):
        claim("ann", ["ml"], Purpose.server("ann", ""), GPU, quotas=group, standing=standing, pool=pool)
    project = quotas(projects={"vision": {"gpu_hours_per_month": 2}})
    with pytest.raises(OverBudget, match="over budget: project vision used 2.00 of 2"):
        claim("carl", [], Purpose.run("9", "vision"), GPU, quotas=project, standing=Standing(), pool=pool)
    assert claim("carl", [], Purpose.run("9", "nlp"), GPU, quotas=project, standing=Standing(), pool=pool)


def test_a_new_month_starts_afresh(pool):
    use(pool, "ann", 3)
    pool.clock["now"] = datetime(2026, 12, 1, 0, 5, tzinfo=timezone.utc).timestamp()
    assert claim("ann", [], Purpose.run("7"), GPU, quotas=quotas(default={"gpu_hours_per_month": 2}),
                 standing=Standing(), pool=pool).devices == ("GPU-0",)


def test_a_cluster_pool_enforces_budgets_from_the_usage_ledger(pool):
    """On Kubernetes the usage service records the pods' intervals in the same ledger
    (tests/unit/extensions/usage/test_usage_cluster.py); the cluster's pool reads this month's
    GPU-hours from it before a claim."""
    use(pool, "ann", 1.7)
    use(pool, "bob", 2.5, project="vision")
    now = lambda: datetime.fromtimestamp(pool.clock["now"], timezone.utc)  # noqa: E731
    cluster = ClusterPool(dict, spent=spent_reader(pool.ledger.sessions, now))
    budget = quotas(default={"gpu_hours_per_month": 2}, projects={"vision": {"gpu_hours_per_month": 3}})
    granted = claim("ann", [], Purpose.server("ann", ""), GPU, quotas=budget, standing=Standing(), pool=cluster)
    assert granted.warnings == ("ann has used 1.70 of 2 GPU-hours this month (85%); 0.30 left",)
    with pytest.raises(OverBudget) as refused:
        claim("bob", [], Purpose.run("7"), GPU, quotas=budget, standing=Standing(), pool=cluster)
    assert refused.value.message == "over budget: bob used 2.50 of 2 GPU-hours this month; none left until 2026-12-01"
    with pytest.raises(OverBudget, match="over budget: project vision used 2.50 of 2.5 GPU-hours"):
        claim("carl", [], Purpose.run("8", "vision"), GPU,
              quotas=quotas(projects={"vision": {"gpu_hours_per_month": 2.5}}),
              standing=Standing(), pool=cluster)
    pool.clock["now"] = datetime(2026, 12, 1, 0, 5, tzinfo=timezone.utc).timestamp()  # a new month
    assert claim("bob", [], Purpose.run("9"), GPU, quotas=budget, standing=Standing(), pool=cluster).warnings == ()


def test_without_the_usage_ledger_a_cluster_pool_enforces_no_budget():
    """A pool given no `spent` (no database to read) cannot count GPU-hours: quotas still hold."""
    granted = claim("ann", [], Purpose.run("7"), GPU, quotas=quotas(default={"gpu_hours_per_month": 0}),
                    standing=Standing(), pool=ClusterPool(dict))
    assert granted.warnings == ()

"""Quotas of users and groups, with the reason a claim is refused."""

from __future__ import annotations

from gpulab.compute.quotas import Usage, quota_problem
from gpulab.hub_config.typed_settings import Quotas


QUOTAS = Quotas.model_validate({"default": {"max_gpus": 2, "max_servers": 3},
                                "users": {"bob": {"max_gpus": None, "max_servers": 1}},
                                "groups": {"ml": {"max_gpus": 4, "max_servers": None}}})


def test_quotas_for_users_and_shared_group_budgets():
    assert quota_problem(QUOTAS, "carol", [], 1, 1, Usage(1, 1), {}) is None
    assert quota_problem(QUOTAS, "carol", [], 2, 1, Usage(1, 1), {}) == (
        "over quota: carol holds 1 of 2 GPUs allowed and this needs 2 more")
    assert quota_problem(QUOTAS, "carol", [], 0, 1, Usage(0, 3), {}) == "over quota: carol runs 3 of 3 servers allowed"
    assert quota_problem(QUOTAS, "bob", [], 8, 0, Usage(6, 0), {}) is None  # bob's own entry: no GPU limit
    assert quota_problem(QUOTAS, "carol", ["ml"], 1, 1, Usage(0, 0), {"ml": Usage(4, 2)}) == (
        "over quota: group ml holds 4 of 4 GPUs allowed and this needs 1 more")

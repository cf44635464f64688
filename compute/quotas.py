"""Quotas (pure): a user's own limits and the budgets their groups share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpulab.hub_config.typed_settings import QuotaLimits, Quotas


@dataclass(frozen=True)
class Usage:
    gpus: int = 0
    servers: int = 0


def user_limits(quotas: Quotas, user: str) -> QuotaLimits:
    return quotas.users.get(user, quotas.default)


def quota_problem(quotas: Quotas, user: str, groups, gpus: int, servers: int,
                  user_usage: Usage, group_usage: dict[str, Usage]) -> str | None:
    """Why starting `servers` more servers with `gpus` more GPUs would break a quota, or None."""
    limits = user_limits(quotas, user)
    problem = _over(f"{user}", limits, gpus, servers, user_usage)
    if problem:
        return problem
    for group in sorted(set(groups) & set(quotas.groups)):
        problem = _over(f"group {group}", quotas.groups[group], gpus, servers, group_usage.get(group, Usage()))
        if problem:
            return problem
    return None


def _over(who: str, limits: QuotaLimits, gpus: int, servers: int, usage: Usage) -> str | None:
    max_servers, max_gpus = limits.max_servers, limits.max_gpus
    if servers and max_servers is not None and usage.servers + servers > max_servers:
        return f"over quota: {who} runs {usage.servers} of {max_servers} servers allowed"
    if gpus and max_gpus is not None and usage.gpus + gpus > max_gpus:
        return f"over quota: {who} holds {usage.gpus} of {max_gpus} GPUs allowed and this needs {gpus} more"
    return None

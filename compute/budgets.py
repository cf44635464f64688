"""Monthly GPU-hour budgets (pure): per user, per hub group (its members together), per project.

A budget is spent when the GPU-hours used this calendar month (UTC, from the usage ledger)
reach it; a claim is refused then, since how long a new claim will hold its GPUs is not known.
From 80% on, a claim is granted with a warning saying what is left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpulab.hub_config.typed_settings import ProjectBudget, QuotaLimits, Quotas

WARN_AT = 0.8


@dataclass(frozen=True)
class Spent:
    """GPU-hours used this month, by owner and by project (from the usage ledger)."""

    month: datetime  # its first instant
    by_owner: dict[str, float] = field(default_factory=dict)
    by_project: dict[str, float] = field(default_factory=dict)

    def next_month(self) -> str:
        year, month = (self.month.year + 1, 1) if self.month.month == 12 else (self.month.year, self.month.month + 1)
        return f"{year}-{month:02d}-01"


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _budget(limits: QuotaLimits | ProjectBudget | None) -> float | None:
    return limits.gpu_hours_per_month if limits is not None else None


def budget_lines(quotas: Quotas, owner: str, groups, project: str, spent: Spent,
                 group_members: dict[str, tuple[str, ...]]) -> list[tuple[str, float, float]]:
    """(who, GPU-hours used, budget) for every budget that applies to this claim."""
    lines = []
    own = _budget(quotas.users.get(owner, quotas.default))
    if own is not None:
        lines.append((owner, spent.by_owner.get(owner, 0.0), own))
    for group in sorted(set(groups) & set(quotas.groups)):
        budget = _budget(quotas.groups[group])
        if budget is not None:
            used = sum(spent.by_owner.get(m, 0.0) for m in group_members.get(group, ()))
            lines.append((f"group {group}", used, budget))
    budget = _budget(quotas.projects.get(project)) if project else None
    if budget is not None:
        lines.append((f"project {project}", spent.by_project.get(project, 0.0), budget))
    return lines


def budget_problem(lines: list[tuple[str, float, float]], spent: Spent) -> str | None:
    for who, used, budget in lines:
        if used >= budget:
            return (f"over budget: {who} used {used:.2f} of {budget:g} GPU-hours this month; "
                    f"none left until {spent.next_month()}")
    return None


def budget_warnings(lines: list[tuple[str, float, float]]) -> list[str]:
    return [f"{who} has used {used:.2f} of {budget:g} GPU-hours this month ({100 * used / budget:.0f}%); "
            f"{budget - used:.2f} left" for who, used, budget in lines if budget and used >= WARN_AT * budget]

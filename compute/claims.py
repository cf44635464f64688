"""One claim for every purpose: check the owner's quotas, then take GPUs from a pool.

Interactive servers and scheduled runs are two purposes of the same claim, so a quota holds
for both on every backend. Where the GPUs come from is the pool's business: the ledger on
one machine (`ledger.LocalPool`), the cluster's scheduler on Kubernetes (`ClusterPool`).
A refusal is typed: `OverQuota` (403 for a spawn; `OverBudget` when a monthly GPU-hour budget
is spent) or `DevicesBusy` (409, or a run waits). Budgets read the usage ledger: the local pool
in the claim's transaction; a cluster's pool just before it (the usage service fills the ledger
from the cluster's pods), so two claims at the same moment may both pass the last GPU-hours.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Protocol

from .availability import Availability
from .budgets import Spent, budget_lines, budget_problem, budget_warnings
from .profiles import Profile
from .quotas import Usage, quota_problem

if TYPE_CHECKING:  # pydantic only where quotas are checked (runners import compute too)
    from gpulab.hub_config.typed_settings import Quotas


class Refused(Exception):
    """No claim was made; `message` says why, in words for the person who asked."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class OverQuota(Refused):
    """The claim would take the owner or one of their groups past a quota."""


class OverBudget(OverQuota):
    """The owner, one of their groups or the project has spent this month's GPU-hours."""


class DevicesBusy(Refused):
    """The quotas allow it, but not enough devices of the kind asked for are free."""


@dataclass(frozen=True)
class Purpose:
    """What a claim is for; `str(purpose)` is what the ledger records ("server:alice/gpu", "run:42")."""

    kind: str  # "server" or "run"
    name: str
    project: str = ""  # the project it works for, where known (usage and budgets are kept per project)

    @classmethod
    def server(cls, user: str, server_name: str, project: str = "") -> "Purpose":
        return cls("server", f"{user}/{server_name}", project)

    @classmethod
    def run(cls, run_id: str, project: str = "") -> "Purpose":
        return cls("run", run_id, project)

    @property
    def servers(self) -> int:
        """Servers this claim adds towards max_servers: a run is not a server."""
        return 1 if self.kind == "server" else 0

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class Standing:
    """What the owner and their budgeted groups use apart from GPUs, read before the claim."""

    servers: int = 0  # the owner's other running servers
    group_members: dict[str, tuple[str, ...]] = field(default_factory=dict)  # groups with a quota only
    group_servers: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    claim_id: str  # "" where nothing is recorded (the cluster holds the GPUs)
    owner: str
    purpose: str
    devices: tuple[str, ...]  # UUIDs, in the order CUDA should see them; () where the cluster assigns them
    project: str = ""  # what its GPU-hours count towards ("" none); a cluster's pod is annotated with it
    warnings: tuple[str, ...] = ()  # granted, but a budget is 80% spent: what is left


# Raises OverQuota when the GPUs held by each owner leave no room for the claim, or OverBudget
# when this month's GPU-hours (None: the pool keeps no usage ledger) are spent.
QuotaCheck = Callable[[dict[str, int], Spent | None], None]


class Pool(Protocol):
    """Where a backend's GPUs come from."""

    def take(self, owner: str, purpose: str, profile: Profile, check: QuotaCheck, project: str = "") -> Claim:
        """Run `check` on the GPUs each owner holds now (and the GPU-hours spent this month, where
        the pool keeps them), then take the profile's GPUs, atomically where the pool can; raise
        DevicesBusy if they are not free."""

    def release(self, claim_id: str) -> None:
        """Give back what `take` recorded."""


class ClusterPool:
    """A cluster's scheduler allocates the GPUs; gpulab checks quotas against what pods hold.

    `availability` (None: wait in the cluster's queue) refuses at once when no node can take
    the GPUs, which a server needs (a pod left Pending only times out). `spent` reads this
    month's GPU-hours from the usage ledger (None: budgets are not enforced).
    """

    def __init__(self, held: Callable[[], dict[str, int]],
                 availability: Callable[[Profile], Availability | None] | None = None,
                 spent: Callable[[], Spent] | None = None):
        self.held = held
        self.availability = availability
        self.spent = spent

    def take(self, owner: str, purpose: str, profile: Profile, check: QuotaCheck, project: str = "") -> Claim:
        check(self.held(), self.spent() if self.spent else None)
        live = self.availability(profile) if self.availability else None
        if live is not None and not live.enough:
            raise DevicesBusy(f"full: {live.label}")
        return Claim("", owner, purpose, (), project)

    def release(self, claim_id: str) -> None:
        """Nothing to give back: the cluster frees a pod's GPUs when the pod ends."""


def typed_quotas(quotas: Quotas | Mapping[str, Any]) -> Quotas:
    """The `quotas` section typed: the spawner's traits and the scheduler's settings hand it over
    as a dict (missing keys are defaults: no limit)."""
    from gpulab.hub_config.typed_settings import Quotas

    return quotas if isinstance(quotas, Quotas) else Quotas.model_validate(quotas)


def quota_reason(quotas: Quotas | Mapping[str, Any], owner: str, groups, purpose: Purpose, gpus: int,
                 standing: Standing, held: dict[str, int]) -> str | None:
    """Why `purpose` with `gpus` more GPUs would break a quota, given the GPUs each owner `held`; or None."""
    quotas = typed_quotas(quotas)
    group_usage = {g: Usage(sum(held.get(m, 0) for m in members), standing.group_servers.get(g, 0))
                   for g, members in standing.group_members.items()}
    return quota_problem(quotas, owner, groups, gpus, purpose.servers,
                         Usage(held.get(owner, 0), standing.servers), group_usage)


def claim(owner: str, groups, purpose: Purpose, profile: Profile, *, quotas: Quotas | Mapping[str, Any],
          standing: Standing, pool: Pool | None, nodes: int = 1) -> Claim | None:
    """Claim what `profile` needs for `purpose`: None for a CPU profile (nothing to hold), the
    GPUs' claim otherwise. Raises OverQuota or DevicesBusy with the reason.

    `nodes` > 1 (a multi-node job) counts `nodes` times the profile's GPUs against the quotas;
    only a cluster's pool places them, one pod per node."""

    warnings: list[str] = []
    typed = typed_quotas(quotas)

    def check(held: dict[str, int], spent: Spent | None) -> None:
        problem = quota_reason(typed, owner, groups, purpose, profile.gpu.count * nodes, standing, held)
        if problem:
            raise OverQuota(problem)
        if spent is not None:
            lines = budget_lines(typed, owner, groups, purpose.project, spent, standing.group_members)
            problem = budget_problem(lines, spent)
            if problem:
                raise OverBudget(problem)
            warnings.extend(budget_warnings(lines))

    if not profile.uses_gpu:
        check({}, None)  # budgets count GPU-hours: a CPU profile spends none
        return None
    if pool is None:
        raise ValueError("a GPU profile needs a pool to claim from")
    if nodes > 1 and not isinstance(pool, ClusterPool):
        raise ValueError("only a cluster's pool places a job on several nodes")
    granted = pool.take(owner, str(purpose), profile, check, project=purpose.project)
    return replace(granted, warnings=tuple(warnings)) if warnings else granted

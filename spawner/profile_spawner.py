"""The GPU-profile logic every backend shares, written once.

A spawn: resolve the user's choice of profile and environment (400 unknown, 403 not
theirs, no silent fallback), claim its compute through `gpulab.compute.claims.claim`
(quotas, then GPUs from the backend's pool: the ledger locally, the Kubernetes scheduler in
a cluster), then let the backend start the server with a plan built fresh for this spawn.
Nothing about a profile is written onto the spawner's configuration, so nothing leaks into
the next spawn.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jupyterhub import orm
from jupyterhub.spawner import Spawner
from tornado import web
from traitlets import Any, Instance, List, Tuple, Unicode, default

from gpulab.compute.availability import Availability, profile_availability
from gpulab.compute.claims import OverQuota, Pool, Purpose, Refused, Standing, claim, quota_reason
from gpulab.compute.inventory import CachedInventory, Device, load_inventory
from gpulab.compute.ledger import Ledger, LocalPool, gpus_by_owner
from gpulab.compute.limits import Limits, profile_limits
from gpulab.compute.profile_options import ChosenOption, OptionError, resolve_options
from gpulab.compute.profiles import ChoiceError, Profile, profile_from_settings, resolve_profile, unknown_options, visible_profiles
from gpulab.db import make_engine, make_session_factory
from gpulab.images.catalog import Environment, load_catalog

from .environments import offered, options_for, resolve_environment
from .form import options_from_form, profile_cards, render_form
from .hub_shared import shared_made_from, shared_value
from .project_choice import projects_for_servers, resolve_project
from .refusals import forget_refused_spawn, is_refusal

if TYPE_CHECKING:
    from gpulab.hub_config.typed_settings import Environments, Quotas
    from gpulab.hub_config.typed_settings import Profile as ProfileSettings

FULL = 409  # the profile exists and is allowed, but its GPUs are all in use
OVER_QUOTA = 403


@dataclass(frozen=True)
class SpawnPlan:
    """Everything one spawn needs, resolved from the user's choice."""

    profile: Profile
    environment: Environment
    options: tuple[ChosenOption, ...] = ()
    project: str = ""  # the project its hours count towards ("" for the user's own)

    @property
    def limits(self) -> Limits:
        return profile_limits(self.profile)

    @property
    def kubespawner_overrides(self) -> list[dict]:
        """KubeSpawner overrides in the order they apply: the profile's, then each chosen option's."""
        return [self.profile.kubespawner_override] + [o.kubespawner_override for o in self.options]


@dataclass(frozen=True)
class GpuSnapshot:
    """GPU use at one moment: what exists, what is taken, and who holds how many."""

    devices: list[Device]
    claimed: set[str]
    held_by_owner: dict[str, int]

    def availability(self, profile: Profile) -> Availability | None:
        return profile_availability(profile, self.devices, self.claimed)


NO_GPUS = GpuSnapshot([], set(), {})


def _options_are_applied_at_admission(spawner, options: dict) -> None:
    """See ProfileSpawnerMixin.admit."""


class ProfileSpawnerMixin(Spawner):
    """Mix in before a backend (LocalSpawner, KubeSpawner subclass); configured as `c.ProfileSpawnerMixin`."""

    # The settings' sections, typed (gpulab.hub_config.typed_settings: frozen, so every spawner
    # shares them as they are); apply_config sets them, and they cannot be set by hand (hand_set.py).
    profile_settings = Tuple(
        help="""The `profiles` section of gpulab.yaml: typed_settings.Profile each. Default () (one CPU profile).""",
    ).tag(config=True)

    environment_settings = Instance(
        "gpulab.hub_config.typed_settings.Environments", args=(),
        help="""The `environments` section of gpulab.yaml, typed. Default: the whole built-in catalog.""",
    ).tag(config=True)

    quota_settings = Instance(
        "gpulab.hub_config.typed_settings.Quotas", args=(),
        help="""The `quotas` section of gpulab.yaml, typed. Default: no quotas.""",
    ).tag(config=True)

    database_url = Unicode(
        "",
        help="""gpulab's database (the GPU ledger). Default "" (no ledger; GPU profiles cannot start
        locally). Example "sqlite:////srv/gpulab/.gpulab/gpulab.sqlite".""",
    ).tag(config=True)

    inventory_class = Unicode(
        "gpulab.compute.inventory:NvmlInventory",
        help="""Where the local GPU inventory comes from, as "module:Class". Default the NVML reader.""",
    ).tag(config=True)

    claim_id = Unicode("")
    devices: List[str] = List()
    profile_id = Unicode("")
    environment_id = Unicode("")
    # The user_options of this server's last admitted spawn (None: never admitted); kept in its
    # state so a refused spawn can put them back.
    accepted_options = Any(None)
    # The plan of the spawn being started (profile, environment, limits), set by `admit`; None
    # before the first admission in this hub process.
    spawn_plan = Any(None)

    # ------------------------------------------------------------ configuration, parsed once

    @property
    def profiles(self) -> tuple[Profile, ...]:
        """The profiles from settings, as compute profiles (made once per hub)."""

        def make(items: tuple[ProfileSettings, ...]) -> tuple[Profile, ...]:
            from gpulab.hub_config.typed_settings import DEFAULT_PROFILE

            return tuple(profile_from_settings(item) for item in items or (DEFAULT_PROFILE,))

        return shared_made_from(self, "profiles", self.profile_settings, make)

    @property
    def environments(self) -> list[Environment]:
        """The catalog's environments the settings offer (read once per hub)."""

        def make(settings: Environments) -> list[Environment]:
            catalog = load_catalog(Path(settings.catalog) if settings.catalog else None)
            return offered(catalog, settings)

        return shared_made_from(self, "environments", self.environment_settings, make)

    @property
    def quotas(self) -> Quotas:
        return self.quota_settings

    @property
    def inventory(self) -> CachedInventory:
        return shared_value(self, ("inventory", self.inventory_class),
                            lambda: CachedInventory(load_inventory(self.inventory_class)))

    @property
    def ledger(self) -> Ledger | None:
        if not self.database_url:
            return None
        return shared_value(self, ("ledger", self.database_url),
                            lambda: Ledger(make_session_factory(make_engine(self.database_url))))

    # ------------------------------------------------------------ backend hooks

    def gpu_devices(self) -> list[Device]:
        """Devices this backend allocates from (locally: the inventory)."""
        return self.inventory.devices()

    def gpu_driver(self, profile: Profile) -> str | None:
        return self.inventory.driver()

    def python_exists(self):
        """A check that an environment's Python is installed, or None where that does not apply."""
        return None

    async def gpu_snapshot(self) -> GpuSnapshot:
        """Devices, live claims and holdings from the ledger (the local way)."""
        if self.ledger is None:
            return NO_GPUS
        claims = await asyncio.to_thread(self.ledger.live_claims)
        return GpuSnapshot(self.gpu_devices(), {c.device_uuid for c in claims}, gpus_by_owner(claims))

    # ------------------------------------------------------------ who is asking

    def _user_groups(self) -> list[str]:
        return [g.name for g in self.user.groups]

    def _standing(self) -> Standing:
        """Read from the hub in the event loop, before a claim (the hub's database is not thread-safe)."""
        groups = self._user_groups()
        servers = sum(1 for s in self.user.spawners.values() if s is not self and s.active)
        budgeted = [g for g in groups if g in self.quotas.groups]
        members, group_servers = {}, {}
        db = self.user.db
        for name in budgeted:
            group = orm.Group.find(db, name)
            members[name] = tuple(u.name for u in group.users) if group else ()
            group_servers[name] = (db.query(orm.Spawner).join(orm.User).filter(orm.User.groups.any(name=name))
                                   .filter(orm.Spawner.server_id.isnot(None)).count())
        return Standing(servers, members, group_servers)

    @property
    def purpose(self) -> Purpose:
        return Purpose.server(self.user.name, self.name, self.spawn_plan.project if self.spawn_plan else "")

    # ------------------------------------------------------------ the spawn form

    @default("options_form")
    def _options_form_default(self):
        return lambda spawner: spawner.render_options_form()

    @default("options_from_form")
    def _options_from_form_default(self):
        return options_from_form

    @default("apply_user_options")
    def _apply_user_options_default(self):
        # The options are read, checked and refused with a 4xx in admit(); saying so keeps
        # JupyterHub from logging "Received unhandled user_options" at every spawn.
        return _options_are_applied_at_admission

    def prewarm(self) -> None:
        """Get ready for a spawn that is likely to follow (a backend with a warm start overrides this)."""

    async def render_options_form(self) -> str:
        self.prewarm()  # the user is about to choose and click Start
        profiles = visible_profiles(self.profiles, self.user.name, self._user_groups(), self.user.admin)
        snapshot = await self.gpu_snapshot() if any(p.uses_gpu for p in profiles) else NO_GPUS
        standing, groups = self._standing(), self._user_groups()
        environments = {p.id: options_for(p, self.environments, self.gpu_driver(p), self.python_exists())
                        for p in profiles}
        availability = {p.id: snapshot.availability(p) for p in profiles}
        over_quota = {p.id: quota_reason(self.quotas, self.user.name, groups, self.purpose, p.gpu.count, standing,
                                         snapshot.held_by_owner) for p in profiles}
        previous = (self.orm_spawner.user_options or {}) if self.orm_spawner else {}
        cards = profile_cards(profiles, availability, over_quota, environments, previous.get("profile"))
        return render_form(cards, self.environment_settings.default, projects_for_servers(groups),
                           previous.get("project", ""))

    # ------------------------------------------------------------ the spawn

    def plan_spawn(self, options: dict) -> SpawnPlan:
        """Resolve the user's choice; HTTP 400/403 with the reason when it is refused."""
        try:
            profile = resolve_profile(self.profiles, options, self.user.name, self._user_groups(), self.user.admin)
            extra = unknown_options(options, profile)
            if extra:
                expected = ", ".join(["profile", "environment", "project"] + [o.name for o in profile.options])
                raise ChoiceError(400, f"unknown option(s): {', '.join(extra)}; expected {expected}")
            chosen = resolve_options(profile.id, profile.options, options)
            choices = options_for(profile, self.environments, self.gpu_driver(profile), self.python_exists())
            environment = resolve_environment(profile, choices, options.get("environment"),
                                              self.environment_settings.default)
            project = resolve_project(options.get("project"), self.user.name, self._user_groups())
        except ChoiceError as refused:
            raise web.HTTPError(refused.status, refused.message) from None
        except OptionError as refused:
            raise web.HTTPError(400, str(refused)) from None
        return SpawnPlan(profile, environment, chosen, project)

    async def start(self):
        try:
            await self.admit(self.user_options or {})
        except BaseException as error:
            if is_refusal(error):
                forget_refused_spawn(self, self.accepted_options)
            raise
        self.accepted_options = dict(self.user_options or {})
        try:
            result = await super().start()
        except BaseException:
            self.release_gpus()
            raise
        self.holder_started()
        return result

    async def admit(self, options: dict) -> SpawnPlan:
        """Resolve the choice and claim its compute (quotas, GPUs); a 4xx when the spawn is refused."""
        plan = self.plan_spawn(options)
        self.spawn_plan = plan
        self.profile_id, self.environment_id = plan.profile.id, plan.environment.id
        self.claim_id, self.devices = "", []
        pool = None
        if plan.profile.uses_gpu:
            self.emit_progress(5, f"Allocating {plan.profile.gpu.describe()}")
            pool = await self.gpu_pool()
        standing = self._standing()
        try:
            claimed = await asyncio.to_thread(claim, self.user.name, self._user_groups(), self.purpose, plan.profile,
                                              quotas=self.quotas, standing=standing, pool=pool)
        except Refused as refused:
            status = OVER_QUOTA if isinstance(refused, OverQuota) else FULL
            # A GPU refusal names the profile; a CPU spawn's quota message stands alone.
            message = f"Cannot start {plan.profile.display_name}: {refused.message}" if plan.profile.uses_gpu else refused.message
            raise web.HTTPError(status, message) from None
        if claimed is not None and claimed.claim_id:
            self.claim_id, self.devices = claimed.claim_id, list(claimed.devices)
            self.emit_progress(8, f"Allocated {', '.join(self.devices)}")
        for warning in claimed.warnings if claimed is not None else ():
            self.emit_progress(8, f"GPU budget: {warning}")
        return plan

    @property
    def gpus_held(self) -> int:
        """How many GPUs this server holds: the ledger's devices here, its profile's count in a cluster."""
        if self.devices:
            return len(self.devices)
        plan = self.spawn_plan
        return plan.profile.gpu.count if plan is not None and self.active else 0

    async def gpu_pool(self) -> Pool:
        """Where this backend's GPUs come from (locally: the ledger over this machine's devices)."""
        if self.ledger is None:
            raise web.HTTPError(500, "GPU profiles need gpulab's database (database_url is not set)")
        devices = self.gpu_devices()  # read now, in the event loop, as before the claim
        return LocalPool(self.ledger, lambda: devices)

    def holder_started(self) -> None:
        """Tie the claim to the server's process, so it ends with it even if the hub is down."""

    def release_gpus(self) -> None:
        if self.claim_id and self.ledger is not None:
            self.ledger.release(self.claim_id)
        self.claim_id, self.devices = "", []

    def get_env(self):
        env = super().get_env()
        plan = self.spawn_plan
        # An empty list hides every GPU: CPU profiles must not see the machine's GPUs.
        env["CUDA_VISIBLE_DEVICES"] = ",".join(self.devices)
        env["GPULAB_PROFILE"] = self.profile_id
        env["GPULAB_ENVIRONMENT"] = self.environment_id
        if plan is not None:
            if plan.profile.memory_limit:
                env["MEM_LIMIT"] = str(plan.profile.memory_limit)
            if plan.profile.cpu_limit:
                env["CPU_LIMIT"] = str(plan.profile.cpu_limit)
        return env

    async def stop(self, now=False):
        try:
            await super().stop(now=now)
        finally:
            self.release_gpus()

    async def poll(self):
        status = await super().poll()
        if status is not None and self.claim_id:
            self.release_gpus()
        return status

    # ------------------------------------------------------------ state across hub restarts

    def get_state(self):
        state = super().get_state()
        if self.claim_id:
            state.update(claim_id=self.claim_id, devices=list(self.devices))
        if self.profile_id:
            state.update(profile=self.profile_id, environment=self.environment_id)
        if self.accepted_options is not None:
            state["accepted_options"] = self.accepted_options
        return state

    def load_state(self, state):
        super().load_state(state)
        self.claim_id = state.get("claim_id", "")
        self.devices = state.get("devices", [])
        self.profile_id = state.get("profile", "")
        self.environment_id = state.get("environment", "")
        self.accepted_options = state.get("accepted_options", self.accepted_options)

    def clear_state(self):
        """Forget the running server; `accepted_options` outlives it (it is about the next spawn)."""
        super().clear_state()
        self.claim_id, self.devices, self.profile_id, self.environment_id = "", [], "", ""

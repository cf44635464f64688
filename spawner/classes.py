"""The spawner classes gpulab configures: the shared profile logic over each backend."""

from __future__ import annotations

from gpulab.compute.limits import Limits

from .local import LocalSpawner, singleuser_bin_dir
from .profile_spawner import ProfileSpawnerMixin


class GpulabLocalSpawner(ProfileSpawnerMixin, LocalSpawner):
    """Profiles and GPUs on this machine: the ledger allocates devices, cgroups enforce limits."""

    def server_python(self) -> str:
        plan = self.spawn_plan
        if plan is not None and plan.environment.local_python:
            return plan.environment.local_python
        return self.python

    def resource_limits(self) -> Limits:
        plan = self.spawn_plan
        return plan.limits if plan is not None else Limits()

    def python_exists(self):
        return lambda python: (singleuser_bin_dir(python) / "jupyterhub-singleuser").exists()

    prewarm = LocalSpawner.prewarm  # the zygote, not the mixin's nothing

    def holder_started(self) -> None:
        if self.claim_id and self.ledger is not None:
            self.ledger.attach(self.claim_id, self.pid, self.process_start_ticks)

    async def stop(self, now=False):
        await super().stop(now=now)
        self._remove_limits()

    async def poll(self):
        status = await super().poll()
        if status is not None:
            self._remove_limits()
        return status

"""The GPU ledger: which device is held by whom, in gpulab's database.

One row per claimed device, keyed by the device's UUID, so the database itself refuses
two holders. A claim is made in one transaction (BEGIN IMMEDIATE on SQLite: concurrent
claimers queue instead of racing) and records the process that holds it once that
process exists. Interactive servers and scheduled runs claim through the same `Ledger`,
so they never share a GPU by accident. Reconciliation drops claims whose process is
gone, which is how the ledger recovers after a crash of the hub or of a server.
"""

from __future__ import annotations

import secrets
import time
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import BigInteger, DateTime, Integer, String, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from gpulab.db import Base

from .availability import choose_devices
from .budgets import Spent
from .claims import Claim, DevicesBusy, QuotaCheck
from .inventory import Device
from .processes import same_process
from .profiles import GpuRequest, Profile
from .usage import close_intervals, open_interval
from .usage_report import spent_this_month

# A claim whose process never appeared is given up after this long (a start that died).
UNATTACHED_GRACE_SECONDS = 15 * 60


class GpuClaim(Base):
    __tablename__ = "gpu_claims"

    device_uuid: Mapped[str] = mapped_column(String(96), primary_key=True)
    claim_id: Mapped[str] = mapped_column(String(32), index=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    purpose: Mapped[str] = mapped_column(String(255), index=True)  # "server:alice/gpu", "run:42"
    holder_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    holder_start_ticks: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Ledger:
    def __init__(self, sessions: sessionmaker, clock: Callable[[], float] = time.time,
                 alive: Callable[[int, int | None], bool] = same_process):
        self.sessions = sessions
        self.clock = clock
        self.alive = alive

    def claim(self, owner: str, purpose: str, request: GpuRequest, devices: list[Device],
              check: QuotaCheck | None = None, *, profile: str = "", project: str = "", cpus: float = 0.0) -> Claim:
        """Claim devices for `request`, or raise DevicesBusy with the reason.

        `check` sees the GPUs each owner holds in live claims and the GPU-hours spent this month,
        and raises OverQuota (or OverBudget) if this one would break a quota (or a budget); it runs
        in the claim's transaction, so no claim slips in between.
        """
        for attempt in (1, 2):
            try:
                return self._claim_once(owner, purpose, request, devices, check, (profile, project, cpus))
            except IntegrityError:
                # Another process took a device between our read and our write (only
                # possible on databases without BEGIN IMMEDIATE): read again and retry once.
                if attempt == 2:
                    raise DevicesBusy("the GPUs were taken by another claim at the same moment; try again") from None
        raise AssertionError("unreachable")

    def _claim_once(self, owner, purpose, request, devices, check, accounted) -> Claim:
        with self.sessions.begin() as session:
            live = self._reconciled(session)
            if check is not None:
                check(gpus_by_owner(live), self._spent(session))
            chosen = choose_devices(request, devices, {c.device_uuid for c in live})
            if chosen is None:
                raise DevicesBusy(f"not enough free devices for {request.describe()}; all are in use")
            claim_id = secrets.token_hex(8)
            now = datetime.fromtimestamp(self.clock(), timezone.utc)
            for device in chosen:
                session.add(GpuClaim(device_uuid=device.uuid, claim_id=claim_id, owner=owner,
                                     purpose=purpose, claimed_at=now))
            # the usage ledger's interval starts in the claim's transaction: no holding goes unaccounted
            profile, project, cpus = accounted
            open_interval(session, claim_id, owner, purpose, [d.uuid for d in chosen], now, profile, project, cpus)
        return Claim(claim_id, owner, purpose, tuple(d.uuid for d in chosen), project)

    def attach(self, claim_id: str, pid: int, start_ticks: int | None) -> None:
        """Record the process that holds the claim: the claim lives as long as it does."""
        with self.sessions.begin() as session:
            session.execute(update(GpuClaim).where(GpuClaim.claim_id == claim_id)
                            .values(holder_pid=pid, holder_start_ticks=start_ticks))

    def release(self, claim_id: str) -> None:
        with self.sessions.begin() as session:
            session.execute(delete(GpuClaim).where(GpuClaim.claim_id == claim_id))
            close_intervals(session, [claim_id], self._now())

    def release_purpose(self, purpose: str) -> None:
        with self.sessions.begin() as session:
            claim_ids = set(session.scalars(select(GpuClaim.claim_id).where(GpuClaim.purpose == purpose)))
            session.execute(delete(GpuClaim).where(GpuClaim.purpose == purpose))
            close_intervals(session, sorted(claim_ids), self._now())

    def _spent(self, session) -> Spent:
        return spent_this_month(session, self._now())

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    def live_claims(self) -> list[GpuClaim]:
        """Every claim whose holder is still alive (dead ones are dropped on the way)."""
        with self.sessions.begin() as session:
            return self._reconciled(session)

    def _reconciled(self, session) -> list[GpuClaim]:
        rows = list(session.scalars(select(GpuClaim)))
        now = self.clock()
        dead = [r for r in rows if not self._holder_alive(r, now)]
        if dead:
            session.execute(delete(GpuClaim).where(GpuClaim.device_uuid.in_([r.device_uuid for r in dead])))
            # nobody saw them end: their intervals end when the sampler last saw them held
            close_intervals(session, sorted({r.claim_id for r in dead}), None)
        for row in rows:
            session.expunge(row)
        return [r for r in rows if r not in dead]

    def _holder_alive(self, row: GpuClaim, now: float) -> bool:
        if row.holder_pid:
            return self.alive(row.holder_pid, row.holder_start_ticks)
        claimed_at = row.claimed_at.replace(tzinfo=row.claimed_at.tzinfo or timezone.utc).timestamp()
        return now - claimed_at < UNATTACHED_GRACE_SECONDS


def gpus_by_owner(claims: list[GpuClaim]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for claim in claims:
        counts[claim.owner] = counts.get(claim.owner, 0) + 1
    return counts


class LocalPool:
    """The GPUs of this machine, claimed through the ledger (see claims.Pool)."""

    def __init__(self, ledger: Ledger, devices: Callable[[], list[Device]]):
        self.ledger = ledger
        self.devices = devices

    def take(self, owner: str, purpose: str, profile: Profile, check: QuotaCheck, project: str = "") -> Claim:
        return self.ledger.claim(owner, purpose, profile.gpu, self.devices(), check,
                                 profile=profile.id, project=project, cpus=profile.cpu_limit or 0.0)

    def attach(self, claim_id: str, pid: int, start_ticks: int | None) -> None:
        self.ledger.attach(claim_id, pid, start_ticks)

    def release(self, claim_id: str) -> None:
        self.ledger.release(claim_id)

"""The usage service's core: reports and live readings for one asker (no HTTP here).

Admins see everyone's usage; anyone else only their own. Bad dates or groupings are
`Invalid` (400 with the message).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy.orm import sessionmaker

from gpulab.compute.usage import intervals_between
from gpulab.compute.usage_report import BadPeriod, as_csv, check_grouping, period, summarise, visible_to
from gpulab.compute.usage_sampler import HeldDevice
from gpulab.extensions.projects.membership import project_roles
from gpulab.hub_config.services.errors import Invalid


@dataclass(frozen=True)
class Asker:
    name: str
    admin: bool
    led_projects: frozenset[str] = frozenset()  # projects the asker maintains: a team lead sees their hours

    @property
    def scope(self) -> str:
        if self.admin:
            return "everyone"
        if self.led_projects:
            return f"{self.name} and project{'s' if len(self.led_projects) > 1 else ''} {', '.join(sorted(self.led_projects))}"
        return self.name


def asker_of(user_model: dict) -> Asker:
    """Who asks, from the hub's user model: their name, admin flag and the projects they maintain."""
    roles = project_roles(list(user_model.get("groups") or []))
    return Asker(user_model["name"], bool(user_model.get("admin")),
                 frozenset(slug for slug, role in roles.items() if role == "maintainer"))


def utilization_note(measured_by: str) -> str:
    """What the page and the API say about where utilisation comes from ("" where it is measured)."""
    if measured_by:
        return ""
    return ("utilisation not measured on this cluster: allocation only (GPU-hours held; no busy or idle "
            "split without a DCGM exporter, usage.dcgm_exporter_url)")


def holder_label(purpose: str) -> str:
    """"server:ann/gpu" -> "server gpu", "server:ann/" -> "default server", "run:<id>" -> "run <id>"."""
    kind, _, rest = purpose.partition(":")
    if kind == "server":
        name = rest.partition("/")[2]
        return f"server {name}" if name else "default server"
    return f"{kind} {rest}" if rest else purpose


class UsageCore:
    """`measured_by`: where utilisation comes from ("NVML", "DCGM exporter"; "" where nothing measures it)."""

    def __init__(self, sessions: sessionmaker, threshold: int, live: Callable[[], list[HeldDevice]],
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc), measured_by: str = "NVML"):
        self.sessions = sessions
        self.threshold = threshold
        self.live = live
        self.clock = clock
        self.measured_by = measured_by

    def report(self, asker: Asker, since: str | None, until: str | None, by: str) -> dict:
        within, summary = self._summary(asker, since, until, by)
        return {
            "since": within.since.isoformat(), "until": within.until.isoformat(), "by": by,
            "idle_threshold_percent": self.threshold, "scope": asker.scope,
            "utilization_measured_by": self.measured_by, "utilization_note": utilization_note(self.measured_by),
            "rows": [r.as_dict() for r in summary],
        }

    def report_csv(self, asker: Asker, since: str | None, until: str | None, by: str) -> str:
        return as_csv(self._summary(asker, since, until, by)[1], by)

    def _summary(self, asker: Asker, since, until, by):
        now = self.clock()
        try:
            within = period(since, until, now)
            check_grouping(by)
        except BadPeriod as error:
            raise Invalid(str(error)) from None
        with self.sessions() as session:
            rows = visible_to(intervals_between(session, within.since, within.until), asker.name, asker.admin,
                              asker.led_projects)
        return within, summarise(rows, within, by, now)

    def held_by(self, owner: str) -> list[dict]:
        """The devices `owner`'s own servers and runs hold now, labelled for a person to read."""
        return [{**held, "holder": holder_label(held["purpose"])} for held in self.held_now(Asker(owner, False))]

    def held_now(self, asker: Asker) -> list[dict]:
        """The devices held right now with their latest reading (the asker's own unless admin)."""
        return [{"device": h.uuid, "owner": h.owner, "purpose": h.purpose, "profile": h.profile, "project": h.project,
                 "utilization_percent": h.reading.utilization, "memory_used_mb": h.reading.memory_used_mb}
                for h in self.live() if asker.admin or h.owner == asker.name or h.project in asker.led_projects]

"""HTTP handlers of the usage service: thin, over UsageCore."""

from __future__ import annotations

from typing import Any, Callable

from tornado import web

from gpulab.hub_config.services.web import ApiHandler, PageHandler

from .core import Asker, asker_of, utilization_note
from .metrics import exposition


HELD_REFRESH_SECONDS = 10


class UsageRequest:
    settings: dict  # (the tornado handler's, with HubAuthenticated's user_model)
    user_model: dict
    get_argument: Callable[..., Any]

    @property
    def core(self):
        return self.settings["core"]

    @property
    def asker(self) -> Asker:
        return asker_of(self.user_model)

    def period_arguments(self) -> tuple:
        return self.get_argument("since", None), self.get_argument("until", None), self.get_argument("by", "user")


class Report(UsageRequest, ApiHandler):
    """GET ?since=YYYY-MM-DD&until=YYYY-MM-DD&by=user|project|profile|purpose[&format=csv]."""

    def get(self):
        since, until, by = self.period_arguments()
        fmt = self.get_argument("format", "json")
        if fmt not in ("json", "csv"):
            raise web.HTTPError(400, f"format={fmt!r} is not json or csv")
        if fmt == "json":
            self.write_json(self.core.report(self.asker, since, until, by))
            return
        text = self.core.report_csv(self.asker, since, until, by)
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="gpulab-usage-by-{by}.csv"')
        self.finish(text)


class Live(UsageRequest, ApiHandler):
    """The devices held now and their latest utilisation and memory."""

    def get(self):
        self.write_json({"devices": self.core.held_now(self.asker),
                         "utilization_note": utilization_note(self.core.measured_by)})


class Metrics(UsageRequest, ApiHandler):
    """Prometheus exposition; admins only (it names every holder)."""

    def get(self):
        if not self.asker.admin:
            raise web.HTTPError(403, "metrics name every user's GPUs: admins only")
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(exposition(self.core.live()))


class HeldPage(UsageRequest, PageHandler):
    """The GPUs the asker's own servers and runs hold, with their latest readings: a small page
    the hub's home page embeds (it reloads itself every few seconds)."""

    @web.authenticated
    def get(self):
        self.render_page("held.html", devices=self.core.held_by(self.asker.name),
                         note=utilization_note(self.core.measured_by), refresh_seconds=HELD_REFRESH_SECONDS)


class UsagePage(UsageRequest, PageHandler):
    @web.authenticated
    def get(self):
        self.render_page("usage.html", admin=self.asker.admin, scope=self.asker.scope)


ROUTES = [
    (r"/api/usage", Report),
    (r"/api/live", Live),
    (r"/metrics", Metrics),
    (r"/held", HeldPage),
    (r"/?", UsagePage),
]

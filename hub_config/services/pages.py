"""Pages of gpulab services that extend the hub's own templates, so they look like the hub.

A service's templates `{% extends "page.html" %}` (gpulab's page, which adds gpulab's
navigation links to the hub's `templates/page.html`). The hub's static files are linked
from the hub, so the service ships no copy of them.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader
from jupyterhub._data import DATA_FILES_PATH


class PageUser:
    """The few attributes of a hub user that the hub's page template reads."""

    def __init__(self, name: str):
        self.name = name
        self.json_escaped_name = json.dumps(name)[1:-1]


def page_scopes(user: dict | None) -> set[str]:
    """The scopes the hub's navigation bar looks at. A service sees only its OAuth token's
    scopes, which never include the hub's "admin-ui", so an admin's Admin link comes from the
    admin flag instead."""
    if not user:
        return set()
    scopes = set(user.get("scopes", []))
    if user.get("admin"):
        scopes.add("admin-ui")
    return scopes


class HubLookPages:
    def __init__(self, template_dirs: list[str], base_url: str = "/", nav: list[dict] | None = None):
        own = [str(resources.files("gpulab.hub_config.services") / "templates"),
               str(resources.files("gpulab.hub_config") / "templates")]
        hub_templates = os.path.join(DATA_FILES_PATH, "templates")
        loader = ChoiceLoader([
            FileSystemLoader(list(template_dirs) + own),
            PrefixLoader({"templates": FileSystemLoader(hub_templates)}),
        ])
        self.environment = Environment(loader=loader, autoescape=True)
        self.base_url = base_url
        self.hub_prefix = base_url + "hub/"
        self.nav = nav or []

    def context(self, handler) -> dict[str, Any]:
        user = handler.current_user
        return {
            "base_url": self.hub_prefix,
            "prefix": self.base_url,
            "user": PageUser(user["name"]) if user else None,
            "static_url": lambda path, include_version=True: f"{self.hub_prefix}static/{path}",
            "version_hash": "",
            "admin_access": bool(user and user.get("admin")),
            "parsed_scopes": page_scopes(user),
            "services": [],
            "no_spawner_check": True,
            "xsrf_token": handler.xsrf_token.decode(),
            "logout_url": self.hub_prefix + "logout",
            "login_url": self.hub_prefix + "login",
            "logo_url": "",
            "announcement": "",
            "gpulab_nav": self.nav,
            "service_prefix": os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/"),
        }

    def render(self, handler, template: str, **context: Any) -> str:
        page = self.environment.get_template(template)
        return page.render(**{**self.context(handler), **context})

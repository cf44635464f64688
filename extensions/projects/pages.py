"""The hub pages of projects: list and create, one project with its members, shared servers and history.

Plain HTML forms (no JavaScript needed) post to the actions below, which call the same core
as the API and redirect back to the project page. Refusals go through the toolkit's one
error path: a page in the hub's look with the status and the core's message.
"""

from __future__ import annotations

from urllib.parse import quote

from tornado import web

from gpulab.hub_config.services.web import PageHandler

from .api import ProjectsRequest
from .membership import ROLES

TEMPLATES = "templates"


class ProjectsPage(ProjectsRequest, PageHandler):
    def prefix(self) -> str:
        return self.settings["projects_prefix"]

    def project_url(self, slug: str) -> str:
        return self.prefix() + quote(slug)


class ProjectListPage(ProjectsPage):
    @web.authenticated
    async def get(self):
        actor = await self.actor()
        self.render_page("projects.html", projects=self.projects.visible(actor), actor=actor,
                         may_create=self.projects.may_create(actor), prefix_url=self.prefix())

    @web.authenticated
    async def post(self):
        actor = await self.actor()
        name = self.get_body_argument("name", "").strip()
        project = await self.projects.create(actor, name, self.get_body_argument("description", "").strip())
        self.redirect(self.project_url(project.slug))


class ProjectPage(ProjectsPage):
    @web.authenticated
    async def get(self, slug: str):
        actor = await self.actor()
        project, role = self.projects.show(actor, slug)
        self.render_page(
            "project.html", project=project, role=role, actor=actor, roles=ROLES,
            manage=actor.admin or role == "maintainer",
            shared=self.projects.shared_servers(actor, slug),
            history=self.projects.audit(actor, slug)[:50],
            project_url=self.project_url(slug), prefix_url=self.prefix(),
        )


class ProjectActionPage(ProjectsPage):
    """POST <slug>/<action> from the project page's forms."""

    @web.authenticated
    async def post(self, slug: str, action: str):
        actor = await self.actor()
        form = {key: self.get_body_argument(key, "").strip() for key in ("kind", "name", "role", "server", "owner",
                                                                           "description")}
        projects = self.projects
        if action == "add-member":
            await projects.add_member(actor, slug, form["kind"] or "user", form["name"], form["role"])
        elif action == "set-role":
            await projects.set_role(actor, slug, form["kind"], form["name"], form["role"])
        elif action == "remove-member":
            await projects.remove_member(actor, slug, form["kind"], form["name"])
        elif action == "describe":
            await projects.describe(actor, slug, form["description"])
        elif action == "share":
            await projects.share(actor, self.token(), slug, form["server"])
        elif action == "revoke":
            await projects.revoke(actor, slug, form["owner"], form["server"])
        elif action == "delete":
            await projects.delete(actor, slug)
            return self.redirect(self.prefix())
        else:
            raise web.HTTPError(404, f"no action {action!r} on projects")
        self.redirect(self.project_url(slug))


ROUTES = [
    ("", ProjectListPage),
    (r"([^/]+)", ProjectPage),
    (r"([^/]+)/([a-z-]+)", ProjectActionPage),
]

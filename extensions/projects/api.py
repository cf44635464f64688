"""The projects REST API: thin handlers over `core.Projects` (described in openapi.yaml).

Bodies are validated at the edge (pydantic, unknown fields refused); every rule and every
error comes from the core, and the toolkit turns its errors into 4xx JSON in one place.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gpulab.hub_config.services.web import ApiHandler

from .core import Actor, Projects
from .views import audit_json, project_json, shared_json


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateProject(Body):
    name: str = Field(max_length=200)
    description: str = ""


class UpdateProject(Body):
    description: str


class AddMember(Body):
    kind: str = "user"
    name: str = Field(max_length=255)
    role: str


class SetRole(Body):
    role: str


class ShareServer(Body):
    server: str = Field(default="", max_length=255)


class ProjectsRequest:
    """What every projects handler (API or page) needs: the core, the caller, the caller's token."""

    settings: dict  # (the tornado handler's, with HubAuthenticated's user_name and hub_auth)
    user_name: str
    hub_auth: Any

    @property
    def projects(self) -> Projects:
        return self.settings["projects"]

    async def actor(self) -> Actor:
        return await self.projects.actor(self.user_name)

    def token(self) -> str:
        """The caller's own hub token (header or sign-in cookie), for calls the hub must check as them."""
        return self.hub_auth.get_token(self) or ""


class ProjectsApiHandler(ProjectsRequest, ApiHandler):
    pass


class ProjectListApi(ProjectsApiHandler):
    async def get(self):
        actor = await self.actor()
        listed = self.projects.visible(actor)
        self.write_json({"projects": [project_json(p, role) for p, role in listed],
                         "may_create": self.projects.may_create(actor)})

    async def post(self):
        body = self.body_as(CreateProject)
        actor = await self.actor()
        project = await self.projects.create(actor, body.name, body.description)
        self.set_header("Location", f"{self.request.path.rstrip('/')}/{project.slug}")
        self.write_json(project_json(project, "maintainer", detail=True), status=201)


class ProjectApi(ProjectsApiHandler):
    async def get(self, slug: str):
        project, role = self.projects.show(await self.actor(), slug)
        self.write_json(project_json(project, role, detail=True))

    async def patch(self, slug: str):
        body = self.body_as(UpdateProject)
        actor = await self.actor()
        await self.projects.describe(actor, slug, body.description)
        project, role = self.projects.show(actor, slug)
        self.write_json(project_json(project, role, detail=True))

    async def delete(self, slug: str):
        await self.projects.delete(await self.actor(), slug)
        self.set_status(204)
        self.finish()


class MemberListApi(ProjectsApiHandler):
    async def post(self, slug: str):
        body = self.body_as(AddMember)
        actor = await self.actor()
        await self.projects.add_member(actor, slug, body.kind, body.name, body.role)
        project, role = self.projects.show(actor, slug)
        self.write_json(project_json(project, role, detail=True), status=201)


class MemberApi(ProjectsApiHandler):
    async def patch(self, slug: str, kind: str, name: str):
        body = self.body_as(SetRole)
        actor = await self.actor()
        await self.projects.set_role(actor, slug, kind, name, body.role)
        project, role = self.projects.show(actor, slug)
        self.write_json(project_json(project, role, detail=True))

    async def delete(self, slug: str, kind: str, name: str):
        actor = await self.actor()
        await self.projects.remove_member(actor, slug, kind, name)
        self.set_status(204)
        self.finish()


class AuditApi(ProjectsApiHandler):
    async def get(self, slug: str):
        entries = self.projects.audit(await self.actor(), slug)
        self.write_json({"entries": [audit_json(e) for e in entries]})


class SharedServerListApi(ProjectsApiHandler):
    async def get(self, slug: str):
        servers = self.projects.shared_servers(await self.actor(), slug)
        self.write_json({"servers": [shared_json(s) for s in servers]})

    async def post(self, slug: str):
        body = self.body_as(ShareServer)
        servers = await self.projects.share(await self.actor(), self.token(), slug, body.server)
        self.write_json({"servers": [shared_json(s) for s in servers]}, status=201)


class SharedServerApi(ProjectsApiHandler):
    async def delete(self, slug: str, owner: str, server: str = ""):
        await self.projects.revoke(await self.actor(), slug, owner, server or "")
        self.set_status(204)
        self.finish()


class OpenApiDocument(ApiHandler):
    """The API's description, as committed in the repository."""

    def get(self):
        self.set_header("Content-Type", "application/yaml")
        self.finish(resources.files("gpulab.extensions.projects").joinpath("openapi.yaml").read_text())


NAME = r"([^/]+)"
ROUTES = [
    ("api/openapi.yaml", OpenApiDocument),
    ("api/projects", ProjectListApi),
    (f"api/projects/{NAME}", ProjectApi),
    (f"api/projects/{NAME}/members", MemberListApi),
    (f"api/projects/{NAME}/members/{NAME}/{NAME}", MemberApi),
    (f"api/projects/{NAME}/audit", AuditApi),
    (f"api/projects/{NAME}/shared-servers", SharedServerListApi),
    (f"api/projects/{NAME}/shared-servers/{NAME}", SharedServerApi),
    (f"api/projects/{NAME}/shared-servers/{NAME}/{NAME}", SharedServerApi),
]

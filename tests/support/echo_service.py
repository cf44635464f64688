"""A hub service built on gpulab's service toolkit, for testing the toolkit itself."""

import asyncio

from pydantic import BaseModel, Field
from tornado import web

from gpulab.hub_config.services.errors import NotAllowed
from gpulab.hub_config.services.runner import build_application, serve
from gpulab.hub_config.services.web import ApiHandler, PageHandler

TEMPLATES = __file__.rsplit("/", 1)[0] + "/templates"


class EchoRequest(BaseModel):
    word: str = Field(min_length=1)
    times: int = Field(ge=1, le=5)


class WhoAmI(ApiHandler):
    def get(self):
        self.write_json({"name": self.user_name})


class Echo(ApiHandler):
    def post(self):
        request = self.body_as(EchoRequest)
        if request.word == "forbidden":
            raise NotAllowed("that word is not allowed")
        self.write_json({"echo": request.word * request.times})


class EchoPage(PageHandler):
    @web.authenticated
    def get(self):
        self.render_page("echo.html", greeting=f"hello {self.user_name}")


if __name__ == "__main__":
    app = build_application([("api/whoami", WhoAmI), ("api/echo", Echo), ("", EchoPage)], [TEMPLATES])
    asyncio.run(serve(app))

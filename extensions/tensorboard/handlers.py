"""HTTP side of TensorBoard in a user server: a page to pick a folder, a small API, and the proxy.

    <base_url>tensorboard/                  pick a log folder (the JupyterLab launcher opens this)
    <base_url>tensorboard/open?logdir=DIR   start (or reuse) DIR's TensorBoard and go there
    <base_url>tensorboard/api/instances     GET: running TensorBoards; DELETE .../<key>: stop one
    <base_url>tensorboard/<key>/...         the TensorBoard itself, proxied to its Unix socket

All of it is the server owner's only: Jupyter's own authentication guards every handler.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from jinja2 import Environment, FileSystemLoader
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join
from jupyter_server_proxy.handlers import ProxyHandler
from tornado import web

from gpulab.hub_config.services.errors import ServiceError

from .instances import KEY_LENGTH, TensorBoards, resolve_logdir
from .page import find_log_folders, human_duration, prefix_font_urls

TEMPLATES = Path(__file__).parent / "templates"
KEY = rf"(?P<key>[0-9a-f]{{{KEY_LENGTH}}})"


class _Base(JupyterHandler):
    def initialize(self, boards: TensorBoards, default_logdir: str, root: Path, pages: Environment):
        self.boards = boards
        self.default_logdir = default_logdir
        self.root = root
        self.pages = pages

    def chooser(self, status: int = 200, error: str = "", logdir: str = "") -> None:
        self.set_status(status)
        page = self.pages.get_template("chooser.html")
        folders = [str(p.relative_to(self.root)) or "." for p in find_log_folders(self.root)]
        self.finish(page.render(
            base=url_path_join(self.base_url, "tensorboard/"), lab=url_path_join(self.base_url, "lab"),
            instances=self.boards.summaries(), folders=folders, human_duration=human_duration,
            default_logdir=self.default_logdir, logdir=logdir or self.default_logdir, error=error,
            idle=human_duration(self.boards.idle_timeout), max_instances=self.boards.max_instances,
        ))


class ChooserHandler(_Base):
    @web.authenticated
    def get(self):
        self.chooser()


class OpenHandler(_Base):
    @web.authenticated
    async def get(self):
        requested = self.get_argument("logdir", "")
        logdir = resolve_logdir(requested, self.default_logdir, self.root)
        if logdir == resolve_logdir("", self.default_logdir, self.root):
            logdir.mkdir(parents=True, exist_ok=True)  # the default folder is there to be written to
        try:
            instance = await self.boards.open(logdir)
        except ServiceError as exc:
            return self.chooser(exc.status, exc.message, requested)
        self.redirect(self.boards.url(instance.key))


class InstancesHandler(APIHandler):
    def initialize(self, boards: TensorBoards):
        self.boards = boards

    @web.authenticated
    def get(self):
        self.finish(json.dumps(self.boards.summaries()))

    @web.authenticated
    async def delete(self, key: str | None = None):
        if key is None:
            raise web.HTTPError(405, "name the TensorBoard to stop: DELETE .../api/instances/<key>")
        if not await self.boards.stop(key):
            raise web.HTTPError(404, f"no TensorBoard {key} is running")
        self.set_status(204)
        self.finish()


def _fix_font_urls(response, request) -> None:
    """jupyter-server-proxy's rewrite_response hook: TensorBoard's HTML only."""
    if response.headers.get("Content-Type", "").startswith("text/html"):
        prefix = re.match(rf"^(.*?/tensorboard/[0-9a-f]{{{KEY_LENGTH}}})/", request.path)
        if prefix:
            response.body = prefix_font_urls(response.body, prefix.group(1))


class TensorBoardProxy(ProxyHandler):
    """Forwards to one instance's Unix socket, keeping the full path (TensorBoard's --path_prefix)."""

    def initialize(self, boards: TensorBoards):
        self.boards = boards

    def _target(self, key: str, path: str) -> str:
        """Point the proxy at the instance; returns the path to forward (never empty: TensorBoard
        would redirect the bare prefix to itself with a slash, which the empty path loses)."""
        instance = self.boards.get(key)
        if instance is None:
            raise web.HTTPError(404, f"TensorBoard {key} is not running (stopped after being idle?); "
                                     f"open it again at {url_path_join(self.base_url, 'tensorboard/')}")
        self.unix_socket = str(instance.socket_path)
        self.proxy_base = f"tensorboard/{key}"
        self.boards.touch(key)
        return path or "/"

    async def http_get(self, key, path):
        return await self.proxy("localhost", 80, self._target(key, path))

    async def open(self, key, path):
        raise web.HTTPError(400, "TensorBoard does not use WebSockets")

    def post(self, key, path):
        return self.proxy("localhost", 80, self._target(key, path))

    def head(self, key, path):
        return self.proxy("localhost", 80, self._target(key, path))


class AddSlash(JupyterHandler):
    @web.authenticated
    def get(self, key):
        self.redirect(url_path_join(self.base_url, "tensorboard", key) + "/")


def make_handlers(base_url: str, boards: TensorBoards, default_logdir: str, root: Path) -> list[tuple]:
    pages = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True)
    page_args = {"boards": boards, "default_logdir": default_logdir, "root": root, "pages": pages}
    prefix = url_path_join(base_url, "tensorboard")
    return [
        (prefix + "/?", ChooserHandler, page_args),
        (prefix + "/open", OpenHandler, page_args),
        (prefix + "/api/instances", InstancesHandler, {"boards": boards}),
        (prefix + rf"/api/instances/{KEY}", InstancesHandler, {"boards": boards}),
        (prefix + rf"/{KEY}", AddSlash),
        (prefix + rf"/{KEY}/(?P<path>.*)", TensorBoardProxy, {"boards": boards, "absolute_url": True,
                                                        "rewrite_response": [_fix_font_urls]}),
    ]



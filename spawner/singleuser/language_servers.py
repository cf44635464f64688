"""jupyter_lsp's start, moved from the server's start to the first request that needs it.

jupyter_lsp (JupyterLab's language-server support) schedules its whole initialization for the
moment the server runs: it asks every spec it knows whether its language server is installed
(entry points, PATH, node_modules folders) and runs `npm prefix -g` wherever npm is installed.
Measured on the 2-core development machine, 50 users spawning at once (benchmarks/load.py): the
npm calls alone took 4.2 s of CPU (process accounting), and the python servers 5.4 s more; the
visit's p95 went from 15.2-17.2 s to 11.7 s without it. A server used only through its REST API
(a kernel run from a script or an editor, a scheduled notebook) never asks for a language server.

Its two handlers (`lsp/status`, `lsp/ws/NAME`) wait for the manager's `ready()`; here the first
such wait runs jupyter_lsp's own initialization, unchanged, and every waiter gets its outcome.
JupyterLab asks for `lsp/status` as its page loads, so a Lab user gets the same language servers,
found from the same environment and files, a moment later. Loaded with gpulab's server extension,
which loads before jupyter_lsp (extensions load in name order): jupyter_lsp looks up
`initialize` when it schedules it, after this has replaced it.
"""

from __future__ import annotations

import asyncio


def load(serverapp) -> None:
    try:
        from jupyter_lsp import serverextension
    except ImportError:  # not installed in this environment: nothing to defer
        return
    if getattr(serverextension.initialize, "deferred_by_gpulab", False):
        return
    serverextension.initialize = deferred(serverextension.initialize)


def deferred(initialize):
    """In place of jupyter_lsp's `initialize(nbapp, virtual_documents_uri)`: makes the manager's
    first `ready()` run it."""

    async def at_first_use(nbapp, virtual_documents_uri) -> None:
        manager = nbapp.language_server_manager
        ready = manager.ready
        started: asyncio.Future | None = None

        async def ready_once_initialized():
            nonlocal started
            if started is None:
                started = asyncio.ensure_future(initialize(nbapp, virtual_documents_uri))
            await asyncio.shield(started)  # a waiter that gives up leaves the initialization running
            return await ready()

        manager.ready = ready_once_initialized

    at_first_use.deferred_by_gpulab = True
    return at_first_use

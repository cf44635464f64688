"""`python -m gpulab.extensions.tensorboard.serve --socket PATH [TensorBoard flags]`: TensorBoard
on a Unix socket instead of a TCP port.

On a shared machine a TCP port on 127.0.0.1 is open to every local account, so another user
could read your TensorBoard. A socket in a folder only you can enter is not. The Jupyter
server proxies to it (jupyter-server-proxy speaks HTTP over Unix sockets). TensorBoard's
Rust data server would listen on a TCP port too, so the flags gpulab passes load event
files in-process (`--load_fast=false`).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading


def unix_socket_server(socket_path: str):
    """A TensorBoardServer factory serving TensorBoard's WSGI app on `socket_path`."""
    from tensorboard import program
    from werkzeug import serving

    class KeepAliveHandler(serving.WSGIRequestHandler):
        protocol_version = "HTTP/1.1"  # one connection for the proxy's many requests

    class UnixSocketServer(serving.ThreadedWSGIServer, program.TensorBoardServer):
        daemon_threads = True

        def __init__(self, wsgi_app, flags):
            self._prefix = (flags.path_prefix or "").rstrip("/") + "/"
            if os.path.exists(socket_path):
                os.unlink(socket_path)
            super().__init__("unix://" + socket_path, 0, wsgi_app, handler=KeepAliveHandler)
            os.chmod(socket_path, 0o600)

        def get_url(self):
            return f"http+unix://{socket_path}{self._prefix}"

    return UnixSocketServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, help="path of the Unix socket to listen on")
    args, tensorboard_flags = parser.parse_known_args(argv)

    from tensorboard import default, program

    board = program.TensorBoard(plugins=default.get_plugins(), server_class=unix_socket_server(args.socket))
    board.configure(argv=[sys.argv[0], *tensorboard_flags])
    url = board.launch()  # serves in a daemon thread
    sys.stderr.write(f"TensorBoard at {url}\n")
    sys.stderr.flush()
    stopped = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stopped.set())
    stopped.wait()
    if os.path.exists(args.socket):
        os.unlink(args.socket)
    return 0


if __name__ == "__main__":
    sys.exit(main())

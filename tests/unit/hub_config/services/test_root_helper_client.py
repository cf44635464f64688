"""The shared root helpers' client: a helper that answers before it has read the whole request
(a refusal) is heard, not turned into a broken pipe."""

from __future__ import annotations

import json
import os
import socket
import threading

from gpulab.hub_config.services.root_helper import HelperClient


def _answer_after_reading(path, first_bytes: int, reply: dict, answered: threading.Event) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def serve():
        connection, _ = listener.accept()
        with connection:
            socket.recv_fds(connection, first_bytes, 4)
            connection.sendall(json.dumps(reply).encode() + b"\n")
            answered.set()

    threading.Thread(target=serve, daemon=True).start()
    return listener


def test_a_refusal_sent_before_the_request_was_read_is_the_reply(tmp_path):
    answered = threading.Event()
    path = tmp_path / "h.sock"
    listener = _answer_after_reading(path, 16, {"refused": "no"}, answered)
    try:  # far more than a socket's buffer: the helper closes while the client still writes
        reply = HelperClient(path, "test helper", wait=2, timeout=10).send({"op": "x", "pad": "a" * (8 << 20)})
    finally:
        listener.close()
    assert reply == {"refused": "no"}


def test_a_request_sent_whole_with_its_descriptors_then_answered_at_once_is_the_reply(tmp_path, monkeypatch):
    """send_fds sends the whole line, the helper replies and closes: nothing is left to send, and
    sending nothing to a closed peer must not fail (it did, once under load, in CI)."""
    answered = threading.Event()
    path = tmp_path / "h.sock"
    listener = _answer_after_reading(path, 65536, {"ok": True}, answered)
    read_end, write_end = os.pipe()
    try:
        client = HelperClient(path, "test helper", wait=2, timeout=10)
        original_send_fds = socket.send_fds

        def send_then_wait_for_the_answer(sock, buffers, fds):
            sent = original_send_fds(sock, buffers, fds)
            assert answered.wait(5)  # the peer has replied (and is closing) before the client goes on
            return sent

        monkeypatch.setattr(socket, "send_fds", send_then_wait_for_the_answer)
        reply = client.send({"op": "x"}, [write_end])
    finally:
        listener.close()
        os.close(read_end)
        os.close(write_end)
    assert reply == {"ok": True}

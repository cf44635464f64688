"""alice's kernel's ZMQ ports seen from other accounts: its shell port (which wants the key)
and its iopub port (which publishes to whoever connects)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.security.isolation_probes import account_command, as_uid, uid_of
from tests.security.isolation_world import World


# Sends `code` to the kernel's shell port as an execute_request signed with `key` ("" sends it
# unsigned) and, with "wait", prints the reply's status. Closing with a linger and ending the
# context returns only once the message is out.
KERNEL_CLIENT = """
import json, sys
import zmq
from jupyter_client.session import Session
info, code = json.loads(sys.argv[1]), sys.argv[2]
session = Session(key=info["key"].encode(), signature_scheme=info["signature_scheme"])
context = zmq.Context()
shell = context.socket(zmq.DEALER)
separator = ":" if info["transport"] == "tcp" else "-"  # ipc sockets are files named <ip>-<port>
shell.connect(f"{info['transport']}://{info['ip']}{separator}{info['shell_port']}")
session.send(shell, session.msg("execute_request", {"code": code, "silent": False, "store_history": False,
                                                    "user_expressions": {}, "allow_stdin": False}))
if info["wait"]:
    assert shell.poll(60000), "no reply in 60 s"
    print(session.recv(shell, mode=0)[1]["content"]["status"])
shell.close(linger=10000)
context.term()
"""


def shell_socket_opens(world: World, who: str) -> bool:
    """With the ipc transport: whether `who` can connect to the kernel's shell socket file."""
    info = json.loads(world.connection_file.read_text())
    code = f"import socket; socket.socket(socket.AF_UNIX).connect({info['ip'] + '-' + str(info['shell_port'])!r})"
    return as_uid(uid_of(world, who), sys.executable, "-c", code).returncode == 0


def send_to_kernel(world: World, who: str, key: str, code: str) -> subprocess.CompletedProcess:
    """As `who`, send `code` to alice's kernel knowing its ports (anyone can list listening
    ports) and `key`; with alice's own key, wait for the kernel's reply."""
    info = json.loads(world.connection_file.read_text())
    info.update(key=key, wait=key == info["key"])
    return as_uid(uid_of(world, who), sys.executable, "-c", KERNEL_CLIENT, json.dumps(info), code)


# Subscribes to every TCP port that account `uid` listens on (/proc/net/tcp shows anyone each
# socket's owner) and every kernel's ipc socket (/proc/net/unix lists their paths), and prints
# the first message that carries the marker.
EAVESDROPPER = """
import sys, zmq
uid, marker = sys.argv[1], sys.argv[2].encode()
ports = set()
for line in open("/proc/net/tcp").read().splitlines()[1:]:
    fields = line.split()
    if fields[3] == "0A" and fields[7] == uid:  # listening, owned by uid
        ports.add(int(fields[1].split(":")[1], 16))
addresses = [f"tcp://127.0.0.1:{port}" for port in ports]
for line in open("/proc/net/unix").read().splitlines()[1:]:
    if "-ipc-" in line.split()[-1]:
        addresses.append("ipc://" + line.split()[-1])
context = zmq.Context()
listener = context.socket(zmq.SUB)
listener.setsockopt(zmq.SUBSCRIBE, b"")
for address in addresses:
    listener.connect(address)
print("listening to", len(addresses), "addresses", flush=True)
while listener.poll(120000):
    message = b" ".join(listener.recv_multipart())
    if marker in message:
        print("heard:", message[-300:].decode(errors="replace"), flush=True)
        break
"""


def eavesdropper(world: World, who: str, victim: str, marker: str) -> subprocess.Popen:
    """`who` listening to every port `victim`'s account has open and every kernel socket, for `marker`."""
    victim_uid = str(uid_of(world, victim))
    command = account_command(uid_of(world, who), sys.executable, "-c", EAVESDROPPER, victim_uid, marker)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

"""SSH into your own server, end to end: stock OpenSSH clients (ssh, scp, sftp, rsync) against
a real hub, its SSH gateway service, and real user servers with the in-server endpoint.

Not covered here: Kubernetes (no cluster on this machine; the same endpoint runs in the pod
and the gateway reaches it through the proxy Service), GPUs (none here), and VS Code itself
(its Remote-SSH needs exec and -L forwarding, both tested below).
"""

from __future__ import annotations

import os
import pwd
import re
import socket
import stat
import subprocess
import time
import urllib.request

import pexpect
import pytest

from gpulab.hub_config.client import ClientError, HubClient
from gpulab.spawner.accounts import account_name
from tests.support.hub import services_of, wait_for
from tests.support.ports import free_port_block
from tests.support.ssh import OpenSSH, askpass_environment, known_hosts, make_key


MAX_FAILURES = 3


@pytest.fixture(scope="module")
def hub(module_hub_factory):
    hub = module_hub_factory.start({
        "ssh": {"allow_token_password": True, "max_failed_attempts": MAX_FAILURES, "lockout": 600},
        "quotas": {"users": {"erin": {"max_servers": 0}}},
        "spawner": {"environment": {"MLFLOW_TRACKING_URI": "http://mlflow.test/"}},
        "mlflow": {"enabled": False},  # not under test here
    })
    for name in ("alice", "bob", "carol", "dave", "erin", "frank"):
        hub.create_user(name)
    return hub


@pytest.fixture(scope="module")
def ssh_port(hub):
    return hub.ports["ssh"]


@pytest.fixture(scope="module")
def keys(tmp_path_factory, hub):
    """A registered key for alice and for bob, and one nobody registered."""
    folder = tmp_path_factory.mktemp("keys")
    made = {name: make_key(folder, name) for name in ("alice", "bob", "erin", "stranger")}
    for name in ("alice", "bob", "erin"):
        as_user(hub, name).request("POST", "services/ssh/api/keys",
                                   {"public_key": made[name].with_suffix(".pub").read_text()})
    return made


@pytest.fixture(scope="module")
def trusted(tmp_path_factory, hub, ssh_port):
    return known_hosts(hub, ssh_port, tmp_path_factory.mktemp("known"))


@pytest.fixture(scope="module")
def alice(ssh_port, trusted, keys) -> OpenSSH:
    return OpenSSH(ssh_port, trusted, keys["alice"])


@pytest.fixture(scope="module")
def bob(ssh_port, trusted, keys) -> OpenSSH:
    return OpenSSH(ssh_port, trusted, keys["bob"])


@pytest.fixture(scope="module")
def alice_running(hub, alice):
    if not (hub.server_model("alice") or {}).get("ready"):
        hub.spawn("alice")
    return alice


def as_user(hub, name: str) -> HubClient:
    return HubClient(hub.url, hub.user_token(name))


def text(result: subprocess.CompletedProcess) -> str:
    return result.stdout.decode(errors="replace")


def errors(result: subprocess.CompletedProcess) -> str:
    return result.stderr.decode(errors="replace")


def audit_lines(hub) -> list[str]:
    return (hub.data_dir / "logs" / "ssh" / "audit.log").read_text().splitlines()


# ---------------------------------------------------------------- sessions


def test_a_command_runs_in_the_users_server_with_its_exit_status(hub, alice_running, is_root, hub_defaults):
    result = alice_running.ssh("alice", "echo out; echo err >&2; id -un; pwd; echo $JUPYTERHUB_USER; "
                                        "echo $MLFLOW_TRACKING_URI; echo ${GPULAB_SSH_ENDPOINT_SEED:-no-seed}; exit 7")
    assert result.returncode == 7, errors(result)
    lines = text(result).splitlines()
    assert lines[0] == "out" and "err" in errors(result)
    home = hub_defaults["spawner"]["local"]["home_root"]
    if is_root:
        account = account_name("alice", hub_defaults["spawner"]["local"]["account_prefix"])
        assert lines[1] == account
        assert lines[2] == pwd.getpwnam(account).pw_dir and lines[2].startswith(home)
    assert lines[3:5] == ["alice", "http://mlflow.test/"]  # the server's own environment
    assert lines[5] == "no-seed"  # the endpoint's secret stays in the server process


def test_stdin_reaches_the_command_and_large_output_arrives_whole(alice_running):
    result = alice_running.ssh("alice", "wc -c; head -c 5000000 /dev/zero", input=b"x" * 123456)
    assert result.returncode == 0, errors(result)
    assert result.stdout.startswith(b"123456\n")
    assert len(result.stdout) == len(b"123456\n") + 5_000_000


def test_a_pty_session_sees_a_terminal(alice_running):
    result = alice_running.ssh("alice", "tty; echo TERM=$TERM", extra=("-tt",))
    assert result.returncode == 0, errors(result)
    assert re.match(r"^/dev/pts/\d+\r?$", text(result).splitlines()[0])
    assert "TERM=" in text(result) and "TERM=\r" not in text(result)


def test_interactive_shell_follows_window_resizes(alice_running):
    command = alice_running.ssh_command("alice", extra=("-tt",))
    shell = pexpect.spawn(command[0], command[1:], dimensions=(30, 100), timeout=60)
    try:
        shell.sendline("stty size; echo DONE-ONE")
        shell.expect(r"30 100\r\nDONE-ONE")
        shell.setwinsize(50, 120)
        shell.sendline("stty size; echo DONE-TWO")
        shell.expect(r"50 120\r\nDONE-TWO")
        shell.sendline("exit 4")
        shell.expect(pexpect.EOF)
    finally:
        shell.close()
    assert shell.exitstatus == 4


def test_sftp_put_and_get(alice_running, tmp_path):
    original = tmp_path / "model.bin"
    original.write_bytes(os.urandom(300_000))
    back = tmp_path / "back.bin"
    result = alice_running.sftp("alice", f"put {original} sftp-model.bin\nget sftp-model.bin {back}\nls -l\n")
    assert result.returncode == 0, errors(result)
    assert back.read_bytes() == original.read_bytes()
    assert "sftp-model.bin" in text(result)


@pytest.mark.parametrize("legacy", [False, True], ids=["sftp-protocol", "legacy-scp"])
def test_scp_both_ways(alice_running, tmp_path, legacy):
    original = tmp_path / "data.bin"
    original.write_bytes(os.urandom(200_000))
    up = alice_running.scp(str(original), f"alice@127.0.0.1:scp-{legacy}.bin", legacy=legacy)
    assert up.returncode == 0, errors(up)
    down = alice_running.scp(f"alice@127.0.0.1:scp-{legacy}.bin", str(tmp_path / "copy.bin"), legacy=legacy)
    assert down.returncode == 0, errors(down)
    assert (tmp_path / "copy.bin").read_bytes() == original.read_bytes()


def test_rsync_of_a_directory_tree(alice_running, tmp_path):
    tree = tmp_path / "dataset"
    (tree / "train" / "cats").mkdir(parents=True)
    (tree / "train" / "cats" / "1.txt").write_text("meow")
    (tree / "labels.csv").write_text("a,b\n")
    result = alice_running.rsync(f"{tree}/", "alice@127.0.0.1:dataset/")
    assert result.returncode == 0, errors(result)
    listing = alice_running.ssh("alice", "cd dataset && find . -type f | sort && cat train/cats/1.txt")
    assert text(listing).split() == ["./labels.csv", "./train/cats/1.txt", "meow"]
    back = tmp_path / "again"
    assert alice_running.rsync("alice@127.0.0.1:dataset/", f"{back}/").returncode == 0
    assert (back / "train" / "cats" / "1.txt").read_text() == "meow"


def test_local_forwarding_reaches_a_port_inside_the_server(alice_running, tmp_path):
    inner = free_port_block(1)
    started = alice_running.ssh("alice", (
        f"mkdir -p web && echo served-from-the-server > web/index.html && cd web && "
        f"(nohup python3 -m http.server {inner} --bind 127.0.0.1 >/dev/null 2>&1 & echo $! > ../web.pid)"))
    assert started.returncode == 0, errors(started)
    local = free_port_block(2)
    socks = local + 1
    # -L as for TensorBoard; -D (a SOCKS proxy) as VS Code Remote-SSH's local server mode uses.
    command = alice_running.ssh_command("alice", extra=("-N", "-o", "ExitOnForwardFailure=yes",
                                                        "-L", f"{local}:127.0.0.1:{inner}", "-D", str(socks)))
    tunnel = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def fetch():
        if tunnel.poll() is not None:
            raise RuntimeError(f"ssh -L exited: {tunnel.stderr.read().decode()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{local}/index.html", timeout=5) as response:
                return response.read().decode()
        except OSError:
            return None

    try:
        assert wait_for(fetch, 60, "the page through the tunnel").strip() == "served-from-the-server"
        assert "served-from-the-server" in get_through_socks(socks, inner, "/index.html")
    finally:
        tunnel.terminate()
        tunnel.wait(10)
        alice_running.ssh("alice", "kill $(cat web.pid)")


def get_through_socks(proxy_port: int, port: int, path: str) -> str:
    """An HTTP GET to 127.0.0.1:port through a SOCKS5 proxy (what ssh -D offers)."""
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=30) as sock:
        sock.sendall(b"\x05\x01\x00")
        assert sock.recv(2) == b"\x05\x00"
        sock.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + port.to_bytes(2, "big"))
        reply = sock.recv(10)
        assert reply[:2] == b"\x05\x00", reply
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    return response.decode(errors="replace")


def test_named_server_is_reached_with_plus(hub, alice):
    hub.spawn("alice", "gpu")
    result = alice.ssh("alice+gpu", "echo $JUPYTERHUB_SERVER_NAME")
    assert result.returncode == 0, errors(result)
    assert text(result).strip() == "gpu"
    hub.stop_server("alice", "gpu")


def test_a_stopped_server_is_started_with_progress(hub, alice):
    hub.spawn("alice", "later")
    hub.stop_server("alice", "later")
    result = alice.ssh("alice+later", "echo up")
    assert result.returncode == 0, errors(result)
    assert text(result).strip() == "up"
    assert "starting alice's server 'later'" in errors(result)
    assert "Server ready" in errors(result)
    assert hub.server_model("alice", "later")["ready"]
    hub.stop_server("alice", "later")


def test_a_server_that_cannot_start_says_why(hub, ssh_port, trusted, keys):
    erin = OpenSSH(ssh_port, trusted, keys["erin"])
    result = erin.ssh("erin", "echo should-not-run")
    assert result.returncode == 255
    # the reason, whether the hub refused the start at once or the spawn failed later
    assert "cannot start erin's default server" in errors(result) and "over quota" in errors(result)
    assert "should-not-run" not in text(result)


def test_a_server_shared_through_the_hub_is_reachable_by_the_other_user(hub, alice_running, bob, hub_defaults, is_root):
    refused = bob.ssh("alice", "id -un")
    assert refused.returncode == 255
    assert "no server 'alice' that you (bob) may use" in errors(refused)
    hub.api.request("POST", "hub/api/shares/alice/", {"user": "bob"})
    try:
        result = bob.ssh("alice", "id -un")
        assert result.returncode == 0, errors(result)
        if is_root:
            assert text(result).strip() == account_name("alice", hub_defaults["spawner"]["local"]["account_prefix"])
        hub.stop_server("alice")
        stopped = bob.ssh("alice", "true")
        assert stopped.returncode == 255
        assert "alice's default server is not running; only alice can start it" in errors(stopped)
        assert hub.server_model("alice") is None
    finally:
        hub.api.request("DELETE", "hub/api/shares/alice/")
        hub.spawn("alice")
    assert bob.ssh("alice", "true").returncode == 255


# ---------------------------------------------------------------- refusals


def test_an_unregistered_key_is_refused(alice_running, ssh_port, trusted, keys):
    stranger = OpenSSH(ssh_port, trusted, keys["stranger"], source="127.0.0.3")
    result = stranger.ssh("alice", "true")
    assert result.returncode == 255
    assert "Permission denied" in errors(result)


def test_another_users_server_and_missing_servers_are_refused(hub, alice_running, bob):
    hub.spawn("bob")
    for login, message in [
        ("alice", "there is no server 'alice' that you (bob) may use"),
        ("alice+gpu", "there is no server 'alice+gpu' that you (bob) may use"),
        ("nobody-here", "there is no server 'nobody-here' that you (bob) may use"),
        ("bob+nope", "bob has no server named 'nope'"),
    ]:
        result = bob.ssh(login, "echo should-not-run")
        assert result.returncode == 255, (login, errors(result))
        assert message in errors(result)
        assert "should-not-run" not in text(result)
    assert text(bob.ssh("bob", "echo mine")).strip() == "mine"
    hub.stop_server("bob")


def test_another_users_key_cannot_forward_into_their_server(hub, alice_running, bob):
    refusal = ('refused identity=bob target=alice source=127.0.0.1 '
               'reason="there is no server \'alice\' that you (bob) may use"')
    before = sum(refusal in line for line in audit_lines(hub))
    result = bob.ssh("alice", extra=("-W", "127.0.0.1:22"))
    assert result.returncode == 255
    assert "stdio forwarding failed" in errors(result)
    assert sum(refusal in line for line in audit_lines(hub)) == before + 1


def test_token_passwords_work_and_repeated_wrong_ones_lock_out(hub, ssh_port, trusted, tmp_path):
    password_client = OpenSSH(ssh_port, trusted, source="127.0.0.2")
    options = ("-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
               "-o", "NumberOfPasswordPrompts=1")
    hub.spawn("dave")
    token = hub.user_token("dave")
    good = password_client.ssh("dave", "echo with-token", extra=options,
                               env=askpass_environment(tmp_path / "good", token))
    assert good.returncode == 0, errors(good)
    assert text(good).strip() == "with-token"

    narrow = hub.user_token("dave", ["read:users:name!user=dave"])
    refused = password_client.ssh("dave", "true", extra=options, env=askpass_environment(tmp_path / "narrow", narrow))
    assert refused.returncode == 255
    assert "may not access dave's default server" in errors(refused)

    carol_token = hub.user_token("carol")
    for attempt in range(MAX_FAILURES):
        wrong = password_client.ssh("carol", "true", extra=options,
                                    env=askpass_environment(tmp_path / f"wrong{attempt}", f"not-a-token-{attempt}"))
        assert wrong.returncode == 255
    locked = password_client.ssh("carol", "true", extra=options, env=askpass_environment(tmp_path / "right", carol_token))
    assert locked.returncode == 255
    assert "too many failed sign-ins" in errors(locked)
    log = "\n".join(audit_lines(hub))
    assert "auth-failed login=carol source=127.0.0.2 method=password" in log
    assert "locked-out who=source:127.0.0.2" in log and "who=user:" not in log  # an address, never a user
    for secret in (token, narrow, carol_token, "not-a-token-0"):
        assert secret not in log
    hub.stop_server("dave")


def test_failures_in_a_users_name_lock_the_address_never_the_users_valid_key(hub, alice_running, ssh_port, trusted, keys):
    """Issue 12, finding 7: wrong keys for alice from one address must not lock alice out."""
    attacker = OpenSSH(ssh_port, trusted, keys["stranger"], source="127.0.0.6")
    for _ in range(MAX_FAILURES + 1):
        assert attacker.ssh("alice", "true").returncode == 255
    locked = attacker.ssh("alice", "true")
    assert locked.returncode == 255 and "too many failed sign-ins from 127.0.0.6" in errors(locked)
    elsewhere = OpenSSH(ssh_port, trusted, keys["alice"], source="127.0.0.7")
    result = elsewhere.ssh("alice", "echo still-in")
    assert result.returncode == 0, errors(result)
    assert text(result).strip() == "still-in"
    assert not any("locked-out who=user:" in line for line in audit_lines(hub))


def test_endpoint_accepts_only_the_gateway(hub, alice_running):
    """The WebSocket is Jupyter-authenticated, and inside it SSH wants the gateway's derived password."""
    import asyncio

    import asyncssh
    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    from gpulab.extensions.ssh.trust import endpoint_host_key, endpoint_seed, master_secret
    from gpulab.extensions.ssh.tunnel import socket_pair

    url = hub.url.replace("http://", "ws://") + "user/alice/gpulab/ssh"

    async def attempt(token: str, password: str):
        websocket = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {token}"}))
        sock, end = await socket_pair()
        pumps = [asyncio.ensure_future(end.relay(lambda data: websocket.write_message(data, binary=True))),
                 asyncio.ensure_future(_feed(websocket, end))]
        try:
            async with asyncssh.run_client(sock, config=None, host="endpoint", port=22, username="alice",
                                           password=password, known_hosts=None, client_keys=None,
                                           agent_path=None, preferred_auth="password") as connection:
                return connection.get_server_host_key()
        finally:
            for pump in pumps:
                pump.cancel()
            websocket.close()

    async def _feed(websocket, end):
        while (message := await websocket.read_message()) is not None:
            await end.feed(message)

    async def scenario():
        with pytest.raises(HTTPClientError) as forbidden:
            await attempt(hub.user_token("bob"), "anything")
        assert forbidden.value.code == 403
        with pytest.raises(asyncssh.PermissionDenied):
            await attempt(hub.user_token("alice"), "a guess")
        seed = endpoint_seed(master_secret(hub.data_dir / "ssh" / "endpoint-master-secret"), "alice", "")
        from gpulab.extensions.ssh.trust import endpoint_password
        host_key = await attempt(hub.user_token("alice"), endpoint_password(seed))
        assert host_key.export_public_key() == endpoint_host_key(seed).export_public_key()

    asyncio.run(scenario())


# ---------------------------------------------------------------- keys, config, audit


def test_keys_api_validates_and_keeps_keys_to_one_user(hub, keys, tmp_path):
    alice_api, bob_api = as_user(hub, "alice"), as_user(hub, "bob")
    fresh = make_key(tmp_path, "fresh")
    added = bob_api.request("POST", "services/ssh/api/keys", {"public_key": fresh.with_suffix(".pub").read_text()})
    assert added["fingerprint"].startswith("SHA256:") and added["comment"] == "fresh@test"
    with pytest.raises(ClientError) as taken:
        alice_api.request("POST", "services/ssh/api/keys", {"public_key": fresh.with_suffix(".pub").read_text()})
    assert taken.value.status == 409 and "already registered" in taken.value.message
    with pytest.raises(ClientError) as private:
        alice_api.request("POST", "services/ssh/api/keys", {"public_key": fresh.read_text()})
    assert private.value.status == 400 and "private key" in private.value.message
    assert fresh.read_text().splitlines()[1] not in private.value.message
    with pytest.raises(ClientError) as garbage:
        alice_api.request("POST", "services/ssh/api/keys", {"public_key": "ssh-ed25519 not-base64"})
    assert garbage.value.status == 400
    with pytest.raises(ClientError) as missing:
        alice_api.request("POST", "services/ssh/api/keys", {"comment": "x"})
    assert missing.value.status == 400 and "public_key" in missing.value.message
    with pytest.raises(ClientError) as not_hers:
        alice_api.request("DELETE", f"services/ssh/api/keys/{added['id']}")
    assert not_hers.value.status == 404
    assert [k["id"] for k in bob_api.request("GET", "services/ssh/api/keys")].count(added["id"]) == 1
    bob_api.request("DELETE", f"services/ssh/api/keys/{added['id']}")
    assert added["id"] not in [k["id"] for k in bob_api.request("GET", "services/ssh/api/keys")]
    with pytest.raises(ClientError) as anonymous:
        HubClient(hub.url, "").request("GET", "services/ssh/api/keys")
    assert anonymous.value.status == 403


def test_keys_api_answers_bad_input_with_4xx_never_5xx(hub):
    """Issue 12, finding 10."""
    alice_api = as_user(hub, "alice")
    with pytest.raises(ClientError) as huge:
        alice_api.request("DELETE", "services/ssh/api/keys/9223372036854775808")
    assert huge.value.status == 404 and "9223372036854775808" in huge.value.message
    with pytest.raises(ClientError) as nested:
        alice_api.send("POST", "services/ssh/api/keys", b"[" * 100_000, "application/json")
    assert 400 <= nested.value.status < 500, nested.value.message


def test_keys_page_lists_fingerprints_and_the_config_block(hub, keys):
    request = urllib.request.Request(hub.url + "services/ssh/", headers={"Authorization": f"token {hub.user_token('alice')}"})
    with urllib.request.urlopen(request) as response:
        page = response.read().decode()
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(keys["alice"].with_suffix(".pub"))],
                                 capture_output=True, text=True).stdout.split()[1]
    assert fingerprint in page
    assert "Host gpulab" in page and "User alice" in page
    assert 'href="/services/ssh/">SSH keys</a>' in page


def test_cli_adds_lists_deletes_keys_and_prints_a_working_ssh_config(hub, ssh_port, trusted, tmp_path):
    environment = {**os.environ, "GPULAB_URL": hub.url, "GPULAB_TOKEN": hub.user_token("frank")}
    key = make_key(tmp_path, "frank-laptop")

    def gpulab(*args):
        return subprocess.run([str(hub_gpulab()), *args], capture_output=True, text=True, env=environment, timeout=60)

    added = gpulab("ssh-key", "add", str(key.with_suffix(".pub")))
    assert added.returncode == 0, added.stderr
    assert "added SHA256:" in added.stdout
    assert gpulab("ssh-key", "add", str(key)).returncode == 2  # the private key, by mistake
    listed = gpulab("ssh-key", "list")
    assert "frank-laptop@test" in listed.stdout and "never used" in listed.stdout

    block = gpulab("ssh-config", "--server", "work").stdout
    assert "Host gpulab-work" in block and "User frank+work" in block and f"Port {ssh_port}" in block
    config = tmp_path / "config"
    config.write_text(gpulab("ssh-config").stdout + f"    IdentityFile {key}\n    IdentitiesOnly yes\n"
                      "    BatchMode yes\n    StrictHostKeyChecking yes\n")
    (tmp_path / "kh").write_text(gpulab("ssh-config", "--known-hosts").stdout)
    hub.spawn("frank")
    result = subprocess.run(["ssh", "-F", str(config), "-o", f"UserKnownHostsFile={tmp_path / 'kh'}",
                             "-o", "BindAddress=127.0.0.4", "gpulab", "echo via-config"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "via-config"
    hub.stop_server("frank")
    wait_for(lambda: "never used" not in gpulab("ssh-key", "list").stdout, 30, "the key's last use")

    fingerprint = added.stdout.split()[1]
    assert gpulab("ssh-key", "delete", fingerprint).returncode == 0
    assert "frank-laptop@test" not in gpulab("ssh-key", "list").stdout


def hub_gpulab():
    import sys
    from pathlib import Path

    return Path(sys.executable).parent / "gpulab"


def test_audit_log_records_sessions_without_secrets(hub, alice_running, keys):
    marker = f"secret-{time.time_ns()}"
    result = alice_running.ssh("alice", f"echo {marker} > /dev/null")
    assert result.returncode == 0, errors(result)
    path = hub.data_dir / "logs" / "ssh" / "audit.log"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    log = path.read_text()
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(keys["alice"].with_suffix(".pub"))],
                                 capture_output=True, text=True).stdout.split()[1]
    assert f"login identity=alice login=alice source=127.0.0.1 method=publickey key={fingerprint}" in log
    assert re.search(r"session-open identity=alice target=alice source=127\.0\.0\.1 kind=exec pty=no", log)
    assert re.search(r"session-close identity=alice target=alice source=127\.0\.0\.1 kind=exec status=0 seconds=", log)
    assert "logout identity=alice" in log
    assert marker not in log  # commands are not logged
    private = keys["alice"].read_text()
    for line in private.splitlines()[1:-1]:
        assert line not in log
    assert keys["alice"].with_suffix(".pub").read_text().split()[1] not in log
    host_key = hub.data_dir / "ssh" / "ssh_host_ed25519_key"
    assert stat.S_IMODE(host_key.stat().st_mode) == 0o600


def test_a_busy_ssh_port_stops_the_hub_with_a_clear_message(hub_factory):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        hub = hub_factory.prepare({"ssh": {"port": port}})
        with pytest.raises(RuntimeError, match="the hub exited"):
            hub.start()
    # The services it had started before giving up end with it.
    wait_for(lambda: not services_of(hub.process.pid), 30, "the failed hub's services to end")
    log = hub.log_path.read_text()
    assert f"cannot listen for SSH on 127.0.0.1:{port}" in log and "address already in use" in log
    assert "set ssh.port and ssh.bind_address, or ssh.enabled: false" in log

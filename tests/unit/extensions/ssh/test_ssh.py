"""The SSH feature's pure parts: logins, the failure limiter, audit lines, key parsing, the key
store on a migrated SQLite database, derived endpoint keys, the apply step, the config block."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from types import SimpleNamespace

import asyncssh
import pytest
from traitlets.config import Config

from gpulab.db import make_engine
from gpulab.db.migrate import upgrade
from gpulab.hub_config.services.errors import Conflict, Invalid, NotFound
from gpulab.extensions.ssh.audit import audit_line
from gpulab.extensions.ssh.config import gateway_settings, public_host, servers_url
from gpulab.extensions.ssh.hubapi import HubError
from gpulab.extensions.ssh.lockouts import LockoutStore
from gpulab.extensions.ssh.publickeys import parse_public_key
from gpulab.extensions.ssh.ratelimit import FailureLimiter
from gpulab.extensions.ssh.service_settings import GatewayServiceSettings
from gpulab.extensions.ssh.sessions import command_line, session_environment
from gpulab.extensions.ssh.storage import MIGRATIONS, carry_over, ssh_database_url, upgrade_ssh_storage
from gpulab.extensions.ssh.store import KeyStore
from gpulab.extensions.ssh.targets import BadLogin, Target, parse_login, token_allows
from gpulab.extensions.ssh.trust import (
    EndpointSeed,
    endpoint_host_key,
    endpoint_password,
    endpoint_seed,
    gateway_host_key,
    master_secret,
)
from gpulab.extensions.ssh.upstream import Refused, Upstream, websocket_url
from gpulab.extensions.ssh.web import Endpoint, connection_info, ssh_config_block
from gpulab.hub_config.apply import apply_config
from gpulab.hub_config.settings import deep_merge
from gpulab.hub_config.typed_settings import Settings
from tests.support.settings import handed_over, typed_settings


def settings(**sections) -> Settings:
    return typed_settings(deep_merge({"hub": {"data_dir": "/srv/gpulab/data"}}, sections))


def public_key_text(algorithm: str = "ssh-ed25519", comment: str = "me@laptop", **options) -> str:
    key = asyncssh.generate_private_key(algorithm, comment=comment, **options)
    return key.export_public_key().decode()


# ---------------------------------------------------------------- logins


@pytest.mark.parametrize("login, target", [
    ("alice", Target("alice", "")),
    ("alice+gpu", Target("alice", "gpu")),
    ("a+b+", Target("a+b", "")),
    ("a+b+gpu", Target("a+b", "gpu")),
    ("alice@example.com+gpu", Target("alice@example.com", "gpu")),
])
def test_logins_name_the_owner_and_server(login, target):
    assert parse_login(login) == target


@pytest.mark.parametrize("login", ["", "+gpu", "alice/../bob", "x\nroot"])
def test_bad_logins_are_refused(login):
    with pytest.raises(BadLogin):
        parse_login(login)


def test_target_labels_and_scopes():
    assert Target("alice", "gpu").scope_filter == "server=alice/gpu"
    assert Target("alice", "").scope_filter == "server=alice/"
    assert Target("alice", "").label == "alice" and Target("alice", "gpu").label == "alice/gpu"
    assert Target("alice", "gpu").login == "alice+gpu"


def test_a_token_password_needs_access_to_the_named_server():
    gpu = Target("alice", "gpu")
    assert token_allows(["read:users:name!user=alice", "access:servers!user=alice"], gpu)
    assert token_allows(["access:servers!server=alice/gpu"], gpu)
    assert token_allows(["access:servers"], gpu)
    assert not token_allows(["access:servers!server=alice/"], gpu)
    assert not token_allows(["access:servers!user=alicex", "read:users:name!user=alice"], gpu)
    assert token_allows(["access:servers!server=alice/"], Target("alice", ""))


# ---------------------------------------------------------------- failure limiter


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_limiter_locks_a_source_after_max_failures_within_the_window_and_unlocks_after_lockout():
    clock = Clock()
    limiter = FailureLimiter(max_failures=3, window=60, lockout=300, clock=clock)
    assert limiter.failed("source:a", "u") == {}
    assert limiter.failed("source:a", "u") == {}
    assert limiter.locked_for("source:a") == 0
    assert limiter.failed("source:a", "u") == {"source:a": 1300.0}
    assert limiter.locked_for("source:a") == 300
    assert limiter.locked_for("source:b") == 0
    clock.now += 299
    assert limiter.locked_for("source:a") == 1
    clock.now += 1
    assert limiter.locked_for("source:a") == 0


def test_failures_in_a_users_name_never_lock_the_user_only_space_their_refusals():
    """Issue 12, finding 7: failing on purpose for alice from many addresses must not lock alice out."""
    clock = Clock()
    limiter = FailureLimiter(max_failures=3, window=60, lockout=300, clock=clock)
    for source in "abc":
        limiter.failed(f"source:{source}", "alice")
    assert all(limiter.locked_for(f"source:{s}") == 0 for s in "abcd")  # nothing is locked
    assert limiter.hold("bob") == 0
    # over the limit: each further refusal for alice waits for the next slot, 20 s apart,
    # whichever address asks, so guessing her token gets no faster with more addresses
    assert [limiter.hold("alice") for _ in range(3)] == [0, 20, 40]
    clock.now += 30
    assert limiter.hold("alice") == 30
    limiter.succeeded("alice")
    assert limiter.hold("alice") == 0


def test_limiter_forgets_failures_older_than_the_window():
    clock = Clock()
    limiter = FailureLimiter(max_failures=2, window=60, lockout=300, clock=clock)
    limiter.failed("source:a", "u")
    clock.now += 61
    assert limiter.failed("source:a", "u") == {}
    assert limiter.locked_for("source:a") == 0
    assert limiter.hold("u") == 0


def test_a_successful_sign_in_clears_the_users_failures_but_not_the_sources():
    limiter = FailureLimiter(max_failures=2, window=60, lockout=300, clock=Clock())
    limiter.failed("source:a", "u")
    limiter.succeeded("u")
    assert limiter.failed("source:a", "u") == {"source:a": 1300.0}


def test_lockouts_are_saved_and_restored_across_a_restart(tmp_path):
    url = f"sqlite:///{tmp_path / 'gpulab.sqlite'}"
    upgrade(url)
    clock = Clock()
    clock.now = 1_800_000_000.0
    before = FailureLimiter(max_failures=1, window=60, lockout=300, clock=clock)
    saved = LockoutStore(make_engine(url))
    for key, until in before.failed("source:203.0.113.7", "u").items():
        saved.lock(key, until)
    saved.lock("source:198.51.100.1", clock.now - 1)  # over already
    clock.now += 100
    after = FailureLimiter(max_failures=1, window=60, lockout=300, clock=clock)
    after.restore(LockoutStore(make_engine(url)).active(clock.now))
    assert after.locked_for("source:203.0.113.7") == 200
    assert after.locked_for("source:198.51.100.1") == 0
    assert LockoutStore(make_engine(url)).active(clock.now) == {"source:203.0.113.7": clock.now + 200}


# ---------------------------------------------------------------- audit lines and sessions


def test_audit_lines_quote_values_with_spaces_and_skip_missing_ones():
    line = audit_line("refused", identity="bob", target="alice/gpu", reason="not yours", key=None)
    assert line == 'refused identity=bob target=alice/gpu reason="not yours"'


def test_session_environment_keeps_the_servers_and_only_safe_client_variables():
    environ = session_environment({"CUDA_VISIBLE_DEVICES": "1", "MLFLOW_TRACKING_URI": "http://m", "TERM": "dumb"},
                                  {"LANG": "C.UTF-8", "LC_ALL": "C", "LD_PRELOAD": "/evil.so", "PATH": "/x"},
                                  "xterm-256color")
    assert environ == {"CUDA_VISIBLE_DEVICES": "1", "MLFLOW_TRACKING_URI": "http://m", "TERM": "xterm-256color",
                       "LANG": "C.UTF-8", "LC_ALL": "C"}
    assert "TERM" not in session_environment({"TERM": "dumb"}, {}, None)
    assert command_line("/bin/bash", None) == ["/bin/bash", "-l"]
    assert command_line("/bin/bash", "rsync --server .") == ["/bin/bash", "-c", "rsync --server ."]


# ---------------------------------------------------------------- public keys


def test_an_ed25519_public_key_is_parsed_with_its_fingerprint_and_comment():
    text = public_key_text()
    key = parse_public_key(text + "\n")
    assert key.algorithm == "ssh-ed25519" and key.comment == "me@laptop"
    assert key.fingerprint == asyncssh.import_public_key(text).get_fingerprint("sha256")
    assert key.openssh == " ".join(text.split()[:2])
    assert parse_public_key(text, comment="work").comment == "work"


def test_private_keys_are_refused_without_echoing_them():
    private = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    with pytest.raises(Invalid) as refused:
        parse_public_key(private)
    assert "private key" in refused.value.message
    assert private.splitlines()[1] not in refused.value.message


@pytest.mark.parametrize("text, needle", [
    ("", "empty"),
    ("ssh-ed25519 AAAA-not-base64", "not an OpenSSH public key"),
    ("hello world", "not an OpenSSH public key"),
])
def test_malformed_keys_are_refused_with_a_reason(text, needle):
    with pytest.raises(Invalid) as refused:
        parse_public_key(text)
    assert needle in refused.value.message


def test_two_keys_in_one_submission_and_short_rsa_keys_are_refused():
    with pytest.raises(Invalid, match="exactly one key"):
        parse_public_key(public_key_text() + "\n" + public_key_text())
    with pytest.raises(Invalid, match="at least 2048 bits"):
        parse_public_key(public_key_text("ssh-rsa", key_size=1024))
    assert parse_public_key(public_key_text("ssh-rsa", key_size=2048)).algorithm == "ssh-rsa"


# ---------------------------------------------------------------- key store


@pytest.fixture
def store(tmp_path):
    url = f"sqlite:///{tmp_path / 'gpulab.sqlite'}"
    upgrade(url)
    return KeyStore(make_engine(url))


def test_keys_are_added_listed_used_and_deleted_per_user(store):
    key = parse_public_key(public_key_text())
    record = store.add("alice", key)
    assert [r.fingerprint for r in store.list("alice")] == [key.fingerprint]
    assert store.list("bob") == []
    assert store.owner_of(key.fingerprint) == "alice"
    assert store.list("alice")[0].last_used_at is None  # a key query is not a sign-in
    store.mark_used(key.fingerprint)
    assert store.list("alice")[0].last_used_at is not None
    assert store.owner_of("SHA256:unknown") is None
    with pytest.raises(NotFound):
        store.delete("bob", record.id)
    store.delete("alice", record.id)
    assert store.owner_of(key.fingerprint) is None


@pytest.mark.parametrize("key_id", [0, 2**31, 9223372036854775808, 10**40])
def test_deleting_an_id_out_of_range_is_not_found(store, key_id):
    with pytest.raises(NotFound) as missing:
        store.delete("alice", key_id)
    assert str(key_id) in missing.value.message


def test_a_key_belongs_to_one_user_only(store):
    key = parse_public_key(public_key_text())
    store.add("alice", key)
    with pytest.raises(Conflict) as taken:
        store.add("bob", key)
    assert "alice" not in taken.value.message  # who owns a key is not revealed
    with pytest.raises(Conflict):
        store.add("alice", key)
    assert store.owner_of(key.fingerprint) == "alice"


# ---------------------------------------------------------------- trust


def test_endpoint_keys_are_derived_per_server_and_agree_on_both_sides(tmp_path):
    master = master_secret(tmp_path / "secret")
    assert master == master_secret(tmp_path / "secret")  # created once, then read
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
    alice = endpoint_seed(master, "alice", "")
    assert alice != endpoint_seed(master, "alice", "gpu") != endpoint_seed(master, "bob", "")
    assert endpoint_seed(master, "a", "b\0c") != endpoint_seed(master, "a\0b", "c")
    key = endpoint_host_key(alice)
    assert key.export_public_key() == endpoint_host_key(alice).export_public_key()
    assert key.export_public_key() != endpoint_host_key(endpoint_seed(master, "bob", "")).export_public_key()
    assert endpoint_password(alice) == endpoint_password(alice) != endpoint_password(endpoint_seed(master, "bob", ""))
    spawner = SimpleNamespace(user=SimpleNamespace(name="alice"), name="")
    assert EndpointSeed(str(tmp_path / "secret"))(spawner) == alice


def test_gateway_host_key_is_made_once_with_private_permissions(tmp_path):
    path = tmp_path / "ssh" / "ssh_host_ed25519_key"
    first = gateway_host_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert gateway_host_key(path).export_public_key() == first.export_public_key()
    assert Path(f"{path}.pub").read_bytes().split()[:2] == first.export_public_key().split()[:2]


# ---------------------------------------------------------------- settings and config


def test_the_gateway_is_a_managed_service_with_a_least_privilege_role():
    c = apply_config(settings(), Config())
    service = next(s for s in c.JupyterHub.services if s["name"] == "ssh")
    assert service["command"][-2:] == ["-m", "gpulab.extensions.ssh.service"]
    assert service["url"] == "http://127.0.0.1:8085"
    role = next(r for r in c.JupyterHub.load_roles if r["name"] == "ssh-service")
    assert role["scopes"] == ["tokens", "read:users:name", "read:servers", "servers"]
    user_role = next(r for r in c.JupyterHub.load_roles if r["name"] == "user")
    assert "access:services!service=ssh" in user_role["scopes"]
    assert "access:services!service=ssh" in c.Spawner.server_token_scopes
    assert {"label": "SSH keys", "url": "/services/ssh/"} in c.JupyterHub.template_vars["gpulab_nav"]
    seed = c.Spawner.environment["GPULAB_SSH_ENDPOINT_SEED"]
    assert isinstance(seed, EndpointSeed) and seed.master_secret_file == "/srv/gpulab/data/ssh/endpoint-master-secret"
    assert c.Spawner.environment["GPULAB_URL"] == "http://127.0.0.1:8000/"


def test_gateway_settings_derive_addresses_and_paths():
    values = gateway_settings(settings(ssh={"port": 2022, "allow_token_password": True}))
    assert values["port"] == 2022 and values["allow_token_password"] is True
    assert values["bind_address"] == "0.0.0.0" and values["public_host"] == "127.0.0.1"
    assert values["servers_url"] == "http://127.0.0.1:8000"
    assert values["host_key"] == "/srv/gpulab/data/ssh/ssh_host_ed25519_key"
    assert values["audit_log"] == "/srv/gpulab/data/logs/ssh/audit.log"
    assert values["database_url"] == "sqlite:////srv/gpulab/data/ssh/ssh.sqlite"  # not gpulab.sqlite
    shared = gateway_settings(settings(database={"url": "postgresql://gpulab@db/gpulab"}))
    assert shared["database_url"] == "postgresql://gpulab@db/gpulab"


def test_the_gateway_runs_as_its_own_account_owning_only_its_folders():
    c = apply_config(settings(spawner={"local": {"account_prefix": "lab-"}}), Config())
    service = next(s for s in c.JupyterHub.services if s["name"] == "ssh")
    assert json.loads(service["environment"]["GPULAB_SERVICE_ACCOUNT"]) == {
        "name": "lab_svc-ssh", "owns": ["/srv/gpulab/data/ssh", "/srv/gpulab/data/logs/ssh"]}
    low = apply_config(settings(ssh={"port": 22}), Config())  # only root may listen there
    assert "GPULAB_SERVICE_ACCOUNT" not in next(s for s in low.JupyterHub.services if s["name"] == "ssh")["environment"]


def old_style_database(data_dir: Path) -> str:
    """gpulab's database as an earlier version left it: SSH keys and lockouts in it."""
    url = f"sqlite:///{data_dir / 'state' / 'gpulab.sqlite'}"
    upgrade(url)
    return url


def test_keys_and_lockouts_move_once_from_gpulabs_database_to_the_gateways(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    main = old_style_database(data_dir)
    old = KeyStore(make_engine(main))
    kept = old.add("alice", parse_public_key(public_key_text()))
    old.add("bob", parse_public_key(public_key_text()))
    LockoutStore(make_engine(main)).lock("source:203.0.113.7", 2_000_000_000.0)
    (data_dir / "logs").mkdir()
    (data_dir / "logs" / "ssh-audit.log").write_text("login user=alice\n")
    values = settings(hub={"data_dir": str(data_dir)})

    assert upgrade_ssh_storage(values) == 2
    moved = KeyStore(make_engine(ssh_database_url(values)))
    assert moved.owner_of(kept.fingerprint) == "alice" and moved.list("alice")[0].id == kept.id
    assert [k.username for k in moved.list("bob")] == ["bob"]
    assert LockoutStore(make_engine(ssh_database_url(values))).active(1_900_000_000.0) == {
        "source:203.0.113.7": 2_000_000_000.0}
    assert old.list("alice") == [] and old.list("bob") == []  # gone from gpulab's database
    assert (data_dir / "logs" / "ssh" / "audit.log").read_text() == "login user=alice\n"
    assert not (data_dir / "logs" / "ssh-audit.log").exists()

    assert upgrade_ssh_storage(values) == 0  # once
    assert len(moved.list("alice")) == 1


def test_an_interrupted_move_is_finished_without_doubling_a_key(tmp_path):
    main = old_style_database(tmp_path)
    target = f"sqlite:///{tmp_path / 'ssh.sqlite'}"
    upgrade(target, MIGRATIONS)
    key = KeyStore(make_engine(main)).add("alice", parse_public_key(public_key_text()))
    carry_over(make_engine(main), make_engine(target))
    # the copy was committed but the originals were not deleted (the upgrade died in between)
    with make_engine(main).begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO ssh_keys (id, username, fingerprint, algorithm, public_key, comment, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key.id, "alice", key.fingerprint, key.algorithm, key.public_key, key.comment, key.created_at))
    assert carry_over(make_engine(main), make_engine(target)) == 0
    assert len(KeyStore(make_engine(target)).list("alice")) == 1
    assert KeyStore(make_engine(main)).list("alice") == []


def test_with_a_shared_database_nothing_moves(tmp_path):
    values = settings(hub={"data_dir": str(tmp_path)}, database={"url": old_style_database(tmp_path)})
    KeyStore(make_engine(values.database.url)).add("alice", parse_public_key(public_key_text()))
    assert upgrade_ssh_storage(values) == 0
    assert len(KeyStore(make_engine(values.database.url)).list("alice")) == 1
    assert not (tmp_path / "ssh").exists()


def test_public_host_and_servers_url_follow_the_hub_unless_set():
    assert public_host(settings(hub={"public_url": "https://lab.example.com/"})) == "lab.example.com"
    assert public_host(settings(ssh={"public_host": "ssh.example.com"})) == "ssh.example.com"
    assert public_host(settings(hub={"ip": "10.0.0.5"})) == "10.0.0.5"
    tls = settings(hub={"port": 443, "tls": {"cert_file": "/c.crt", "key_file": "/c.key"}})
    assert servers_url(tls) == "https://127.0.0.1:443"
    assert servers_url(settings(ssh={"servers_url": "http://proxy-public"})) == "http://proxy-public"
    assert websocket_url("https://127.0.0.1:443", "/user/alice/gpu/") == "wss://127.0.0.1:443/user/alice/gpu/gpulab/ssh"


def test_ssh_can_be_switched_off():
    c = apply_config(settings(ssh={"enabled": False}), Config())
    assert not any(s["name"] == "ssh" for s in c.JupyterHub.get("services", []))
    assert "GPULAB_SSH_ENDPOINT_SEED" not in c.Spawner.environment


def test_config_block_names_the_host_port_user_and_host_key():
    info = connection_info(Endpoint("lab.example.com", 2222, "ssh-ed25519 AAAAkey", "SHA256:abc"), "alice")
    assert info["known_hosts_line"] == "[lab.example.com]:2222 ssh-ed25519 AAAAkey"
    block = ssh_config_block(info, "gpu")
    assert block.splitlines()[:4] == ["Host gpulab-gpu", "    HostName lab.example.com", "    Port 2222",
                                      "    User alice+gpu"]
    assert ssh_config_block(info, alias="lab").startswith("Host lab\n")


# ---------------------------------------------------------------- refusals


class FailingHub:
    """A hub that answers every call with one error (what a hub under maintenance does)."""

    def __init__(self, status: int, message: str = "down"):
        self.error = HubError(status, message)

    async def mint_access_token(self, user, target):
        raise self.error


@pytest.mark.parametrize("status, message", [
    (404, "there is no server 'carol' that you (ada) may use"),
    (500, "the hub cannot open carol's default server now (500); try again later"),
    (599, "the hub cannot open carol's default server now (599); try again later"),
])
def test_every_hub_error_becomes_a_refusal_with_a_reason(status, message):
    import asyncio
    import logging

    upstream = Upstream(FailingHub(status), None, audit=lambda *a, **k: None, log=logging.getLogger("test"))
    with pytest.raises(Refused) as refused:
        asyncio.run(upstream.open("ada", Target("carol", ""), notify=lambda text: None))
    assert str(refused.value) == message


def test_the_gateway_reads_back_the_settings_the_hub_sent():
    sent = handed_over(apply_config(settings(ssh={"port": 2022, "lockout": 60}), Config()), "ssh")
    read = GatewayServiceSettings.of(sent)
    assert read.as_dict() == sent == gateway_settings(settings(ssh={"port": 2022, "lockout": 60}))
    assert read.port == 2022 and read.lockout == 60 and read.host_key == "/srv/gpulab/data/ssh/ssh_host_ed25519_key"

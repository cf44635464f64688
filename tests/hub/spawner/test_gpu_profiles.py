"""GPU profiles end to end: a real hub, real servers, a declared GPU inventory.

There is no GPU on the test machines: the devices come from tests/support/declared_gpus.py
through the same interface the NVML reader implements. What this does not cover: NVML
itself, and CUDA actually honouring CUDA_VISIBLE_DEVICES (checked on a GPU machine).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import psutil
import pytest

from gpulab.hub_config.client import ClientError
from gpulab.spawner.accounts import account_name
from tests.support.gpu_hub import make_user, start_gpu_hub
from tests.support.hub import wait_for
from tests.support.sessions import signed_in_user


def server_process(account: str) -> psutil.Process:
    matches = [p for p in psutil.process_iter(["username", "cmdline"]) if p.info["username"] == account
               and any("jupyterhub-singleuser" in part for part in p.info["cmdline"] or [])]
    assert len(matches) == 1, matches
    return matches[0]


def server_env(hub, user: str, prefix: str) -> dict:
    return server_process(account_name(user, prefix)).environ()


def refused(call) -> ClientError:
    with pytest.raises(ClientError) as error:
        call()
    return error.value


@pytest.fixture(scope="module")
def hub(module_hub_factory, tmp_path_factory):
    hub = start_gpu_hub(module_hub_factory, tmp_path_factory.mktemp("catalog"))
    hub.api.request("POST", "hub/api/groups/ml", {"users": []})
    return hub


@pytest.mark.parametrize("options, status, message", [
    ({"profile": "gpu-9"}, 400, "unknown profile 'gpu-9'"),
    ({"profile": "vip"}, 403, "may not use profile 'vip'"),
    ({"profile": "gpu-2", "environment": "cpu"}, 400, "environment 'cpu' is not offered with profile 'gpu-2'"),
    ({"profile": "gpu-2", "environment": "torch13"}, 400, "CUDA 13.0 needs NVIDIA driver 580.65.06 or newer"),
    ({"profile": "cpu", "gpus": 4}, 400, "unknown option(s): gpus"),
])
def test_refused_choices_are_4xx_with_the_reason(hub, options, status, message):
    make_user(hub, "chooser")
    error = refused(lambda: hub.api.request("POST", "hub/api/users/chooser/server", options))
    assert (error.status, message in error.message) == (status, True), error.message
    assert hub.server_model("chooser") is None


def test_refused_named_spawns_leave_no_server_behind(hub):
    make_user(hub, "namer")
    for name in ("try1", "try2", "try3", "try4"):  # more than the limit of 3 named servers
        error = refused(lambda: hub.api.request("POST", f"hub/api/users/namer/servers/{name}", {"profile": "nope"}))
        assert (error.status, "unknown profile 'nope'" in error.message) == (400, True), error.message
    assert set(hub.api.request("GET", "hub/api/users/namer?include_stopped_servers=1")["servers"]) == {""}
    hub.spawn("namer", "good", {"profile": "cpu"})
    hub.stop_server("namer", "good")


def test_a_refused_spawn_keeps_the_options_of_the_last_admitted_one(hub):
    make_user(hub, "keeper")
    hub.spawn("keeper", options={"profile": "cpu"})
    hub.stop_server("keeper")
    error = refused(lambda: hub.api.request("POST", "hub/api/users/keeper/server", {"profile": "nope"}))
    assert error.status == 400
    stopped = hub.api.request("GET", "hub/api/users/keeper?include_stopped_servers=1")["servers"][""]
    assert stopped["user_options"] == {"profile": "cpu"}
    hub.api.request("POST", "hub/api/users/keeper/server")  # no body: the stored options are used
    wait_for(lambda: (hub.server_model("keeper") or {}).get("ready"), 90, "keeper's server")
    assert server_env(hub, "keeper", hub.settings["spawner"]["local"]["account_prefix"])["GPULAB_PROFILE"] == "cpu"
    hub.stop_server("keeper")


def test_a_refused_first_spawn_stores_no_options(hub):
    make_user(hub, "first")
    assert refused(lambda: hub.api.request("POST", "hub/api/users/first/server", {"profile": "nope"})).status == 400
    hub.api.request("POST", "hub/api/users/first/server")  # no body: the default profile, not "nope"
    wait_for(lambda: (hub.server_model("first") or {}).get("ready"), 90, "first's server")
    hub.stop_server("first")


def test_gpu_servers_see_only_their_devices_and_cpu_servers_none(hub, hub_defaults):
    prefix = hub_defaults["spawner"]["local"]["account_prefix"]
    make_user(hub, "gina", ["ml"])
    make_user(hub, "carl")
    hub.spawn("gina", options={"profile": "gpu-1"})
    hub.spawn("carl")
    gina, carl = server_env(hub, "gina", prefix), server_env(hub, "carl", prefix)
    assert gina["CUDA_VISIBLE_DEVICES"] == "GPU-00000000-test"
    assert (gina["GPULAB_PROFILE"], gina["GPULAB_ENVIRONMENT"]) == ("gpu-1", "torch12")
    assert carl["CUDA_VISIBLE_DEVICES"] == ""
    assert (carl["GPULAB_PROFILE"], carl["MEM_LIMIT"], carl["CPU_LIMIT"]) == ("cpu", str(2 * 10**9), "1")
    if os.geteuid() == 0:  # cgroups: the server and its kernels are held to the profile's limits
        membership = Path(f"/proc/{server_process(account_name('carl', prefix)).pid}/cgroup").read_text()
        memory = next(line.split(":")[2] for line in membership.splitlines() if ":memory:" in line)
        assert memory.endswith(f"/gpulab/{account_name('carl', prefix)}")
        limit = int(Path(f"/sys/fs/cgroup/memory{memory}/memory.limit_in_bytes").read_text())
        assert 0 <= 2 * 10**9 - limit < 4096  # the kernel rounds down to a page
    hub.stop_server("gina")
    hub.stop_server("carl")
    assert "Received unhandled user_options" not in hub.log_path.read_text()  # issue 15 item 12: gpulab applies them


def test_a_full_profile_is_a_409_with_the_reason_and_frees_up_on_stop(hub):
    for name in ("fay", "finn"):
        make_user(hub, name)
    hub.spawn("fay", options={"profile": "gpu-2"})
    error = refused(lambda: hub.api.request("POST", "hub/api/users/finn/server", {"profile": "gpu-2"}))
    assert error.status == 409 and "not enough free devices for 2 × GPU; all are in use" in error.message
    hub.stop_server("fay")
    hub.spawn("finn", options={"profile": "gpu-2"})
    hub.stop_server("finn")


def test_two_users_racing_for_the_last_gpu_one_wins_the_other_is_told(hub):
    for name in ("ron", "rita", "rex"):
        make_user(hub, name, ["ml"])
    hub.spawn("ron", options={"profile": "gpu-1"})  # one of the two GPUs is now taken
    results, barrier = {}, threading.Barrier(2)

    def race(name):
        barrier.wait()
        try:
            hub.api.request("POST", f"hub/api/users/{name}/server", {"profile": "gpu-1"})
            results[name] = "started"
        except ClientError as error:
            results[name] = (error.status, error.message)

    threads = [threading.Thread(target=race, args=(n,)) for n in ("rita", "rex")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [n for n, r in results.items() if r == "started"]
    losers = [r for r in results.values() if r != "started"]
    assert len(winners) == 1 and len(losers) == 1, results
    assert losers[0][0] == 409 and "all are in use" in losers[0][1]
    for name in ("ron", winners[0]):
        hub.stop_server(name)


def test_mig_slices_are_allocated_one_per_server(hub, hub_defaults):
    prefix = hub_defaults["spawner"]["local"]["account_prefix"]
    make_user(hub, "mia")
    hub.spawn("mia", options={"profile": "mig"})
    assert server_env(hub, "mia", prefix)["CUDA_VISIBLE_DEVICES"] == "MIG-00000000-test"
    hub.stop_server("mia")


def test_the_spawn_form_shows_availability_and_disables_a_full_profile(hub):
    reader = signed_in_user(hub, "page-reader", "gpu-admin")
    make_user(hub, "page-reader", ["ml"])
    make_user(hub, "holder")
    hub.spawn("holder", options={"profile": "gpu-2"})
    html = reader.get(hub.url + "hub/spawn/page-reader").text
    assert 'value="gpu-1"' in html and 'value="vip"' not in html  # not allowed: hidden
    assert "0 of 2 NVIDIA A100-SXM4-80GB free" in html
    gpu2 = html[html.index('value="gpu-2"') - 400: html.index('value="gpu-2"') + 600]
    assert "disabled" in gpu2 and "Unavailable: full: 0 of 2 NVIDIA A100-SXM4-80GB free" in gpu2
    assert "2 of 2 MIG 1g.10gb slices free" in html
    assert "unavailable: CUDA 13.0 needs NVIDIA driver 580.65.06 or newer" in html
    hub.stop_server("holder")


def test_quotas_refuse_with_the_reason(module_hub_factory, tmp_path):
    hub = start_gpu_hub(module_hub_factory, tmp_path, gpus=4, name="quota", quotas={
        "default": {"max_gpus": 1, "max_servers": 2},
        "users": {"tom": {"max_gpus": 4, "max_servers": 4}},
        "groups": {"team": {"max_gpus": 2}}})
    hub.api.request("POST", "hub/api/groups/team", {"users": []})
    make_user(hub, "quinn")
    for name in ("tess", "tom"):
        make_user(hub, name, ["team"])

    error = refused(lambda: hub.api.request("POST", "hub/api/users/quinn/server", {"profile": "gpu-2"}))
    assert error.status == 403 and "over quota: quinn holds 0 of 1 GPUs allowed and this needs 2 more" in error.message

    hub.spawn("tess", "a", options={"profile": "mig"})
    hub.spawn("tess", "b", options={"profile": "cpu"})
    error = refused(lambda: hub.api.request("POST", "hub/api/users/tess/servers/c", {"profile": "cpu"}))
    assert error.status == 403 and "over quota: tess runs 2 of 2 servers allowed" in error.message

    hub.spawn("tom", "a", options={"profile": "mig"})  # the group now holds its 2 GPUs
    error = refused(lambda: hub.api.request("POST", "hub/api/users/tom/servers/b", {"profile": "gpu-2"}))
    assert error.status == 403 and "over quota: group team holds 2 of 2 GPUs allowed and this needs 2 more" in error.message


def test_stopping_releases_and_a_restart_keeps_a_running_servers_gpu(module_hub_factory, tmp_path, hub_defaults):
    hub = start_gpu_hub(module_hub_factory, tmp_path, gpus=1, migs=0, name="restart")
    for name in ("kept", "waiting"):
        make_user(hub, name)
    hub.api.request("POST", "hub/api/groups/ml", {"users": ["kept", "waiting"]})
    hub.spawn("kept", options={"profile": "gpu-1"})
    hub.restart()
    error = refused(lambda: hub.api.request("POST", "hub/api/users/waiting/server", {"profile": "gpu-1"}))
    assert error.status == 409
    hub.stop_server("kept")
    hub.spawn("waiting", options={"profile": "gpu-1"})
    hub.stop_server("waiting")


def test_the_ledger_recovers_after_a_hub_crash_and_a_dead_server(module_hub_factory, tmp_path, hub_defaults):
    """The hub is killed (no clean shutdown), and the server dies while it is down."""
    prefix = hub_defaults["spawner"]["local"]["account_prefix"]
    hub = start_gpu_hub(module_hub_factory, tmp_path, gpus=1, migs=0, name="crash")
    hub.api.request("POST", "hub/api/groups/ml", {"users": []})
    for name in ("crashy", "next-in-line"):
        make_user(hub, name, ["ml"])
    hub.spawn("crashy", options={"profile": "gpu-1"})
    server = server_process(account_name("crashy", prefix))
    os.killpg(hub.process.pid, 9)
    hub.process.wait()
    server.kill()
    server.wait(10)
    hub.start()
    hub.spawn("next-in-line", options={"profile": "gpu-1"})
    assert json.loads(json.dumps(server_env(hub, "next-in-line", prefix)))["CUDA_VISIBLE_DEVICES"] == "GPU-00000000-test"
    hub.stop_server("next-in-line")

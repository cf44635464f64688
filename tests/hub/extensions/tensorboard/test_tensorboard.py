"""TensorBoard behind the hub, end to end: a real hub, alice's real server, event files written by
her own kernel, and TensorBoard's page, fonts and data API fetched through the hub's proxy.
Not covered: a browser rendering the charts (the MLflow browser test opens the launcher only)."""

from __future__ import annotations

import re

import pytest
import requests

from tests.support.kernels import run_in_kernel


pytestmark = pytest.mark.root

WRITE_EVENTS = """
import time
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
for run in ("baseline", "wide"):
    writer = EventFileWriter(f"runs/{run}")
    for step in range(3):
        value = summary_pb2.Summary.Value(tag="loss", simple_value=1.0 / (step + 1))
        writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=[value])))
    writer.close()
print("written")
"""


@pytest.fixture(scope="module")
def alice(module_hub_factory):
    hub = module_hub_factory.start({"tensorboard": {"idle_timeout_seconds": 1800}})
    hub.create_user("alice")
    token = hub.user_token("alice")
    hub.spawn("alice")
    assert "written" in run_in_kernel(hub, "alice", WRITE_EVENTS, token)
    session = requests.Session()
    session.headers["Authorization"] = f"token {token}"
    return hub, session


def test_the_picker_lists_folders_with_event_files(alice):
    hub, session = alice
    page = session.get(f"{hub.url}user/alice/tensorboard/")
    assert page.status_code == 200
    assert "runs/baseline" in page.text and "runs/wide" in page.text
    assert "30 minutes" in page.text and "30.0" not in page.text  # issue 15 item 7
    assert 'href="/user/alice/lab"' in page.text


def test_tensorboard_page_fonts_and_data_resolve_behind_the_hub(alice):
    hub, session = alice
    opened = session.get(f"{hub.url}user/alice/tensorboard/open", params={"logdir": "runs"})
    assert opened.status_code == 200, opened.text[-500:]
    base = re.match(r"^(.*/tensorboard/[0-9a-f]+/)", opened.url).group(1)
    # Fonts were root-absolute (/font-roboto/...): under the hub they 404ed at /hub/font-roboto/.
    fonts = re.findall(r"url\(([^)]*font-roboto[^)]*)\)", opened.text)
    assert fonts and all(f.startswith(base.split(hub.url.rstrip("/"))[-1]) for f in fonts), fonts[:2]
    font = session.get(hub.url.rstrip("/") + fonts[0])
    assert font.status_code == 200 and font.headers["Content-Type"].startswith("font/")
    runs = session.get(base + "data/runs")
    assert runs.status_code == 200 and sorted(runs.json()) == ["baseline", "wide"]
    key = base.rstrip("/").rsplit("/", 1)[1]
    stopped = session.delete(f"{hub.url}user/alice/tensorboard/api/instances/{key}")
    assert stopped.status_code == 204
    assert session.get(f"{hub.url}user/alice/tensorboard/api/instances").json() == []


def test_another_user_cannot_open_alices_tensorboard(alice):
    hub, _ = alice
    hub.create_user("bob")
    bob = requests.get(f"{hub.url}user/alice/tensorboard/", headers={"Authorization": f"token {hub.user_token('bob')}"},
                       allow_redirects=False)
    assert bob.status_code in (302, 403, 404) and "runs/baseline" not in bob.text

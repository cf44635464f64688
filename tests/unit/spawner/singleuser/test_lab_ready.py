"""@gpulab/lab-ready (spawner/singleuser/lab_ready.py): the files JupyterLab loads, the link that
puts them on its path, and the plugin's decisions, run in node against a stand-in application."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile

import pytest
from traitlets.config import Config

from gpulab.spawner import singleuser
from gpulab.spawner.singleuser import lab_ready


def test_package_names_the_container_script_by_its_content():
    package = lab_ready.package()
    assert package["name"] == lab_ready.NAME
    assert package["jupyterlab"]["_build"]["extension"] == "./extension"
    entry = lab_ready.entry_point()
    assert entry.is_file(), entry
    # served as immutable (static_cache.py): an edit without a new name would reach no returning browser
    assert entry.name == lab_ready.content_name(entry.read_bytes()), (
        f"rename {entry.name} to {lab_ready.content_name(entry.read_bytes())} and update package.json")
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]  # no stale container left beside it


def test_the_link_puts_the_folder_on_jupyterlabs_path_and_keeps_the_users_own():
    class Server:
        config = Config()

    server = Server()
    server.config.LabApp.extra_labextensions_path = ["/opt/site-extensions"]
    singleuser._link_jupyter_server_extension(server)
    assert server.config.LabApp.extra_labextensions_path == ["/opt/site-extensions", str(lab_ready.LABEXTENSIONS)]

    unset = Server()
    unset.config = Config()
    singleuser._link_jupyter_server_extension(unset)
    merged = Config()
    merged.merge(unset.config)
    from jupyterlab.labapp import LabApp

    assert str(lab_ready.LABEXTENSIONS) in LabApp(config=merged).extra_labextensions_path


def test_jupyterlab_lists_the_extension():
    from jupyterlab_server.config import get_federated_extensions

    found = get_federated_extensions([str(lab_ready.LABEXTENSIONS)])
    assert list(found) == [lab_ready.NAME]
    assert found[lab_ready.NAME]["jupyterlab"]["_build"]["load"] == f"static/{lab_ready.entry_point().name}"


NODE_HARNESS = r"""
const fs = require("fs");
const [script, casesJson] = process.argv.slice(2);
const cases = JSON.parse(casesJson);
(async () => {
  const results = [];
  for (const c of cases) {
    const executed = [];
    const calls = [];
    const classes = new Set(c.restoring === false ? [] : ["jp-mod-restoring"]);
    const browser = { id: "filebrowser", hasClass: k => classes.has(k),
      removeClass: k => { classes.delete(k); calls.push("shown"); },
      model: { restore: async id => { calls.push("restore:" + id); }, refresh: async () => { calls.push("refresh"); } } };
    global.window = { location: { search: c.search || "" } };
    global.document = { getElementById: id => id === "jupyter-config-data"
      ? { textContent: JSON.stringify({ treePath: c.treePath || "" }) } : null };
    global.console = { warn: () => {}, log: console.log };
    eval(fs.readFileSync(script, "utf8"));
    const container = window._JUPYTERLAB["@gpulab/lab-ready"];
    container.init({});
    const module = (await container.get("./extension"))();
    const plugins = module.default;
    let restore;
    const app = {
      name: c.appName || "JupyterLab",
      restored: new Promise(resolve => { restore = resolve; }),
      shell: { isEmpty: area => area === "main" && c.empty,
               widgets: area => (area === (c.browserArea || "left") ? [{ id: "other" }, browser] : [])[Symbol.iterator]() },
      commands: { hasCommand: id => id === "launcher:create" && !c.noLauncher,
                  execute: async id => { executed.push(id); } },
    };
    plugins.forEach(p => p.activate(app));
    const before = executed.length + calls.length;
    restore();
    await new Promise(r => setTimeout(r, 0));
    results.push({ ids: plugins.map(p => p.id), autoStart: plugins.map(p => p.autoStart),
                   before, executed, calls, missing: await container.get("./other").then(() => "resolved", () => "rejected") });
  }
  console.log(JSON.stringify(results));
})();
"""


@pytest.fixture(scope="module")
def run_plugin(tmp_path_factory):
    node = shutil.which("node")
    if node is None:
        pytest.skip("needs node")
    harness = tmp_path_factory.mktemp("node") / "harness.js"
    harness.write_text(NODE_HARNESS)

    def run(*cases: dict) -> list[dict]:
        done = subprocess.run([node, str(harness), str(lab_ready.entry_point()), json.dumps(cases)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    return run


SHOWN = ["restore:filebrowser", "refresh", "shown"]  # what JupyterLab's restoreBrowser does after the route


def test_once_the_layout_is_restored_the_launcher_opens_and_the_file_browser_shows(run_plugin):
    [result] = run_plugin({"empty": True})
    assert result["ids"] == ["@gpulab/lab-ready:launcher"] and result["autoStart"] == [True]
    assert result["before"] == 0  # nothing before app.restored
    assert result["executed"] == ["launcher:create"]
    assert result["calls"] == SHOWN
    assert result["missing"] == "rejected"


def test_restored_documents_get_no_launcher_but_the_file_browser_shows(run_plugin):
    [result] = run_plugin({"empty": False, "browserArea": "right"})
    assert result["executed"] == []
    assert result["calls"] == SHOWN


def test_a_file_browser_that_is_not_waiting_for_the_route_is_left_alone(run_plugin):
    [result] = run_plugin({"empty": True, "restoring": False})
    assert result["executed"] == ["launcher:create"]
    assert result["calls"] == []


@pytest.mark.parametrize("case", [
    {"empty": True, "treePath": "notes/todo.md"},  # /lab/tree/...: JupyterLab opens that file or folder
    {"empty": True, "search": "?reset"},  # the workspace is reset and the page redirected
    {"empty": True, "search": "?clone=other"},
    {"empty": True, "appName": "Jupyter Notebook"},  # Notebook 7 loads Lab extensions too
], ids=["tree-url", "reset", "clone", "notebook-7"])
def test_jupyterlab_decides_as_before_where_the_url_decides(run_plugin, case):
    [result] = run_plugin(case)
    assert result["executed"] == [] and result["calls"] == []


def test_no_launcher_without_the_launcher_extension(run_plugin):
    [result] = run_plugin({"empty": True, "noLauncher": True})
    assert result["executed"] == []
    assert result["calls"] == SHOWN


def test_the_wheel_carries_the_extension(tmp_path):
    """Images install gpulab from a wheel: the extension's files must be in it (setup.py's package_data)."""
    repo = lab_ready.LABEXTENSIONS.parents[2]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(repo)],
                   check=True, capture_output=True)
    names = set(zipfile.ZipFile(next(tmp_path.glob("gpulab-*.whl"))).namelist())
    folder = f"gpulab/spawner/singleuser/labextension/{lab_ready.NAME}/"
    assert {folder + "package.json", folder + f"static/{lab_ready.entry_point().name}"} <= names

"""Lab extensions' content-hashed files as immutable (spawner/singleuser/static_cache.py): which
files, under which URLs, and in a real ServerApp with JupyterLab behind a JupyterHub-like base URL."""

from __future__ import annotations

from pathlib import Path

from gpulab.spawner.singleuser import lab_ready, static_cache


def extension(root: Path, name: str, files: list[str]) -> None:
    static = root / name / "static"
    static.mkdir(parents=True)
    (root / name / "package.json").write_text("{}")
    for file in files:
        (static / file).parent.mkdir(parents=True, exist_ok=True)
        (static / file).write_text("x")


def test_only_files_named_by_their_content_hash(tmp_path):
    extension(tmp_path, "@org/widgets", ["remoteEntry.c8c9eed2cdefdeac1234.js", "84.09c61a35dce1705f.js",
                                         "2.db271f70c2da418b0cdc.js.LICENSE.txt", "style.js",
                                         "third-party-licenses.json", "fonts/0e53fe4feaaacc48.woff"])
    extension(tmp_path, "plain_ext", ["747.67662283a5707eeb4d4c.js", "index.js", "12.abc.js"])
    found = {p.relative_to(tmp_path).as_posix() for p in static_cache.hashed_files(tmp_path)}
    assert found == {"@org/widgets/static/remoteEntry.c8c9eed2cdefdeac1234.js", "@org/widgets/static/84.09c61a35dce1705f.js",
                     "@org/widgets/static/2.db271f70c2da418b0cdc.js.LICENSE.txt",
                     "@org/widgets/static/fonts/0e53fe4feaaacc48.woff", "plain_ext/static/747.67662283a5707eeb4d4c.js"}


def test_urls_carry_the_servers_base_url(tmp_path):
    extension(tmp_path, "@org/widgets", ["84.09c61a35dce1705f.js", "style.js"])
    urls = static_cache.immutable_urls("/user/ann/", "/lab/extensions/", [str(tmp_path)])
    assert urls == ["/user/ann/lab/extensions/@org/widgets/static/84.09c61a35dce1705f.js"]


def test_a_real_server_lists_the_hashed_files_of_every_lab_extension_path(tmp_path, monkeypatch):
    from jupyter_server.serverapp import ServerApp

    for variable in ("HOME", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR"):  # its databases and files here
        (tmp_path / variable.lower()).mkdir()
        monkeypatch.setenv(variable, str(tmp_path / variable.lower()))
    app = ServerApp()
    app.initialize(argv=["--ServerApp.jpserver_extensions={'gpulab.spawner.singleuser': True}",
                         "--ServerApp.base_url=/user/ann/", f"--ServerApp.root_dir={tmp_path}",
                         "--ServerApp.port=0", "--ServerApp.open_browser=False"])
    try:
        listed = set(app.web_app.settings["static_immutable_cache"])
        ours = f"/user/ann/lab/extensions/{lab_ready.NAME}/static/{lab_ready.entry_point().name}"
        assert ours in listed  # lab_ready.py's folder, linked before JupyterLab read its path
        assert f"/user/ann/lab/extensions/{lab_ready.NAME}/package.json" not in listed
        # JupyterLab's own entries stay (its static files, and its base-URL-less extension folders)
        assert "/user/ann/static/lab/" in listed
    finally:
        app.http_server.stop()

"""Pages of gpulab's services keep the hub's navigation (issue 15 item 5)."""

from __future__ import annotations

from types import SimpleNamespace

from gpulab.hub_config.services.pages import HubLookPages


NAV = [{"label": "Projects", "url": "/services/projects/"}]


def render(user: dict | None) -> str:
    pages = HubLookPages([], base_url="/", nav=NAV)
    handler = SimpleNamespace(current_user=user, xsrf_token=b"x")
    return pages.render(handler, "error.html", status_code=404, message="nothing here")


def test_an_admin_keeps_the_admin_link_on_service_pages():
    # A service's OAuth token never carries the hub's admin-ui scope: the admin flag decides.
    admin = render({"name": "alice", "admin": True, "scopes": ["access:services!service=projects"]})
    assert 'href="/hub/admin"' in admin and 'href="/services/projects/"' in admin


def test_others_get_no_admin_link():
    page = render({"name": "bob", "admin": False, "scopes": []})
    assert 'href="/hub/admin"' not in page and 'href="/hub/home"' in page


def test_tensorboard_page_helpers(tmp_path):
    from gpulab.extensions.tensorboard.page import find_log_folders, human_duration, prefix_font_urls

    assert [human_duration(s) for s in (1, 45, 60, 1800, 3600, 5400, 7260)] == [
        "1 second", "45 seconds", "1 minute", "30 minutes", "1 hour", "1 hour 30 minutes", "2 hours 1 minute"]
    body = b"src: local('Roboto'), url(/font-roboto/a.woff2) format('woff2'); url(/other.png)"
    assert prefix_font_urls(body, "/user/a/tensorboard/0123456789ab/") == (
        b"src: local('Roboto'), url(/user/a/tensorboard/0123456789ab/font-roboto/a.woff2) format('woff2'); url(/other.png)")
    for folder in ("runs/a", "runs/b/deep", ".hidden/c", "empty"):
        (tmp_path / folder).mkdir(parents=True)
    for folder in ("runs/a", "runs/b/deep", ".hidden/c"):
        (tmp_path / folder / "events.out.tfevents.1.host.1.0").write_bytes(b"")
    assert find_log_folders(tmp_path) == [tmp_path / "runs/a", tmp_path / "runs/b/deep"]

"""Pages of gpulab's services keep the hub's navigation (issue 15 item 5)."""

from __future__ import annotations

from types import SimpleNamespace

from gpulab.extensions.service.pages import HubLookPages

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

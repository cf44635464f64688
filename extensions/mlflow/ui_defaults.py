"""MLflow's UI as gpulab's users expect it on first open: experiments and runs ("Model
training"), not the GenAI view; no telemetry and no telemetry banner; the assistant (which gpulab
switches off) not opened by itself. The UI keeps these choices in the browser's localStorage, so
its page gets a few defaults there, each written only if the user has not chosen yet.
"""

from __future__ import annotations

import json

# MLflow's UI stores each choice under `<key>_v<version>` as JSON (its useLocalStorage hook).
UI_DEFAULTS = {
    "mlflow.workflowType_v1": "machine_learning",
    "mlflow.settings.telemetry.enabled_v1": False,
    "mlflow.telemetry.info.alert.dismissed_v1": True,
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": True,
    "mlflow.assistant.panelOpen_v1": False,
    "mlflow.home.getting-started.collapsed_v1": True,  # its demo is GenAI tracing and prompts
}


def defaults_script(defaults: dict = UI_DEFAULTS) -> bytes:
    entries = json.dumps({key: json.dumps(value) for key, value in defaults.items()})
    return (
        "<script>(function(d){try{for(var k in d){if(localStorage.getItem(k)===null)"
        f"localStorage.setItem(k,d[k]);}}}}catch(e){{}}}})({entries});</script>"
    ).encode()


# The assistant's button: MLflow shows it whenever the page's host is a loopback address, and
# gpulab answers the assistant's API with 404 (see app.without_paths).
HIDE_ASSISTANT = b"<style>[data-assistant-ui]{display:none!important}</style>"


def with_defaults(page: bytes) -> bytes:
    """The UI's index.html with the defaults set before MLflow's own scripts run."""
    return page.replace(b"<head>", b"<head>" + defaults_script() + HIDE_ASSISTANT, 1)


def install(flask_app) -> None:
    """Give the page MLflow serves at its root (Flask endpoint "serve") the defaults."""

    @flask_app.after_request
    def ui_defaults(response):
        from flask import request

        if request.endpoint == "serve" and response.status_code == 200 and response.mimetype == "text/html":
            response.direct_passthrough = False
            response.set_data(with_defaults(response.get_data()))
        return response

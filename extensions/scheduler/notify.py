"""Notifications of run start, success and failure: webhooks (JSON POST) and e-mail (SMTP)."""

from __future__ import annotations

import json
import smtplib
import threading
from email.message import EmailMessage
from typing import TYPE_CHECKING

from . import webhooks
from .models import Schedule
from .schemas import RunOut

if TYPE_CHECKING:  # typed settings: pydantic only where settings are read
    from gpulab.hub_config.typed_settings import SchedulerNotifications


def payload(event: str, schedule: Schedule, run: RunOut) -> dict:
    return {"event": event, "schedule": {"id": schedule.id, "name": schedule.name, "owner": schedule.owner,
                                          "project": schedule.project},
            "run": json.loads(run.model_dump_json())}


class Notifier:
    """Sends in the background: a slow webhook never holds up the scheduler."""

    def __init__(self, settings: SchedulerNotifications, log):
        self.timeout = settings.webhook_timeout_seconds
        self.allowed = webhooks.allowed_networks(settings.webhook_allowed_networks)
        self.smtp = settings.smtp
        self.log = log

    def send(self, event: str, schedule: Schedule, run: RunOut) -> None:
        notify = schedule.notify or {}
        if event not in notify.get("on", []):
            return
        body = payload(event, schedule, run)
        for url in notify.get("webhooks", []):
            threading.Thread(target=self._post, args=(url, body), daemon=True).start()
        if notify.get("emails") and self.smtp.host:
            threading.Thread(target=self._mail, args=(notify["emails"], body), daemon=True).start()

    def _post(self, url: str, body: dict) -> None:
        try:
            # Checked again now: the name may resolve elsewhere than at creation, or the allowed list changed.
            status = webhooks.post(url, json.dumps(body).encode(), self.allowed, self.timeout)
            if status >= 300:
                self.log.warning("webhook for %s (%s) answered %s", body["schedule"]["name"], body["event"], status)
        except Exception as error:  # a broken or refused webhook is the owner's to fix; log and go on
            self.log.warning("webhook for %s (%s) failed: %s", body["schedule"]["name"], body["event"], error)

    def _mail(self, recipients: list[str], body: dict) -> None:
        run, schedule = body["run"], body["schedule"]
        message = EmailMessage()
        message["Subject"] = f"[gpulab] {schedule['name']}: run {run['status'].lower()}"
        message["From"] = self.smtp.sender
        message["To"] = ", ".join(recipients)
        lines = [f"Schedule: {schedule['name']} (owner {schedule['owner']})", f"Run: {run['id']}",
                 f"Status: {run['status']}", f"Message: {run['message'] or '-'}"]
        if run.get("error"):
            lines.append(f"Error: {run['error'].get('ename', '')} {run['error'].get('evalue', '')}")
        message.set_content("\n".join(lines))
        try:
            with smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=self.timeout) as smtp:
                if self.smtp.starttls:
                    smtp.starttls()
                if self.smtp.username:
                    smtp.login(self.smtp.username, self.smtp.password)
                smtp.send_message(message)
        except Exception as error:
            self.log.warning("e-mail for %s (%s) failed: %s", schedule["name"], body["event"], error)

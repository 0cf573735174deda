"""Alerts to a Slack-compatible webhook (`ALERT_WEBHOOK_URL`); without one they are logged.

The webhook URL carries its token in the path, so it is never logged: only its host is.
"""

import logging
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

import requests

logger = logging.getLogger("unde.alerts")
WEBHOOK_ENV = "ALERT_WEBHOOK_URL"


def send_alert(text: str, *, url: str | None = None, timeout_s: float = 10.0) -> bool:
    """Post `{"text": ...}` (Slack/Mattermost/Teams-compatible); True when delivered.

    Never raises: an alerting outage must not fail the run or the check that reports.
    """
    target = url if url is not None else os.environ.get(WEBHOOK_ENV, "").strip()
    if not target:
        logger.warning("alert (no %s set): %s", WEBHOOK_ENV, text)
        return False
    host = urlsplit(target).hostname or "?"
    try:
        response = requests.post(target, json={"text": text}, timeout=timeout_s)
    except requests.RequestException as exc:
        logger.error("alert webhook at %s unreachable (%s): %s", host, type(exc).__name__, text)
        return False
    if response.status_code >= 300:
        logger.error("alert webhook at %s answered %s: %s", host, response.status_code, text)
        return False
    return True


def failure_text(
    job_name: str, run_id: str, tags: Mapping[str, str], message: str | None
) -> str:
    brand = tags.get("dagster/partition", "-")
    role = tags.get("unde/role", "-")
    first_line = (message or "no failure message").strip().splitlines()[0][:300]
    return f":red_circle: UNDE run failed: job `{job_name}` brand `{brand}` role `{role}` " \
        f"run `{run_id}` — {first_line}"

"""Alerts: Slack-compatible JSON to a real local HTTP server; no webhook → a log line."""

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import dagster as dg
import pytest

from unde_dagster.alerts import failure_text, send_alert


class Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append({"path": self.path, "json": json.loads(body),
                              "type": self.headers["Content-Type"]})
        self.send_response(Hook.status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def hook() -> Iterator[str]:
    Hook.received, Hook.status = [], 200
    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/services/T000/B000/secret-token"
    server.shutdown()
    server.server_close()


def test_posts_slack_json_to_the_env_webhook(hook: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERT_WEBHOOK_URL", hook)
    assert send_alert("collages for zara are stuck")
    assert Hook.received == [{"path": "/services/T000/B000/secret-token",
                              "json": {"text": "collages for zara are stuck"},
                              "type": "application/json"}]


def test_rejected_or_unreachable_webhook_logs_without_the_secret(
    hook: str, caplog: pytest.LogCaptureFixture
) -> None:
    Hook.status = 500
    with caplog.at_level(logging.WARNING, logger="unde.alerts"):
        assert not send_alert("first", url=hook)
        assert not send_alert("second", url="http://127.0.0.1:9/hooks/another-secret")
    assert "answered 500" in caplog.text
    assert "unreachable" in caplog.text
    assert "secret" not in caplog.text


def test_without_a_webhook_the_alert_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("ALERT_WEBHOOK_URL", raising=False)
    with caplog.at_level(logging.WARNING, logger="unde.alerts"):
        assert not send_alert("nobody listens")
    assert "nobody listens" in caplog.text


def test_run_failure_sensor_posts_the_failed_run(
    hook: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERT_WEBHOOK_URL", hook)

    @dg.op
    def explode() -> None:
        raise RuntimeError("S3 endpoint refused the connection")

    @dg.job(tags={"dagster/partition": "zara", "unde/role": "collage"})
    def broken() -> None:
        explode()

    from unde_dagster.defs.alerts.sensors import run_failure_alert

    with dg.instance_for_test() as instance:
        result = broken.execute_in_process(instance=instance, raise_on_error=False)
        failure = result.get_run_failure_event()
        ctx = dg.build_run_status_sensor_context(
            sensor_name="run_failure_alert", dagster_instance=instance,
            dagster_run=result.dagster_run, dagster_event=failure,
        ).for_run_failure()
        run_failure_alert(ctx)
    [post] = Hook.received
    assert "job `broken` brand `zara` role `collage`" in post["json"]["text"]
    assert result.dagster_run.run_id in post["json"]["text"]
    run = result.dagster_run
    assert failure_text(run.job_name, run.run_id, run.tags, None).startswith(":red_circle:")

"""A small Docker Engine API stand-in (HTTP or mutual TLS) that records container calls.

Why: no Docker engine runs where tests run, yet the launcher must be exercised through
docker-py over the wire, including the TLS client-certificate check of a role host.
Implements only what docker-py needs to create/start/stop/inspect containers.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

API_VERSION = "1.45"
_CONTAINER = re.compile(r"^(?:/v[\d.]+)?/containers/(?P<id>[^/]+)/(?P<op>json|start|stop)$")


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


@dataclass
class FakeEngine:
    """One fake engine: its recorded calls and containers, served on 127.0.0.1."""

    name: str
    tls: tuple[str, str, str] | None = None  # (ca, server cert, server key): requires client cert
    calls: list[Call] = field(default_factory=list)
    containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"tcp://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeEngine:
        engine = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                engine._handle(self, "GET")

            def do_POST(self) -> None:
                engine._handle(self, "POST")

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.tls:
            ca, cert, key = self.tls
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            ctx.load_verify_locations(ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def ops(self, op: str) -> list[Call]:
        """Recorded calls of one kind: create, start, stop, inspect."""
        return [c for c in self.calls if _op_of(c) == op]

    def _handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        parsed = urlparse(req.path)
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        call = Call(method, parsed.path, parse_qs(parsed.query), body)
        self.calls.append(call)
        status, payload = self._respond(call)
        data = json.dumps(payload).encode() if payload is not None else b""
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)

    def _respond(self, call: Call) -> tuple[int, Any]:
        path = re.sub(r"^/v[\d.]+", "", call.path)
        if path in ("/version", "/_ping"):
            return 200, {"ApiVersion": API_VERSION, "Version": "fake", "Os": "linux"}
        if call.method == "POST" and path == "/containers/create":
            cid = uuid.uuid4().hex + uuid.uuid4().hex
            self.containers[cid] = {"Id": cid, "Config": call.body, "Status": "created"}
            return 201, {"Id": cid, "Warnings": []}
        match = _CONTAINER.match(path)
        if not match or match["id"] not in self.containers:
            return 404, {"message": f"No such container: {path}"}
        box = self.containers[match["id"]]
        if match["op"] == "start":
            box["Status"] = "running"
        elif match["op"] == "stop":
            box["Status"] = "exited"
        else:
            return 200, _inspect(box)
        return 204, None

    def set_status(self, container_id: str, status: str) -> None:
        self.containers[container_id]["Status"] = status


def _inspect(box: dict[str, Any]) -> dict[str, Any]:
    status = box["Status"]
    return {
        "Id": box["Id"],
        "Name": f"/{box['Id'][:12]}",
        "Config": box["Config"],
        "State": {"Status": status, "Running": status == "running", "ExitCode": 0},
    }


def _op_of(call: Call) -> str:
    path = re.sub(r"^/v[\d.]+", "", call.path)
    if path == "/containers/create":
        return "create"
    match = _CONTAINER.match(path)
    if not match:
        return "other"
    return "inspect" if match["op"] == "json" else match["op"]

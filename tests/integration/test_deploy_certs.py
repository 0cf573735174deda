"""deploy/tls/make-docker-certs.sh run for real, its output checked by the openssl CLI.

The CA may only sign (critical basicConstraints CA:TRUE and keyUsage keyCertSign/cRLSign)
and outlives its leaves; each server certificate verifies for `sslserver` with its host
name and IP, the client certificate for `sslclient`, neither for the other purpose; keys
are 0600 and the client's is owned by the daemon's uid when asked; a mutual-TLS handshake
like docker-py's succeeds; an old CA without keyUsage is refused.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import stat
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "tls" / "make-docker-certs.sh"
HOSTS = {"collage": "10.1.0.16", "scraper": "10.1.0.3", "local": "127.0.0.1"}
DAEMON_UID = 10001  # the images' `dagster` user
# As root the client key goes to the daemon's uid, as on the control plane; otherwise to the
# caller's own uid (the only owner a non-root chown may set), so ownership is still checked.
OWNER = DAEMON_UID if os.geteuid() == 0 else os.geteuid()


def make_certs(out: Path, *pairs: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), str(out), *pairs],
        env={**os.environ, **env}, capture_output=True, text=True, check=False,
    )


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)


def verify(ca: Path, cert: Path, *options: str) -> bool:
    done = openssl("verify", "-x509_strict", *options, "-CAfile", str(ca), str(cert))
    return done.returncode == 0 and done.stdout.strip().endswith(": OK")


def not_after(cert: Path) -> datetime:
    line = openssl("x509", "-in", str(cert), "-noout", "-enddate").stdout.strip()
    when = datetime.strptime(line.split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")
    return when.replace(tzinfo=UTC)


def extensions(cert: Path, names: str) -> str:
    return openssl("x509", "-in", str(cert), "-noout", "-ext", names).stdout


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl CLI is needed (and used by make-docker-certs.sh itself)")
    out = tmp_path_factory.mktemp("tls") / "certs"
    env = {"CLIENT_KEY_OWNER": str(OWNER)}
    done = make_certs(out, *(f"{n}={ip}" for n, ip in HOSTS.items()), **env)
    assert done.returncode == 0, done.stderr
    return out


def test_ca_signs_only_and_outlives_its_leaves(certs: Path) -> None:
    ca = certs / "ca.pem"
    ext = extensions(ca, "basicConstraints,keyUsage")
    assert "Basic Constraints: critical" in ext and "CA:TRUE" in ext, ext
    assert "Key Usage: critical" in ext, ext
    assert "Certificate Sign, CRL Sign" in ext and "Digital Signature" not in ext, ext
    leaves = [certs / n / "server-cert.pem" for n in HOSTS] + [certs / "client" / "cert.pem"]
    ca_end = not_after(ca)
    for leaf in leaves:
        assert (ca_end - not_after(leaf)).days > 5 * 365, f"{leaf} ends near the CA's end"
    assert (ca_end - datetime.now(UTC)).days > 9 * 365  # 10 years by default


@pytest.mark.parametrize("name", sorted(HOSTS))
def test_server_certificate_verifies_for_its_host_only_as_server(certs: Path, name: str) -> None:
    ca, cert = certs / "ca.pem", certs / name / "server-cert.pem"
    assert verify(ca, cert, "-purpose", "sslserver")
    assert verify(ca, cert, "-purpose", "sslserver", "-verify_ip", HOSTS[name])
    assert verify(ca, cert, "-purpose", "sslserver", "-verify_hostname", name)
    assert not verify(ca, cert, "-purpose", "sslserver", "-verify_ip", "10.9.9.9")
    assert not verify(ca, cert, "-purpose", "sslclient")
    ext = extensions(cert, "basicConstraints,extendedKeyUsage,subjectAltName")
    assert "CA:FALSE" in ext and f"DNS:{name}" in ext and f"IP Address:{HOSTS[name]}" in ext
    assert (certs / name / "ca.pem").read_bytes() == (certs / "ca.pem").read_bytes()


def test_client_certificate_verifies_only_as_client(certs: Path) -> None:
    ca, cert = certs / "ca.pem", certs / "client" / "cert.pem"
    assert verify(ca, cert, "-purpose", "sslclient")
    assert not verify(ca, cert, "-purpose", "sslserver")
    assert "TLS Web Client Authentication" in extensions(cert, "extendedKeyUsage")


def test_keys_are_private_and_the_client_key_is_the_daemons(certs: Path) -> None:
    keys = [certs / "ca-key.pem", certs / "client" / "key.pem"]
    keys += [certs / n / "server-key.pem" for n in HOSTS]
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    for cert in certs.rglob("*.pem"):
        if not cert.name.endswith("key.pem"):
            assert not stat.S_IMODE(cert.stat().st_mode) & 0o222 & ~0o200, cert
    client = certs / "client" / "key.pem"
    assert (client.stat().st_uid, client.stat().st_gid) == (OWNER, OWNER)
    assert (certs / "client").stat().st_uid == OWNER
    assert (certs / "collage" / "server-key.pem").stat().st_uid == os.geteuid()


def test_mutual_tls_handshake_like_docker_py(certs: Path) -> None:
    """dockerd's side (server cert, client certs required) and docker-py's (client cert,
    the UNDE CA only, host checked) complete a TLS handshake over loopback."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=certs / "ca.pem")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_cert_chain(certs / "local" / "server-cert.pem",
                               certs / "local" / "server-key.pem")
    client_ctx = ssl.create_default_context(cafile=certs / "ca.pem")
    client_ctx.load_cert_chain(certs / "client" / "cert.pem", certs / "client" / "key.pem")
    seen: dict[str, object] = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                seen["client"] = tls.getpeercert()
                tls.sendall(b"ok")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.recv(2) == b"ok"
        thread.join(10)
    subject = dict(item[0] for item in seen["client"]["subject"])  # type: ignore[index]
    assert subject["commonName"] == "dagster-control-plane"


def test_rerun_keeps_the_ca_and_adds_a_host(certs: Path, tmp_path: Path) -> None:
    out = tmp_path / "certs"
    shutil.copytree(certs, out)
    before = (out / "ca.pem").read_bytes()
    env = {"CLIENT_KEY_OWNER": str(OWNER)}
    done = make_certs(out, "ximilar-sync=10.1.0.11", **env)
    assert done.returncode == 0, done.stderr
    assert (out / "ca.pem").read_bytes() == before
    assert verify(out / "ca.pem", out / "ximilar-sync" / "server-cert.pem", "-purpose", "sslserver")
    assert verify(out / "ca.pem", out / "collage" / "server-cert.pem", "-purpose", "sslserver")


def test_an_old_ca_without_key_usage_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    out.mkdir()
    made = openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                   "-nodes", "-keyout", str(out / "ca-key.pem"), "-out", str(out / "ca.pem"),
                   "-subj", "/CN=old", "-days", "825", "-addext", "basicConstraints=CA:TRUE")
    assert made.returncode == 0, made.stderr
    done = make_certs(out, "collage=10.1.0.16")
    assert done.returncode != 0 and "keyUsage" in done.stderr
    assert not (out / "collage").exists()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["collage"], {}, "not NAME=IP"),
        (["Collage_1=10.1.0.16"], {}, "not a host name"),
        (["collage=10.1.0"], {}, "not an IPv4 address"),
        (["collage=10.1.0.16"], {"CERT_DAYS": "4000"}, "must exceed"),
        (["collage=10.1.0.16"], {"CLIENT_KEY_OWNER": "dagster"}, "UID or UID:GID"),
    ],
)
def test_bad_arguments_stop_before_anything_is_written(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    done = make_certs(tmp_path / "certs", *args, **env)
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert not (tmp_path / "certs").exists()

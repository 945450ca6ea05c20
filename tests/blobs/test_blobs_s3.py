"""S3 specifics, against moto's real HTTP server: multipart, buckets, a server that is down."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from madbwpu_r.blobs import (
    BlobConfigError,
    BlobExists,
    BlobStoreError,
    BlobUnavailable,
    DigestMismatch,
    open_blobs,
)
from madbwpu_r.blobs.s3 import S3BlobStore
from tests.blobs.blob_writer import start_writer
from tests.blobs.conftest import S3Server, free_port
from tests.blobs.test_blobs_conformance import MiB, Trickle, pattern


@pytest.fixture
def s3(s3_server: S3Server, aws_env: Callable[[str], None]) -> S3Server:
    aws_env(s3_server.url)
    return s3_server


def raw_client(server: S3Server) -> Any:
    return boto3.client("s3", endpoint_url=server.url, region_name="us-east-1")


def bucket_name() -> str:
    return f"t{uuid.uuid4().hex[:16]}"


def test_large_put_is_multipart_under_the_prefix(s3: S3Server) -> None:
    bucket = bucket_name()
    store = open_blobs(f"s3://{bucket}/staging/blobs?create=1&part_size=5")
    store.ping()
    data = pattern(12 * MiB)
    store.put("versions/v1", Trickle(data))
    head = raw_client(s3).head_object(Bucket=bucket, Key="staging/blobs/versions/v1")
    assert head["ETag"].strip('"').endswith("-3")  # three 5 MiB parts: a multipart upload
    assert [i.key for i in store.list()] == ["versions/v1"]


def test_refused_multipart_put_leaves_no_upload_behind(s3: S3Server) -> None:
    bucket = bucket_name()
    store = open_blobs(f"s3://{bucket}?create=1&part_size=5")
    store.ping()
    with pytest.raises(DigestMismatch):
        store.put("k", Trickle(pattern(11 * MiB)), sha256=hashlib.sha256(b"x").hexdigest())
    client = raw_client(s3)
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_create_only_is_the_servers_condition_and_leaves_no_upload_behind(s3: S3Server) -> None:
    bucket = bucket_name()
    store = open_blobs(f"s3://{bucket}/p?create=1&part_size=5")
    store.ping()
    client = raw_client(s3)
    client.put_object(Bucket=bucket, Key="p/k", Body=b"theirs")  # another writer, not this port
    for data in (b"mine", pattern(11 * MiB)):  # one PUT, then a multipart upload
        with pytest.raises(BlobExists, match="'k' exists"):
            store.put("k", Trickle(data), create_only=True)
    with pytest.raises(DigestMismatch):
        store.put("new", Trickle(pattern(11 * MiB)), sha256=hashlib.sha256(b"x").hexdigest(),
                  create_only=True)  # fmt: skip
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert client.get_object(Bucket=bucket, Key="p/k")["Body"].read() == b"theirs"
    assert [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]] == ["p/k"]
    store.put("big", Trickle(pattern(11 * MiB)), create_only=True)
    head = client.head_object(Bucket=bucket, Key="p/big")
    assert head["ETag"].strip('"').endswith("-3")  # a multipart upload, completed on condition


def test_sigkilled_writer_leaves_no_partial_object(s3: S3Server) -> None:
    bucket = bucket_name()
    url = f"s3://{bucket}/p?create=1&part_size=5"
    store = open_blobs(url)
    store.ping()
    client = raw_client(s3)
    with start_writer(url, "uploads/u1") as writer:
        assert writer.stdin is not None
        writer.stdin.write(os.urandom(12 * MiB))  # two parts sent, the third waits for more
        writer.stdin.flush()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            if uploads and client.list_parts(
                Bucket=bucket, Key=uploads[0]["Key"], UploadId=uploads[0]["UploadId"]
            ).get("Parts"):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the writer never uploaded a part")
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        with contextlib.suppress(BrokenPipeError):
            writer.stdin.close()
    assert not store.exists("uploads/u1")
    assert list(store.list()) == []
    # (moto reports a fixed 2010 `Initiated` date, so the default age cut cannot be shown here)
    assert store.sweep(older_than=0) == 1
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_missing_bucket_is_a_clear_error(s3: S3Server) -> None:
    store = open_blobs(f"s3://{bucket_name()}/p")
    for call in (
        store.ping,
        lambda: store.put("k", b"x"),
        lambda: store.stat("k"),
        lambda: store.open("k"),
        lambda: store.exists("k"),
        lambda: list(store.list()),
        lambda: store.delete("k"),
    ):
        with pytest.raises(BlobConfigError, match="does not exist.*create=1"):
            call()


def test_create_makes_the_bucket_once(s3: S3Server) -> None:
    bucket = bucket_name()
    open_blobs(f"s3://{bucket}?create=1").ping()
    open_blobs(f"s3://{bucket}?create=true").ping()  # already there: fine
    assert bucket in [b["Name"] for b in raw_client(s3).list_buckets()["Buckets"]]


def test_endpoint_comes_from_the_standard_setting(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_blobs(f"s3://{bucket_name()}?create=1")
    assert isinstance(store, S3BlobStore) and store.endpoint == s3.url
    store.ping()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    override = open_blobs(f"s3://{bucket_name()}?create=1&endpoint={s3.url}")
    override.ping()  # the URL's endpoint option wins over the environment


def test_server_down_is_blob_unavailable(aws_env: Callable[[str], None]) -> None:
    aws_env(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    store = open_blobs(f"s3://{bucket_name()}?retries=1&connect_timeout=1")
    for call in (
        store.ping,
        lambda: store.put("k", b"x"),
        lambda: store.put("k", Trickle(pattern(6 * MiB))),
        lambda: store.open("k"),
        lambda: store.stat("k"),
        lambda: list(store.list()),
        lambda: store.delete("k"),
    ):
        with pytest.raises(BlobUnavailable, match="unreachable"):
            call()


def test_server_dying_while_in_use(aws_env: Callable[[str], None]) -> None:
    server = S3Server().start()
    try:
        aws_env(server.url)
        store = open_blobs(f"s3://{bucket_name()}?create=1&retries=1&connect_timeout=1")
        store.ping()
        store.put("k", b"before")
    finally:
        server.stop()
    with pytest.raises(BlobUnavailable):
        store.read_bytes("k")
    with pytest.raises(BlobUnavailable):
        store.put("k", b"after")


def test_missing_credentials_are_a_config_error(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = open_blobs(f"s3://{bucket_name()}")
    with pytest.raises(BlobConfigError, match="AWS_ACCESS_KEY_ID"):
        store.ping()


@pytest.mark.parametrize(
    "url",
    [
        "s3://key:secret@bucket/p",
        "s3:///no-bucket",
        "s3://b?part_size=1",
        "s3://b?concurrency=0",
        "s3://b?retries=many",
        "s3://b?addressing=sideways",
        "s3://b?colour=blue",
    ],
)
def test_bad_s3_urls(url: str) -> None:
    with pytest.raises(BlobConfigError) as caught:
        open_blobs(url)
    assert "secret" not in str(caught.value)
    assert isinstance(caught.value, BlobStoreError)

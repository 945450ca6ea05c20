"""S3 specifics, against moto's real HTTP server: multipart, buckets, a server that is down."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from madbwpu_r.blobs import (
    BlobConfigError,
    BlobStoreError,
    BlobUnavailable,
    DigestMismatch,
    open_blobs,
)
from madbwpu_r.blobs.s3 import S3BlobStore
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

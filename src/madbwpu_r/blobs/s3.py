"""S3 backend: `s3://BUCKET/PREFIX`, any S3-compatible store (S3, MinIO, Ceph, R2) through boto3.

The endpoint, credentials and region come from the standard AWS settings boto3 reads
(`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`, or
the AWS config files), never from the URL. Puts go through boto3's managed transfer: one PUT
below `part_size`, a multipart upload above it (parts buffered in memory: a streamed put
holds about `concurrency` + 3 of them at its peak, whatever the blob's size). S3 makes an object visible only when its PUT or its multipart
upload completes, so a reader never sees a partial blob; a put refused at EOF (digest
mismatch) aborts the multipart upload. A create-only put is a conditional write
(`If-None-Match: *`, on the PUT or on the multipart completion): the store refuses it when the
key exists, so of racing writers exactly one creates the object.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import boto3  # type: ignore[import-untyped]  # boto3/botocore ship no type hints
import botocore.exceptions as bex  # type: ignore[import-untyped]  # (same)
from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]  # (same)
from botocore.config import Config  # type: ignore[import-untyped]  # (same)

from madbwpu_r.blobs.errors import (
    BlobConfigError,
    BlobExists,
    BlobNotFound,
    BlobStoreError,
    BlobUnavailable,
)
from madbwpu_r.blobs.port import BlobInfo, BlobStore, Readable

__all__ = ["S3BlobStore"]

_MiB = 1 << 20
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_NO_BUCKET = {"NoSuchBucket"}
_DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "403",
    "Forbidden",
    "ExpiredToken",
    "InvalidToken",
}
_UNAVAILABLE = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "503", "500"}
_KEY_TAKEN = {"PreconditionFailed", "412"}  # a conditional write (If-None-Match: *) lost
_WRITE_CONFLICT = {"ConditionalRequestConflict"}  # another conditional write is in flight
_BUCKET_TAKEN = {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}


class S3BlobStore(BlobStore):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        create: bool = False,
        endpoint: str | None = None,
        part_size: int = 8 * _MiB,
        concurrency: int = 2,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        retries: int = 3,
        addressing: str | None = None,
    ):
        self.bucket = bucket
        self.part_size = part_size
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.create = create
        session = boto3.session.Session()
        endpoint = (
            endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        )
        self.endpoint = endpoint
        self.region = session.region_name or "us-east-1"
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": retries, "mode": "standard"},
            # Path-style works on every S3-compatible store; virtual hosts need wildcard DNS.
            s3={"addressing_style": addressing or ("path" if endpoint else "auto")},
            # Third-party stores (older MinIO, Ceph, R2) reject the newer default checksums.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=max(10, concurrency + 2),
        )
        try:
            self._client: Any = session.client(
                "s3", endpoint_url=endpoint, region_name=self.region, config=config
            )
        except (bex.BotoCoreError, ValueError) as exc:
            raise BlobConfigError(f"cannot configure the S3 client: {exc}") from None
        self._transfer = TransferConfig(
            multipart_threshold=part_size,
            multipart_chunksize=part_size,
            max_concurrency=concurrency,
        )
        # Bounds the parts a non-seekable upload holds in memory (s3transfer's default is 10).
        self._transfer.max_in_memory_upload_chunks = concurrency + 1
        self._bucket_seen = False
        where = f" at {endpoint}" if endpoint else ""
        self.url = f"s3://{bucket}/{self.prefix}{where}"

    @classmethod
    def from_url(cls, url: str, options: dict[str, str]) -> S3BlobStore:
        parts = urlsplit(url)
        if "@" in parts.netloc:
            raise BlobConfigError(
                "S3 credentials do not belong in the blob URL: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY"
            )
        if not parts.netloc:
            raise BlobConfigError(f"an S3 blob URL is s3://BUCKET/PREFIX, not {url!r}")
        kwargs: dict[str, Any] = {}
        try:
            if "create" in options:
                kwargs["create"] = options.pop("create").lower() in ("1", "true", "yes")
            if "endpoint" in options:
                kwargs["endpoint"] = options.pop("endpoint")
            if "addressing" in options:
                kwargs["addressing"] = options.pop("addressing")
                if kwargs["addressing"] not in ("path", "virtual", "auto"):
                    raise ValueError("addressing must be path, virtual or auto")
            if "part_size" in options:
                kwargs["part_size"] = int(float(options.pop("part_size")) * _MiB)
                if kwargs["part_size"] < 5 * _MiB:
                    raise ValueError("part_size must be at least 5 (MiB), S3's smallest part")
            for name, kind in (
                ("concurrency", int),
                ("retries", int),
                ("connect_timeout", float),
                ("read_timeout", float),
            ):
                if name in options:
                    kwargs[name] = kind(options.pop(name))
                    if kwargs[name] <= 0:
                        raise ValueError(f"{name} must be > 0")
        except ValueError as exc:
            raise BlobConfigError(f"bad S3 blob option in {url!r}: {exc}") from None
        if options:
            raise BlobConfigError(f"unknown S3 blob option(s): {', '.join(sorted(options))}")
        return cls(parts.netloc, unquote(parts.path), **kwargs)

    def _name(self, key: str) -> str:
        return self.prefix + key

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except bex.ClientError as exc:
            raise self._translate(exc) from None
        except (bex.NoCredentialsError, bex.PartialCredentialsError) as exc:
            raise BlobConfigError(
                f"no usable S3 credentials ({exc}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ) from None
        except (bex.EndpointConnectionError, bex.ConnectionError, bex.HTTPClientError) as exc:
            raise BlobUnavailable(f"S3 store {self.url} is unreachable: {exc}") from None
        except (bex.ResponseStreamingError, bex.IncompleteReadError) as exc:
            raise BlobUnavailable(f"S3 store {self.url}: transfer broken: {exc}") from None
        except bex.BotoCoreError as exc:
            raise BlobStoreError(f"S3 store {self.url}: {exc}") from None

    def _translate(self, exc: bex.ClientError) -> BlobStoreError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = error.get("Message") or code
        if code in _NO_BUCKET:
            return self._no_bucket()
        if code in _NOT_FOUND:
            return BlobNotFound(f"no blob at s3://{self.bucket}/{error.get('Key', '')}".rstrip("/"))
        if code in _WRITE_CONFLICT:
            return BlobUnavailable(
                f"S3 store {self.url}: a concurrent create of the same key is in flight; retry"
            )
        if code in _DENIED:
            return BlobConfigError(
                f"S3 store {self.url} refused the credentials ({code}): check "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket's policy"
            )
        if code in _UNAVAILABLE or status >= 500:
            return BlobUnavailable(f"S3 store {self.url} is unavailable: {code}: {message}")
        return BlobStoreError(f"S3 store {self.url}: {code}: {message}")

    def _no_bucket(self) -> BlobConfigError:
        return BlobConfigError(
            f"S3 bucket {self.bucket!r} does not exist: create it, or add ?create=1 to the URL"
        )

    def _check_bucket(self) -> None:
        """A HEAD 404 cannot say whether the key or the bucket is missing: ask once."""
        if self._bucket_seen:
            return
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except bex.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND | _NO_BUCKET:
                raise self._no_bucket() from None
            raise
        self._bucket_seen = True

    # ---- primitives ---------------------------------------------------------------------------

    def _put(self, key: str, reader: Readable) -> None:
        self._client.upload_fileobj(reader, self.bucket, self._name(key), Config=self._transfer)
        self._bucket_seen = True

    def _create(self, key: str, reader: Readable) -> None:
        """A conditional write (`If-None-Match: *`): S3 itself refuses it when the key exists.

        s3transfer cannot send the condition, so this path does its own upload: one PUT when
        the blob fits in a part, else a multipart upload (two parts in memory at most) whose completion
        carries the condition; a failed or refused upload is aborted, so nothing is left.
        """
        try:
            self._create_upload(self._name(key), reader)
        except bex.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _KEY_TAKEN:
                raise BlobExists(f"blob {key!r} exists in {self.url}: it is written once") from None
            raise
        self._bucket_seen = True

    def _create_upload(self, name: str, reader: Readable) -> None:
        first = reader.read(self.part_size)
        second = reader.read(self.part_size) if len(first) == self.part_size else b""
        if not second:
            self._client.put_object(Bucket=self.bucket, Key=name, Body=first, IfNoneMatch="*")
            return
        upload = self._client.create_multipart_upload(Bucket=self.bucket, Key=name)["UploadId"]
        try:
            parts: list[dict[str, Any]] = []
            part, following = first, second
            while part:
                number = len(parts) + 1
                sent = self._client.upload_part(
                    Bucket=self.bucket, Key=name, UploadId=upload, PartNumber=number, Body=part
                )
                parts.append({"PartNumber": number, "ETag": sent["ETag"]})
                part = following
                following = reader.read(self.part_size) if following else b""
            self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=name,
                UploadId=upload,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
        except BaseException:
            with contextlib.suppress(Exception):
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload)
            raise

    def _open(self, key: str) -> IO[bytes]:
        try:
            reply = self._client.get_object(Bucket=self.bucket, Key=self._name(key))
        except bex.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND:
                raise BlobNotFound(f"no blob {key!r} in {self.url}") from None
            raise
        body: IO[bytes] = reply["Body"]  # botocore's StreamingBody
        return body

    def _stat(self, key: str) -> BlobInfo:
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=self._name(key))
        except bex.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND:
                self._check_bucket()
                raise BlobNotFound(f"no blob {key!r} in {self.url}") from None
            raise
        self._bucket_seen = True
        return BlobInfo(key, int(head["ContentLength"]), None, head["LastModified"].timestamp())

    def _delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def _list(self, prefix: str) -> Iterator[BlobInfo]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._name(prefix)
        )
        cut = len(self.prefix)
        for page in pages:
            for item in page.get("Contents", []):
                yield BlobInfo(
                    item["Key"][cut:], int(item["Size"]), None, item["LastModified"].timestamp()
                )

    def _ping(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except bex.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) not in _NOT_FOUND | _NO_BUCKET:
                raise
            if not self.create:
                raise self._no_bucket() from None
            self._create_bucket()
        self._bucket_seen = True

    def _create_bucket(self) -> None:
        args: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self._client.create_bucket(**args)
        except bex.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) not in _BUCKET_TAKEN:
                raise

    def _sweep(self, before: float) -> int:
        """Abort multipart uploads that writers started and never completed (or were killed)."""
        pages = self._client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        aborted = 0
        for page in pages:
            for upload in page.get("Uploads", []):
                if upload["Initiated"].timestamp() < before:
                    with contextlib.suppress(bex.ClientError):  # finished or aborted meanwhile
                        self._client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        aborted += 1
        return aborted

    def close(self) -> None:
        self._client.close()

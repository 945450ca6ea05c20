"""The blob store's own exceptions: code above the backends never catches a driver's exception."""

from __future__ import annotations

__all__ = [
    "BlobConfigError",
    "BlobExists",
    "BlobNotFound",
    "BlobStoreError",
    "BlobUnavailable",
    "DigestMismatch",
    "InvalidKey",
]


class BlobStoreError(Exception):
    """Base of every error raised by madbwpu_r.blobs."""


class BlobConfigError(BlobStoreError):
    """Bad blob URL, unknown scheme, missing driver or bucket, refused credentials."""


class BlobUnavailable(BlobStoreError):
    """The store cannot be reached (server down, timeout, disk error); retrying may help."""


class BlobNotFound(BlobStoreError, LookupError):
    """No blob under that key."""


class BlobExists(BlobStoreError):
    """A create-only put found the key taken (by an earlier or a concurrent writer): refused."""


class InvalidKey(BlobStoreError, ValueError):
    """A key (or prefix) the store refuses: empty, too long, `..`, odd characters."""


class DigestMismatch(BlobStoreError, ValueError):
    """The bytes do not have the SHA-256 they were promised: refused on put, corrupt on get."""

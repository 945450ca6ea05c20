"""Signed acts over HTTP: an Ed25519 signature over the canonical request, never replayable.

The client signs `canonical_json({"identity", "method", "path", "body", "time", "nonce"})`
(purpose `http-request`), where `path` is the raw path with its query string and `body` the
hex SHA-256 of the body, and sends four headers:

    X-Madbwpu-Identity: NAME
    X-Madbwpu-Time: UNIX SECONDS
    X-Madbwpu-Nonce: 32 hex digits
    X-Madbwpu-Signature: base64 Ed25519 signature

The server accepts it when NAME is registered and unrevoked, the time is within the window
(default 300 s either way), the signature verifies and the nonce was never seen from NAME within
the window (nonces are kept in the project database, so every API process shares them).
The body is read before anything is checked (its digest is signed) but only up to `max_body`
(default `MAX_SIGNED_BODY`, 1 MiB): past it the answer is `413`, so a client that is not yet
authenticated cannot make the API buffer what it sends.
`SignedRequestAuth` is the client side for httpx; `RequestVerifier` the Starlette side.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Generator

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from madbwpu_r.audit.db import AuditDB, AuditStoreError
from madbwpu_r.bodies import read_limited
from madbwpu_r.identity.directory import IdentityDirectory
from madbwpu_r.problems import ProblemError
from madbwpu_r.signing import SignatureError, SigningKey, canonical_json, digest, sign, verify

__all__ = [
    "HEADERS",
    "MAX_SIGNED_BODY",
    "REQUEST_PURPOSE",
    "NonceStore",
    "RequestVerifier",
    "SignedRequestAuth",
    "canonical_request",
]

REQUEST_PURPOSE = "http-request"
HEADERS = ("X-Madbwpu-Identity", "X-Madbwpu-Time", "X-Madbwpu-Nonce", "X-Madbwpu-Signature")
WINDOW = 300.0
MAX_SIGNED_BODY = 1 << 20  # a signed act's body is a small document, never an upload


def canonical_request(
    identity: str, method: str, path: str, body: bytes, stamp: str, nonce: str
) -> bytes:
    return canonical_json(
        {
            "identity": identity,
            "method": method.upper(),
            "path": path,
            "body": digest(body),
            "time": stamp,
            "nonce": nonce,
        }
    )


class SignedRequestAuth(httpx.Auth):
    """`httpx.Client(auth=SignedRequestAuth(key))`: every request is a signed act of `key`."""

    requires_request_body = True

    def __init__(self, key: SigningKey):
        self.key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        stamp, nonce = str(int(time.time())), secrets.token_hex(16)
        path = request.url.raw_path.decode("ascii")
        payload = canonical_request(
            self.key.name, request.method, path, request.content, stamp, nonce
        )
        request.headers.update(
            {
                "X-Madbwpu-Identity": self.key.name,
                "X-Madbwpu-Time": stamp,
                "X-Madbwpu-Nonce": nonce,
                "X-Madbwpu-Signature": sign(self.key, REQUEST_PURPOSE, payload),
            }
        )
        yield request


class NonceStore:
    """Nonces seen within the window, in the database every API process of a project shares."""

    def __init__(self, db: AuditDB):
        self.db = db
        d = db.dialect
        with db.ddl() as tx:
            tx.execute(
                d.sql(
                    f"CREATE TABLE IF NOT EXISTS {{p}}request_nonces (identity TEXT NOT NULL,"
                    f" nonce TEXT NOT NULL, expires {d.real} NOT NULL, PRIMARY KEY (identity, nonce))"
                )
            )

    def use(self, identity: str, nonce: str, expires: float) -> bool:
        """True the first time (identity, nonce) is seen; False for a replay."""
        d = self.db.dialect
        with self.db.transaction() as tx:
            tx.execute(d.sql("DELETE FROM {p}request_nonces WHERE expires < ?"), (time.time(),))
            cur = tx.execute(
                d.sql(
                    "INSERT INTO {p}request_nonces (identity, nonce, expires) VALUES (?, ?, ?)"
                    " ON CONFLICT DO NOTHING"
                ),
                (identity, nonce, expires),
            )
            return cur.rowcount == 1


def _path(request: Request) -> str:
    raw = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    return (raw + (b"?" + query if query else b"")).decode("latin-1")


class RequestVerifier:
    """Checks a signed act; `await verifier.identity(request, roles)` returns who signed it."""

    def __init__(
        self,
        directory: IdentityDirectory,
        nonces: NonceStore,
        window: float = WINDOW,
        max_body: int = MAX_SIGNED_BODY,
    ):
        self.directory = directory
        self.nonces = nonces
        self.window = window
        self.max_body = max_body

    async def identity(self, request: Request, roles: set[str]) -> str:
        """The signer, who holds one of `roles`; 401 for a bad act, 403 for a missing role,
        413 for a body over `max_body` (refused before it is read when Content-Length says so).
        """
        values = [request.headers.get(h) or "" for h in HEADERS]
        if not all(values):
            raise ProblemError(
                401,
                detail=f"a signed act is required: headers {', '.join(HEADERS)}",
                headers={"WWW-Authenticate": "Madbwpu-Signature"},
            )
        name, stamp, nonce, signature = values
        body = await read_limited(request, self.max_body, "the body of a signed request")
        return await run_in_threadpool(self._check, request.method, _path(request), body,
                                       name, stamp, nonce, signature, roles)  # fmt: skip

    def _refuse(self, status: int, name: str, target: str, why: str) -> ProblemError:
        try:
            self.directory.refused(name, target, why)
        except AuditStoreError:
            pass  # the refusal stands even if it cannot be recorded right now
        return ProblemError(status, detail=why)

    def _check(self, method: str, path: str, body: bytes, name: str, stamp: str, nonce: str,
               signature: str, roles: set[str]) -> str:  # fmt: skip
        target = f"http:{method} {path}"[:512]
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > self.window:
            raise self._refuse(
                401, name, target, f"the request time is not within {self.window:.0f} s of now"
            )
        public = self.directory.public_key(name)
        if public is None:
            raise self._refuse(401, name, target, f"{name!r} is not a registered identity")
        try:
            verify(
                public,
                REQUEST_PURPOSE,
                canonical_request(name, method, path, body, stamp, nonce),
                signature,
            )
        except SignatureError:
            raise self._refuse(401, name, target, "the request signature does not verify") from None
        if len(nonce) > 64 or not self.nonces.use(name, nonce, int(stamp) + self.window):
            raise self._refuse(401, name, target, "this request was seen before (replay)")
        if not self.directory.roles(name) & roles:
            raise self._refuse(
                403, name, target, f"{name} holds none of the roles {', '.join(sorted(roles))}"
            )
        return name

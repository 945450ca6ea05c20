"""`GET /v1/audit`: the audit log for compliance and admin identities, by signed act only.

The project's identities and the logs are opened on first use, so an API whose data directory
was never initialised still serves everything else (and answers 503 here).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from madbwpu_r.audit.checkpointer import Checkpointer
from madbwpu_r.audit.db import open_db
from madbwpu_r.audit.layout import AUDIT_KEY, LOGS, open_log, project_missing, project_url
from madbwpu_r.audit.log import AuditLog, origin_for
from madbwpu_r.audit.records import AuditRecord
from madbwpu_r.identity.directory import IdentityDirectory
from madbwpu_r.identity.http import NonceStore, RequestVerifier
from madbwpu_r.identity.keyring import Keyring, KeyringError
from madbwpu_r.identity.setup import missing_audit_key
from madbwpu_r.problems import ProblemError

__all__ = ["AuditApi", "routes"]

log = logging.getLogger(__name__)

READERS = {"compliance", "admin"}
MAX_LIMIT = 1000


@dataclass
class _Opened:
    directory: IdentityDirectory
    verifier: RequestVerifier
    logs: dict[str, AuditLog]


class AuditApi:
    """The audit side of one API process: identities, nonces, logs and the checkpointer."""

    def __init__(self, data_dir: Path, env: str, store_url: str | None, interval: float = 60.0):
        self.data_dir, self.env, self.store_url, self.interval = data_dir, env, store_url, interval
        self._lock = threading.Lock()
        self._opened: _Opened | None = None
        self.checkpointer: Checkpointer | None = None

    def opened(self) -> _Opened:
        with self._lock:
            if self._opened is None:
                if project_missing(self.data_dir):
                    raise ProblemError(503, detail="no identities yet: run `madbwpu-r init`")
                db = open_db(project_url(self.data_dir))
                directory = IdentityDirectory(db)
                logs = {"project": AuditLog(db, origin_for("project"))}
                for name in LOGS[1:]:
                    if name == self.env and self.store_url:
                        logs[name] = AuditLog.open(self.store_url, origin_for(name))
                    elif name == self.env:
                        logs[name] = open_log(self.data_dir, name)
                self._opened = _Opened(directory, RequestVerifier(directory, NonceStore(db)), logs)
            return self._opened

    def start(self) -> None:
        """Checkpoint periodically, when this data dir has an audit key to do it with."""
        try:
            opened = self.opened()
        except ProblemError:
            log.warning(
                "audit checkpoints are off: %s has no identities; run `madbwpu-r init`",
                self.data_dir,
            )
            return
        try:
            key = Keyring(self.data_dir).load(AUDIT_KEY)
        except KeyringError:
            log.warning("audit checkpoints are off: %s", missing_audit_key(self.data_dir))
            return
        self.checkpointer = Checkpointer(
            list(opened.logs.items()), key, self.data_dir, self.interval
        )
        self.checkpointer.start()

    def close(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
        if self._opened is not None:
            for log in self._opened.logs.values():
                log.close()


def _audit(request: Request) -> AuditApi:
    return request.app.state.audit


def _number(request: Request, name: str, default: int | None = None) -> int | None:
    value = request.query_params.get(name)
    if value is None:
        return default
    if not value.isdigit():
        raise ProblemError(400, detail=f"{name} must be a non-negative integer")
    return int(value)


def _time(request: Request, name: str) -> float | None:
    from datetime import UTC, datetime

    value = request.query_params.get(name)
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ProblemError(400, detail=f"{name} must be an ISO 8601 time") from None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


async def list_entries(request: Request) -> Response:
    audit = _audit(request)
    opened = await run_in_threadpool(audit.opened)
    who = await opened.verifier.identity(request, READERS)
    name = request.query_params.get("log", audit.env)
    log = opened.logs.get(name)
    if log is None:
        raise ProblemError(
            404, detail=f"this API serves the logs {', '.join(opened.logs)}, not {name!r}"
        )
    limit = min(_number(request, "limit", 100) or 1, MAX_LIMIT)
    filters = {
        "since": _time(request, "since"),
        "until": _time(request, "until"),
        "actor": request.query_params.get("actor"),
        "action": request.query_params.get("action"),
        "target": request.query_params.get("target"),
        "after": _number(request, "after"),
        "limit": limit,
    }
    entries = await run_in_threadpool(log.query, **filters)
    await run_in_threadpool(
        log.append,
        AuditRecord(who, "audit.read", f"log:{name}", detail=str(request.url.query)[:1024]),
    )
    next_after = entries[-1].seq if len(entries) == limit else None
    return JSONResponse(
        {"log": name, "entries": [e.to_json() for e in entries], "next_after": next_after}
    )


async def latest_checkpoint(request: Request) -> Response:
    audit = _audit(request)
    opened = await run_in_threadpool(audit.opened)
    await opened.verifier.identity(request, READERS)
    name = request.query_params.get("log", audit.env)
    log = opened.logs.get(name)
    if log is None:
        raise ProblemError(
            404, detail=f"this API serves the logs {', '.join(opened.logs)}, not {name!r}"
        )
    cp = await run_in_threadpool(log.latest_checkpoint)
    if cp is None:
        raise ProblemError(404, detail=f"the {name} log has no checkpoint yet")
    return Response(cp.text(), media_type="text/plain; charset=utf-8")


routes = [
    Route("/v1/audit", list_entries, methods=["GET"]),
    Route("/v1/audit/checkpoint", latest_checkpoint, methods=["GET"]),
]

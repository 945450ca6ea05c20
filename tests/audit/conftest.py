"""One audit-log suite on every engine: SQLite here, PostgreSQL when running (required in CI)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from madbwpu_r.audit.db import open_db
from madbwpu_r.audit.log import AuditLog
from madbwpu_r.identity.acts import make_act
from madbwpu_r.identity.directory import IdentityDirectory
from madbwpu_r.signing import SigningKey, public_key_to_b64
from tests.queue.queue_backends import base_url


@pytest.fixture(params=["sqlite", "postgres"])
def audit_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from base_url(request.param, tmp_path)


@pytest.fixture
def make_log(audit_url: str) -> Iterator[Callable[[], AuditLog]]:
    """Factory: every call opens another handle on the same log (as another process would)."""
    opened: list[AuditLog] = []

    def make() -> AuditLog:
        log = AuditLog.open(audit_url, "madbwpu-r/test")
        opened.append(log)
        return log

    yield make
    for log in opened:
        log.close()


@pytest.fixture
def log(make_log: Callable[[], AuditLog]) -> AuditLog:
    return make_log()


@pytest.fixture
def service_key() -> SigningKey:
    return SigningKey.generate("audit-service")


@pytest.fixture
def directory(tmp_path: Path, service_key: SigningKey) -> Iterator[IdentityDirectory]:
    """A project directory: admin (self-registered), the audit service, compliance carol."""
    d = IdentityDirectory(open_db(f"sqlite:///{tmp_path}/project.sqlite"))
    admin = SigningKey.generate("admin")
    d.apply(make_act(admin, "identity.init", "admin", ["admin"]))
    d.apply(make_act(admin, "identity.add", "audit-service", ["service-audit"],
                     public_key_to_b64(service_key.public)))  # fmt: skip
    d.admin_key = admin  # type: ignore[attr-defined]
    yield d
    d.db.close()

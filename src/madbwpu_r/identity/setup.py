"""`madbwpu-r init`: the project's admin identity and the audit service's key, made once.

It writes the keys under DIR and the identities and the project log's first checkpoint into the
project's store (`DIR/project.sqlite`, or `$MADBWPU_R_PROJECT_STORE_URL`), never into an
environment's store.

Safe to run again (and after a crash half-way): each step is skipped when already done.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from madbwpu_r.audit.db import database_exists, open_db
from madbwpu_r.audit.layout import AUDIT_KEY, open_log, project_url, write_witness
from madbwpu_r.identity.acts import make_act
from madbwpu_r.identity.directory import IdentityDirectory
from madbwpu_r.identity.keyring import Keyring, KeyringError, check_name
from madbwpu_r.signing import SigningKey, public_key_to_b64

__all__ = ["InitResult", "init_project", "is_initialised", "missing_audit_key", "open_directory"]


def missing_audit_key(data_dir: Path) -> str:
    """What to say when the audit service is registered but its private key is gone."""
    where = Keyring(data_dir).path / f"{AUDIT_KEY}.pem"
    return (
        f"the audit service key {where} is missing (it signs every checkpoint): restore it "
        f"from your backup of {data_dir}; `madbwpu-r init` keeps a registered identity and "
        "cannot re-create its key"
    )


def open_directory(data_dir: Path) -> IdentityDirectory:
    return IdentityDirectory(open_db(project_url(data_dir)))


def is_initialised(data_dir: Path) -> bool:
    """Has `init` run for this project? Asked of the project's store, where `init` records the
    admin identity: no file beside DIR can tell, as that store may be on PostgreSQL, and other
    commands create `DIR/project.sqlite` before `init` runs. Asking creates no embedded store;
    AuditStoreError when the store does not answer."""
    url = project_url(data_dir)
    if not database_exists(url):
        return False
    directory = IdentityDirectory(open_db(url))
    try:
        return not directory.empty()  # the first act can only be `init`'s admin
    finally:
        directory.db.close()


@dataclass(frozen=True)
class InitResult:
    admin: str
    created: list[str]  # what this run made; empty when everything already existed


def _key(keyring: Keyring, name: str, created: list[str]) -> SigningKey:
    if keyring.exists(name):
        return keyring.load(name)
    created.append(f"key {name}")
    return keyring.create(name)


def init_project(data_dir: Path, admin: str = "admin") -> InitResult:
    data_dir = Path(data_dir)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    keyring = Keyring(data_dir)
    directory = open_directory(data_dir)
    created: list[str] = []
    try:
        members = directory.list()
        admins = [m.name for m in members if "admin" in m.roles and not m.revoked]
        if not members:
            key = _key(keyring, check_name(admin), created)
            directory.apply(make_act(key, "identity.init", admin, ["admin"]))
            created.append(f"identity {admin} (admin)")
            admins = [admin]
        admin = admin if admin in admins else admins[0]
        if directory.get(AUDIT_KEY) is None:
            service = _key(keyring, AUDIT_KEY, created)
            act = make_act(
                keyring.load(admin), "identity.add", AUDIT_KEY, ["service-audit"],
                public_key=public_key_to_b64(service.public),
            )  # fmt: skip
            directory.apply(act)
            created.append(f"identity {AUDIT_KEY} (service-audit)")
        if not keyring.exists(AUDIT_KEY):
            raise KeyringError(missing_audit_key(data_dir))
        service = keyring.load(AUDIT_KEY)
        # The environments' logs live in their stores (maybe on PostgreSQL): their API signs
        # their first checkpoint at start-up. The project log is here.
        for log_name in ("project",):
            log = open_log(data_dir, log_name)
            try:
                if log.latest_checkpoint() is None:
                    write_witness(data_dir, log_name, log.checkpoint(service))
                    created.append(f"log {log_name}")
            finally:
                log.close()
    finally:
        directory.db.close()
    return InitResult(admin, created)

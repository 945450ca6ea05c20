"""The identity directory: who is registered, with which public key and roles.

Its only stored truth is the list of signed acts (`identity_acts`), kept in the project database
beside the project's audit log; the current keys and roles are the replay of those acts. An act
and its audit entry commit in one transaction; a refused act changes nothing and is itself
audited (`identity.refused`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from madbwpu_r.audit import _sql
from madbwpu_r.audit.db import AuditDB
from madbwpu_r.audit.records import AuditRecord
from madbwpu_r.identity.acts import ActError, Member, SignedAct, apply_act, check_act, replay
from madbwpu_r.signing import canonical_json, digest, fingerprint, public_key_from_b64

__all__ = ["Identity", "IdentityDirectory"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS {p}identity_acts ("
    " number {int64} PRIMARY KEY, body TEXT NOT NULL, signature TEXT NOT NULL)"
)


@dataclass(frozen=True)
class Identity:
    name: str
    public_key: str  # base64 raw Ed25519
    fingerprint: str
    roles: frozenset[str]
    revoked: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "public_key": self.public_key,
            "fingerprint": self.fingerprint,
            "roles": sorted(self.roles),
            "revoked": self.revoked,
        }


def _identity(m: Member) -> Identity:
    return Identity(
        m.name, m.public_key, fingerprint(public_key_from_b64(m.public_key)),
        frozenset(m.roles), m.revoked,
    )  # fmt: skip


class IdentityDirectory:
    """Implements `signing.KeyDirectory`: revoked identities have no key and no roles."""

    def __init__(self, db: AuditDB):
        self.db = db
        with db.ddl() as tx:
            tx.execute(db.dialect.sql(_SCHEMA.replace("{int64}", db.dialect.int64)))
        self._lock = threading.Lock()
        self._cached: tuple[int, dict[str, Member]] = (-1, {})

    # ---- reads ------------------------------------------------------------------------------

    def _load(self, conn: Any) -> list[SignedAct]:
        sql = self.db.dialect.sql("SELECT body, signature FROM {p}identity_acts ORDER BY number")
        rows = conn.execute(sql).fetchall()
        return [SignedAct(orjson.loads(body), sig) for body, sig in rows]

    def _members(self) -> dict[str, Member]:
        with self.db.read() as conn:
            sql = self.db.dialect.sql("SELECT count(*) FROM {p}identity_acts")
            count = conn.execute(sql).fetchone()[0]
            with self._lock:
                if self._cached[0] == count:
                    return self._cached[1]
            members = replay(self._load(conn))
        with self._lock:
            self._cached = (count, members)
        return members

    def acts(self) -> list[SignedAct]:
        with self.db.read() as conn:
            return self._load(conn)

    def get(self, name: str) -> Identity | None:
        m = self._members().get(name)
        return None if m is None else _identity(m)

    def list(self) -> list[Identity]:
        return [_identity(m) for _, m in sorted(self._members().items())]

    def public_key(self, name: str) -> Ed25519PublicKey | None:
        m = self._members().get(name)
        return None if m is None or m.revoked else public_key_from_b64(m.public_key)

    def roles(self, name: str) -> frozenset[str]:
        m = self._members().get(name)
        return frozenset() if m is None or m.revoked else frozenset(m.roles)

    def has_role(self, name: str, *roles: str) -> bool:
        return bool(self.roles(name) & set(roles))

    def empty(self) -> bool:
        return not self._members()

    # ---- acts -------------------------------------------------------------------------------

    def apply(self, act: SignedAct, detail: str = "") -> None:
        """Check and store `act` with its audit entry; ActError (audited) when refused."""
        record = AuditRecord(
            actor=act.by,
            action=act.kind,
            target=f"identity:{act.name}",
            evidence={"act": digest(canonical_json(act.to_json()))},
            detail=detail or ",".join(act.roles),
        )
        d = self.db.dialect
        try:
            with self.db.transaction() as tx:
                _sql.lock_head(tx, d)  # one writer at a time, on SQLite and PostgreSQL
                acts = self._load(tx)
                members = replay(acts)
                check_act(members, act)
                tx.execute(
                    d.sql(
                        "INSERT INTO {p}identity_acts (number, body, signature) VALUES (?, ?, ?)"
                    ),
                    (len(acts), canonical_json(act.body).decode(), act.signature),
                )
                _sql.append(tx, d, [record])
                apply_act(members, act)
        except ActError as exc:
            self.refused(act.by, f"identity:{act.name}", f"{act.kind}: {exc}")
            raise

    def refused(self, actor: str, target: str, why: str) -> None:
        """Record a refused act (its change did not happen) in the project log."""
        with self.db.transaction() as tx:
            _sql.append(
                tx,
                self.db.dialect,
                [AuditRecord(actor[:128] or "-", "identity.refused", target[:512], "refused",
                             detail=why[:1024])],
            )  # fmt: skip

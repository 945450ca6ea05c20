"""`audit verify --all`: the live logs, checked like an archive and against what was kept.

Beyond an archive's checks, the live store keeps each entry's own hash and the head row, and
every checkpoint ever made; the whole tree is rebuilt from the entries and every checkpoint's
root compared. A rolled-back database matches its own (rolled-back) checkpoints, so each log
is also checked against the checkpoint kept outside it (`DIR/audit/witness/`) and against the
checkpoints of every archive given.
"""

from __future__ import annotations

from collections.abc import Sequence

from madbwpu_r.audit import _sql
from madbwpu_r.audit.archive import Archive
from madbwpu_r.audit.checkpoint import Checkpoint
from madbwpu_r.audit.log import AuditLog
from madbwpu_r.audit.merkle import Tree
from madbwpu_r.audit.verify import Report, check_against, check_checkpoints, check_roots, check_rows
from madbwpu_r.identity.directory import IdentityDirectory

__all__ = ["verify_log"]


def verify_log(
    log: AuditLog,
    name: str,
    directory: IdentityDirectory,
    log_key: str,
    kept: Sequence[tuple[str, Checkpoint]] = (),
    archives: Sequence[Archive] = (),
) -> Report:
    report = Report(f"log {name}")
    d = log.db.dialect
    with log.db.read() as conn:  # one snapshot: entries, head and checkpoints agree
        leaves = check_rows(report, _sql.rows(conn, d))
        checkpoints = [Checkpoint.parse(t) for t in _sql.checkpoints(conn, d)]
        size = _sql.head_size(conn, d)
    report.entries, report.checkpoints = len(leaves), len(checkpoints)
    tree = Tree(leaves)
    public = directory.public_key(log_key)
    check_checkpoints(report, checkpoints, log.origin, (log_key, public) if public else None)
    check_roots(report, tree, checkpoints, f"log {name}")
    if size != len(leaves):
        report.add(
            "truncated", f"the head says {size} entries, {len(leaves)} are stored", len(leaves)
        )
    for where, cp in kept:
        check_against(report, tree, None, cp, where)
    for archive in archives:
        if archive.doc.get("origin") == log.origin:
            check_against(report, tree, None, archive.checkpoint, f"archive {archive.path}")
    return report

"""Which logs a data directory has and where each lives.

`project` holds the identity directory's acts and everything not tied to one environment; each
environment's log lives in that environment's own database, so that an entry can commit in the
same transaction as the change it records there.
"""

from __future__ import annotations

import os
from pathlib import Path

from madbwpu_r.audit.checkpoint import Checkpoint
from madbwpu_r.audit.log import AuditLog, origin_for
from madbwpu_r.config import ENVIRONMENTS, EnvPaths

__all__ = [
    "AUDIT_KEY",
    "LOGS",
    "PROJECT_STORE_ENV",
    "log_url",
    "open_log",
    "project_missing",
    "project_url",
    "read_witness",
    "write_witness",
]

LOGS = ("project", *ENVIRONMENTS)
AUDIT_KEY = "audit-service"  # the identity whose key signs every log's checkpoints


# Where the project's database is when it is on a server (PostgreSQL) rather than in DIR: the
# identity directory, the project log and the release ledger. Every command and API reads it.
PROJECT_STORE_ENV = "MADBWPU_R_PROJECT_STORE_URL"


def project_url(data_dir: Path) -> str:
    """`$MADBWPU_R_PROJECT_STORE_URL`, else the embedded `DIR/project.sqlite`."""
    return os.environ.get(PROJECT_STORE_ENV) or "sqlite:///" + str(
        (Path(data_dir) / "project.sqlite").resolve()
    )


def project_missing(data_dir: Path) -> bool:
    """The embedded `DIR/project.sqlite` is not there (opening it would make an empty one); a
    project store on a server (`$MADBWPU_R_PROJECT_STORE_URL`) is never missing a file."""
    return (
        not os.environ.get(PROJECT_STORE_ENV) and not (Path(data_dir) / "project.sqlite").exists()
    )


def log_url(data_dir: Path, log: str) -> str:
    if log not in LOGS:
        raise ValueError(f"{log!r} is not a log; logs are: {', '.join(LOGS)}")
    if log == "project":
        return project_url(data_dir)
    return "sqlite:///" + str(EnvPaths(Path(data_dir), log).state_db.resolve())


def open_log(data_dir: Path, log: str) -> AuditLog:
    return AuditLog.open(log_url(data_dir, log), origin_for(log))


def _witness(data_dir: Path, log: str) -> Path:
    return Path(data_dir) / "audit" / "witness" / f"{log}.checkpoint"


def write_witness(data_dir: Path, log: str, cp: Checkpoint) -> None:
    """Keep the latest checkpoint outside the database: a rolled-back log cannot match it."""
    path = _witness(data_dir, log)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(cp.text())
    os.replace(tmp, path)


def read_witness(data_dir: Path, log: str) -> Checkpoint | None:
    try:
        return Checkpoint.parse(_witness(data_dir, log).read_text())
    except FileNotFoundError:
        return None

"""Where a project's release state lives, and the name cutover grants are bound to."""

from __future__ import annotations

import hashlib
from pathlib import Path

from madbwpu_r.audit.layout import PROJECT_STORE_ENV, project_url
from madbwpu_r.release.keyring import LocalKeyring
from madbwpu_r.release.store import ProjectStore
from madbwpu_r.store import open_store

__all__ = ["PROJECT_STORE_ENV", "open_keyring", "open_release_store", "project_name"]


def project_name(data_dir: Path, store: ProjectStore | None = None) -> str:
    """Grants name their project, so one project's grant never moves another's pointer.

    Kept in the project's store (named after the first data directory that opened it), so
    pods and the deploying machine, each with a data directory of its own, agree on it.
    """
    default = "madbwpu-r:" + hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:10]
    return default if store is None else store.project_name(default)


def open_release_store(data_dir: Path) -> ProjectStore:
    """The project's store: `$MADBWPU_R_PROJECT_STORE_URL`, else `DIR/project.sqlite`."""
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    return ProjectStore(open_store(project_url(Path(data_dir))))


def open_keyring(data_dir: Path) -> LocalKeyring:
    return LocalKeyring(Path(data_dir))

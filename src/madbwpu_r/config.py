"""Where an environment keeps its files, and the secrets shared by the tiers of one data dir."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import orjson

DATA_DIR_ENV = "MADBWPU_R_DATA_DIR"
DEFAULT_DATA_DIR = ".madbwpu-r"
ENVIRONMENTS = ("staging", "production")
SECRET_NAMES = ("write_token", "purge_token", "worker_token")


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


@dataclass(frozen=True)
class EnvPaths:
    """The files of one environment under a data dir: `DIR/<env>/...`."""

    data_dir: Path
    env: str

    @property
    def root(self) -> Path:
        return self.data_dir / self.env

    @property
    def state_db(self) -> Path:
        """Metadata and (embedded mode) the job queue share this SQLite file."""
        return self.root / "state.sqlite"

    @property
    def supervisor_status(self) -> Path:
        return self.root / "supervisor.json"

    @property
    def default_blob_url(self) -> str:
        """Uploads and version files (embedded mode): a directory per environment."""
        return "file://" + str((self.root / "blobs").resolve())

    @property
    def default_store_url(self) -> str:
        return "sqlite:///" + str(self.state_db.resolve())

    @property
    def default_queue_url(self) -> str:
        return "sqlite:///" + str(self.state_db.resolve())

    def ensure(self) -> EnvPaths:
        self.root.mkdir(parents=True, exist_ok=True)
        return self


def endpoints_path(data_dir: Path) -> Path:
    return data_dir / "endpoints.json"


def load_endpoints(data_dir: Path) -> dict[str, dict[str, str]]:
    path = endpoints_path(data_dir)
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise LookupError(
            f"{path} does not exist: start the product with `madbwpu-r up --data-dir {data_dir}` "
            "or pass --api URL"
        ) from None


def write_json_atomically(path: Path, value: object, mode: int = 0o644) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps(value, option=orjson.OPT_INDENT_2))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_or_create_secrets(data_dir: Path) -> dict[str, str]:
    """Tokens live in `DIR/secrets.json` (mode 0600), created once, never logged."""
    path = data_dir / "secrets.json"
    try:
        values = orjson.loads(path.read_bytes())
        if all(values.get(name) for name in SECRET_NAMES):
            return values
    except FileNotFoundError:
        values = {}
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in SECRET_NAMES:
        values.setdefault(name, secrets.token_urlsafe(32))
    write_json_atomically(path, values, mode=0o600)
    return values

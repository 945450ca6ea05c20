"""Where an environment keeps its files, and the credentials of each environment."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import orjson

DATA_DIR_ENV = "MADBWPU_R_DATA_DIR"
DEFAULT_DATA_DIR = ".madbwpu-r"
ENVIRONMENTS = ("staging", "production")
SECRET_NAMES = ("write_token", "purge_token", "worker_token")
PRIVATE_DIR = 0o700
# One process of one environment (a Kubernetes pod) may be given its tokens as a mounted file.
SECRETS_FILE_ENV = "MADBWPU_R_SECRETS_FILE"

log = logging.getLogger(__name__)


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
    def versions_dir(self) -> Path:
        return self.root / "versions"

    @property
    def uploads_dir(self) -> Path:
        return self.root / "uploads"

    @property
    def secrets(self) -> Path:
        """This environment's tokens (mode 0600); no other environment reads or accepts them."""
        return self.root / "secrets.json"

    @property
    def supervisor_status(self) -> Path:
        return self.root / "supervisor.json"

    @property
    def default_store_url(self) -> str:
        return "sqlite:///" + str(self.state_db.resolve())

    @property
    def default_queue_url(self) -> str:
        return "sqlite:///" + str(self.state_db.resolve())

    def ensure(self) -> EnvPaths:
        """Create the environment's directories, readable by their owner only (0700)."""
        ensure_data_dir(self.data_dir)
        for path in (self.root, self.versions_dir, self.uploads_dir):
            path.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        with contextlib.suppress(PermissionError):  # e.g. a volume mounted by someone else
            self.root.chmod(PRIVATE_DIR)  # also a directory made by an older release
        return self


def ensure_data_dir(data_dir: Path) -> None:
    """A data dir made here is 0700; an existing one is left as its owner made it."""
    if not data_dir.is_dir():
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        data_dir.mkdir(mode=PRIVATE_DIR, exist_ok=True)


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


def write_json_atomically(path: Path, value: object, mode: int = 0o600) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps(value, option=orjson.OPT_INDENT_2))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class MissingSecrets(LookupError):
    """The environment has no credentials yet (or only the retired shared file)."""


def legacy_secrets_path(data_dir: Path) -> Path:
    """Before credentials were per environment, one `DIR/secrets.json` served every one."""
    return data_dir / "secrets.json"


def _read_secrets(path: Path) -> dict[str, str] | None:
    try:
        values = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except orjson.JSONDecodeError:
        raise MissingSecrets(
            f"{path} is not a JSON object of tokens; remove it to start over"
        ) from None
    if isinstance(values, dict) and all(isinstance(values.get(n), str) for n in SECRET_NAMES):
        return {name: values[name] for name in SECRET_NAMES}
    return None


def load_secrets(data_dir: Path, env: str) -> dict[str, str]:
    """Read-only: the environment's tokens, or MissingSecrets saying how to get them."""
    if given := _given_secrets():
        return given
    paths = EnvPaths(data_dir, env)
    values = _read_secrets(paths.secrets)
    if values is not None:
        return values
    if legacy_secrets_path(data_dir).exists():
        raise MissingSecrets(
            f"{legacy_secrets_path(data_dir)} holds the old credentials shared by every "
            f"environment; run `madbwpu-r up --data-dir {data_dir}` once to give each "
            f"environment its own tokens in {paths.secrets}"
        )
    raise MissingSecrets(
        f"no credentials for {env} at {paths.secrets}: start the product with "
        f"`madbwpu-r up --data-dir {data_dir}`"
    )


def load_or_create_secrets(data_dir: Path, env: str) -> dict[str, str]:
    """The environment's tokens in `DIR/<env>/secrets.json` (0600), created once, never logged.

    Creation is race-free (the file is linked into place only if absent), so processes
    starting together agree on one set. The old shared `DIR/secrets.json` is retired: its
    tokens were valid in every environment, so none of them is carried over.
    """
    if given := _given_secrets():
        return given
    paths = EnvPaths(data_dir, env)
    values = _read_secrets(paths.secrets)
    if values is None:
        paths.ensure()
        fresh = {name: secrets.token_urlsafe(32) for name in SECRET_NAMES}
        tmp = paths.secrets.with_name(f"secrets.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        write_json_atomically(tmp, fresh, mode=0o600)
        try:
            os.link(tmp, paths.secrets)
            values = fresh
        except FileExistsError:
            values = _read_secrets(paths.secrets)
        finally:
            tmp.unlink(missing_ok=True)
        if values is None:
            raise MissingSecrets(f"{paths.secrets} is incomplete; remove it to start over")
    retire_legacy_secrets(data_dir)
    return values


def _given_secrets() -> dict[str, str] | None:
    """`$MADBWPU_R_SECRETS_FILE`, when set: this process's tokens, read only, never created."""
    path = os.environ.get(SECRETS_FILE_ENV)
    if not path:
        return None
    values = _read_secrets(Path(path))
    if values is None:
        raise MissingSecrets(f"${SECRETS_FILE_ENV} names {path}, which has no complete tokens")
    return values


def retire_legacy_secrets(data_dir: Path) -> bool:
    """Delete the old shared credentials file; True when there was one."""
    try:
        legacy_secrets_path(data_dir).unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:  # e.g. read-only: its tokens are not used here all the same
        log.warning("cannot remove the old shared %s: %s", legacy_secrets_path(data_dir), exc)
        return False
    log.warning(
        "retired %s: each environment now has its own tokens in DIR/<env>/secrets.json; "
        "the old shared tokens are no longer accepted",
        legacy_secrets_path(data_dir),
    )
    return True

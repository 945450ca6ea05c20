"""`madbwpu-r audit ...`: read, checkpoint, archive, sign off and verify the audit logs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import orjson
import typer

from madbwpu_r.audit.archive import (
    ArchiveError,
    Where,
    archive_url,
    export_archive,
    is_archive_url,
    load_archive,
    pending,
    sign_off,
    verify_archive,
)
from madbwpu_r.audit.checkpoint import CheckpointError
from madbwpu_r.audit.db import AuditStoreError
from madbwpu_r.audit.layout import AUDIT_KEY, LOGS, open_log, read_witness, write_witness
from madbwpu_r.audit.live import verify_log
from madbwpu_r.audit.log import AuditLog, origin_for
from madbwpu_r.audit.verify import Report
from madbwpu_r.cli.acting import As, KeyFile, acting_key, fail
from madbwpu_r.cli.identity import _directory, initialised
from madbwpu_r.cli.options import DEFAULT_DIR, BlobUrl, DataDir, StoreUrl
from madbwpu_r.config import ENVIRONMENTS
from madbwpu_r.identity.directory import IdentityDirectory
from madbwpu_r.identity.keyring import Keyring, KeyringError, load_signing_key
from madbwpu_r.identity.setup import missing_audit_key
from madbwpu_r.signing import public_key_to_b64

__all__ = ["register"]

audit_app = typer.Typer(
    name="audit",
    help=(
        "The tamper-evident audit logs (project, staging, production): list entries, sign "
        "checkpoints, export archives, sign them off as compliance, verify offline."
    ),
    no_args_is_help=True,
)


def _check_log(value: str) -> str:
    if value not in LOGS:
        raise typer.BadParameter(f"{value!r} is not a log; use one of: {', '.join(LOGS)}")
    return value


Log = Annotated[
    str, typer.Option("--log", help=f"Which log: {', '.join(LOGS)}.", callback=_check_log)
]


def _check_only(value: str | None) -> str | None:
    return None if value is None else _check_log(value)


OnlyLog = Annotated[
    str | None,
    typer.Option(
        "--log",
        help=f"Only this log ({', '.join(LOGS)}; default: every log). With --store-url, "
        "name the environment whose store it is.",
        callback=_check_only,
    ),
]


def _selected(only: str | None, store_url: str | None) -> tuple[str, ...]:
    """The logs a command that reads every log covers; a store URL is one environment's."""
    if store_url and only is None:
        raise fail(
            "--store-url (or $MADBWPU_R_STORE_URL) is one environment's store: say which with "
            "--log staging or --log production",
            2,
        )
    return LOGS if only is None else (only,)


def _time(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise fail(f"{value!r} is not an ISO 8601 time (e.g. 2026-12-01T10:00:00Z)", 2) from None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


Since = Annotated[str | None, typer.Option(help="Entries at or after this ISO 8601 time.")]
Until = Annotated[str | None, typer.Option(help="Entries before this ISO 8601 time.")]


@contextmanager
def _log(data_dir: Path, name: str, store_url: str | None = None) -> Iterator[AuditLog]:
    """A log: an environment's in `--store-url` when given (as `api` has it), else under DIR.
    The project log is in the project's store (`DIR/project.sqlite`, or
    `$MADBWPU_R_PROJECT_STORE_URL`), beside the identities."""
    try:
        if store_url and name in ENVIRONMENTS:
            log = AuditLog.open(store_url, origin_for(name))
        else:
            log = open_log(data_dir, name)
    except AuditStoreError as exc:
        raise fail(f"cannot open the {name} audit log: {exc}") from None
    try:
        yield log
    except AuditStoreError as exc:
        raise fail(f"the {name} audit log: {exc}") from None
    finally:
        log.close()


def _service_key(data_dir: Path, directory: IdentityDirectory):  # noqa: ANN202 - SigningKey
    """The audit service's key, or a message saying what to do; never a traceback."""
    registered = directory.public_key(AUDIT_KEY)
    has_key = Keyring(data_dir).exists(AUDIT_KEY)
    if registered is None:
        raise fail(
            f"{AUDIT_KEY}, whose key signs the logs' checkpoints, is not set up in {data_dir}: "
            f"run `madbwpu-r init --data-dir {data_dir}`"
        )
    if not has_key:
        raise fail(missing_audit_key(data_dir))
    try:
        key = load_signing_key(data_dir, AUDIT_KEY, env={})
    except KeyringError as exc:
        raise fail(f"the audit service key cannot be used: {exc}") from None
    if public_key_to_b64(key.public) != public_key_to_b64(registered):
        raise fail(
            f"the key in {Keyring(data_dir).path} is not the one registered for {AUDIT_KEY}: "
            "restore the registered key from your backup"
        )
    return key


@audit_app.command("log")
def log_(
    data_dir: DataDir = DEFAULT_DIR,
    log: Log = "production",
    since: Since = None,
    until: Until = None,
    actor: Annotated[str | None, typer.Option(help="Only this identity's entries.")] = None,
    action: Annotated[
        str | None, typer.Option(help="Only this action (a trailing '.' matches a family).")
    ] = None,
    target: Annotated[str | None, typer.Option(help="Only entries about this target.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many entries.")] = 1000,
    json: Annotated[bool, typer.Option("--json", help="One JSON entry per line.")] = False,
    store_url: StoreUrl = None,
) -> None:
    """List a log's entries, oldest first, with filters."""
    with _directory(data_dir), _log(data_dir, log, store_url) as audit:
        found = audit.query(since=_time(since), until=_time(until), actor=actor, action=action,
                            target=target, limit=limit)  # fmt: skip
    for e in found:
        if json:
            typer.echo(orjson.dumps(e.to_json()).decode())
        else:
            mark = "" if e.outcome == "ok" else f" [{e.outcome}]"
            detail = f" ({e.detail})" if e.detail else ""
            typer.echo(f"{e.seq:>6} {e.time} {e.actor} {e.action} {e.target}{mark}{detail}")


@audit_app.command("checkpoint")
def checkpoint(
    data_dir: DataDir = DEFAULT_DIR, log: Log = "production", store_url: StoreUrl = None
) -> None:
    """Sign a checkpoint of a log now (the API also does so periodically) and print it."""
    with _directory(data_dir) as directory, _log(data_dir, log, store_url) as audit:
        cp = audit.checkpoint(_service_key(data_dir, directory))
        write_witness(data_dir, log, cp)
    typer.echo(cp.text(), nl=False)


@audit_app.command("archive")
def archive(
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            help="New directory, or a file ending in .tar; an archive URL (file:///DIR/NAME, "
            "s3://BUCKET/PREFIX/NAME); or, with --blob-url, the archive's NAME in that store.",
        ),
    ] = None,
    data_dir: DataDir = DEFAULT_DIR,
    log: Log = "production",
    since: Since = None,
    until: Until = None,
    deploy: Annotated[
        str | None, typer.Option(help="The segment of this deploy (entries on deploy:ID).")
    ] = None,
    actor: Annotated[str, typer.Option("--as", help="Who exports (recorded).")] = AUDIT_KEY,
    store_url: StoreUrl = None,
    blob_url: BlobUrl = None,
) -> None:
    """Export a segment of a log as a self-contained, write-once archive awaiting signoff.

    With --blob-url (the environment's blob store, as `api` has it) the archive is stored there,
    under audit/archives/LOG/NAME, so that it survives on a deployment with no shared disk.
    """
    where = _archive_target(out, blob_url, log)
    with _directory(data_dir) as directory, _log(data_dir, log, store_url) as audit:
        if directory.get(actor) is None:
            raise fail(f"{actor!r} is not a registered identity")
        key = _service_key(data_dir, directory)
        try:
            made = export_archive(audit, log, key, directory.acts(), where, actor=actor,
                                  since=_time(since), until=_time(until), deploy=deploy)  # fmt: skip
        except ArchiveError as exc:
            raise fail(str(exc)) from None
        write_witness(data_dir, log, made.checkpoint)
    doc = made.doc
    typer.echo(
        f"archived {log} entries {doc['start']}..{doc['stop'] - 1} to {where} "
        f"(checkpoint size {made.checkpoint.size}, sha256 {made.digest}); awaiting signoff"
    )


def _archive_target(out: str | None, blob_url: str | None, log: str) -> Where:
    """Where `archive` writes: an archive URL, a name in the blob store, or a local path."""
    if out is not None and is_archive_url(out):
        return out
    if blob_url:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        name = out if out is not None else f"{log}-{stamp}-{uuid.uuid4().hex[:6]}"
        try:
            return archive_url(blob_url, log, name)
        except ArchiveError as exc:
            raise fail(
                f"--out: {exc}; for a local archive, leave out --blob-url and $MADBWPU_R_BLOB_URL",
                2,
            ) from None
    if out is None:
        raise fail("--out PATH is required (or --blob-url, to keep it in the blob store)", 2)
    return Path(out)


ArchiveArg = Annotated[
    str,
    typer.Argument(
        metavar="ARCHIVE",
        help="An archive: a directory, a .tar file, or an archive URL (file://..., s3://...).",
    ),
]


@audit_app.command("signoff")
def signoff(
    archive_path: ArchiveArg,
    actor: As,
    data_dir: DataDir = DEFAULT_DIR,
    key_file: KeyFile = None,
    store_url: StoreUrl = None,
) -> None:
    """Co-sign an archive's checkpoint as a compliance identity (itself an audited act)."""
    with _directory(data_dir) as directory:
        key = acting_key(data_dir, directory, actor, key_file)
        try:
            arch = load_archive(archive_path)
        except ArchiveError as exc:
            raise fail(str(exc)) from None
        target = f"archive:{arch.digest}"
        if "compliance" not in directory.roles(actor):
            directory.refused(actor, target, "audit signoff needs the compliance role")
            raise fail(f"{actor} does not hold the compliance role")
        report = verify_archive(arch, _trusted(directory))
        if not report.ok:
            directory.refused(actor, target, f"the archive does not verify: {report.problems[0]}")
            raise fail(
                f"refusing to sign off an archive that does not verify: {report.problems[0]}"
            )
        with _log(data_dir, arch.doc["log"], store_url) as audit:
            try:
                sign_off(arch, key, directory.acts(), audit)
            except ArchiveError as exc:
                raise fail(str(exc)) from None
    typer.echo(f"{actor} signed off {archive_path} (checkpoint size {arch.checkpoint.size})")


@audit_app.command("pending")
def pending_(
    data_dir: DataDir = DEFAULT_DIR,
    json: Annotated[bool, typer.Option("--json", help="One JSON object per archive.")] = False,
    log: OnlyLog = None,
    store_url: StoreUrl = None,
) -> None:
    """Archives awaiting a compliance signoff, in every log (or the one --log names)."""
    names = _selected(log, store_url)
    with _directory(data_dir):
        waiting = []
        for name in names:
            with _log(data_dir, name, store_url) as audit:
                waiting.extend(pending(audit, name))
    for p in waiting:
        if json:
            typer.echo(orjson.dumps(p.__dict__).decode())
        else:
            typer.echo(f"{p.log} {p.time} {p.path} (archived by {p.actor}, entry {p.seq})")
    if not waiting and not json:
        typer.echo("no archive awaits signoff")


def _trusted(directory: IdentityDirectory) -> dict[str, str]:
    return {m.name: m.fingerprint for m in directory.list()}


def _print(report: Report) -> None:
    if report.ok:
        signed = f"; signed off by {', '.join(report.signoffs)}" if report.signoffs else ""
        typer.echo(f"OK {report.subject}: {report.entries} entries, "
                   f"{report.checkpoints} checkpoints verified{signed}")  # fmt: skip
        return
    typer.secho(f"FAILED {report.subject}: {len(report.problems)} problem(s)", fg=typer.colors.RED)
    first = report.first_bad_entry()
    if first is not None:
        typer.echo(f"  first bad entry: {first.seq}: {first.kind}: {first.message}")
    for p in report.problems[:20]:
        typer.echo(f"  {p}")
    if len(report.problems) > 20:
        typer.echo(f"  ... and {len(report.problems) - 20} more")


@audit_app.command("verify")
def verify_(
    archives: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[ARCHIVE]...",
            help="Archives to verify: directories, .tar files or archive URLs (file://, s3://).",
        ),
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Verify the live logs (against the archives given).")
    ] = False,
    data_dir: DataDir = DEFAULT_DIR,
    trust: Annotated[
        Path | None,
        typer.Option(
            help="`identity list --json` output of keys to trust (default: the project's "
            "identities once `init` has run, else the archive's own signed identity acts)."
        ),
    ] = None,
    log: OnlyLog = None,
    store_url: StoreUrl = None,
) -> None:
    """Verify archives offline, or every live log: chain, roots, proofs, signatures, signoffs.

    Exit status 0 when everything verifies, 1 when anything does not (each problem named).
    """
    if not archives and not all_:
        raise fail("name an ARCHIVE to verify, or --all for the live logs", 2)
    names = _selected(log, store_url) if all_ else ()
    trusted: dict[str, str] | None = None
    if trust is not None:
        try:
            trusted = {
                d["name"]: d["fingerprint"]
                for d in map(orjson.loads, trust.read_text().splitlines())
                if d
            }
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise fail(f"cannot read trusted keys from {trust}: {exc}") from None
    loaded = []
    for path in archives or []:
        try:
            loaded.append(load_archive(path))
        except ArchiveError as exc:
            raise fail(str(exc)) from None
    reports: list[Report] = []
    if all_ or (trusted is None and initialised(data_dir)):
        with _directory(data_dir) as directory:
            trusted = trusted if trusted is not None else _trusted(directory)
            if all_:
                for name in names:
                    witness = read_witness(data_dir, name)
                    kept = [("the witness checkpoint", witness)] if witness else []
                    with _log(data_dir, name, store_url) as audit:
                        try:
                            reports.append(
                                verify_log(audit, name, directory, AUDIT_KEY, kept, loaded)
                            )
                        except CheckpointError as exc:
                            raise fail(
                                f"log {name}: a stored checkpoint is malformed: {exc}"
                            ) from None
    reports.extend(verify_archive(a, trusted) for a in loaded)
    for report in reports:
        _print(report)
    if loaded and trusted is None:
        typer.echo("note: keys are the archives' own (no DIR here and no --trust): compare the "
                   "fingerprints in their identity acts with ones you trust")  # fmt: skip
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")

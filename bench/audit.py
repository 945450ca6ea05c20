"""Audit log speed: durable appends (1 and 4 writer processes), verification rate, proof sizes.

    uv run python bench/audit.py [--backend sqlite|postgres|both] [--appends N] [--batch B]
                                 [--verify-entries M] [--rounds R]

Appends are durable (SQLite `synchronous=FULL` in WAL mode; PostgreSQL's default fsync on
commit) and batched: each transaction appends B entries, chained and folded into the Merkle
frontier; checkpoints are signed, entries are not. The peer is the same log with one commit per
entry (what a naive "sign and commit every event" design does). Writers are separate processes
released together; the rate is all entries over the span from the first start to the last end.
Verification is `audit verify --all`'s work on one log of M entries (read, chain, stored hashes,
the whole Merkle tree, every checkpoint's root and signature). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import load_average, median, print_json_line, ratio, say  # noqa: E402
from madbwpu_r.audit.archive import export_archive, load_archive, verify_archive  # noqa: E402
from madbwpu_r.audit.db import open_db  # noqa: E402
from madbwpu_r.audit.live import verify_log  # noqa: E402
from madbwpu_r.audit.log import AuditLog  # noqa: E402
from madbwpu_r.audit.records import AuditRecord  # noqa: E402
from madbwpu_r.identity.acts import make_act  # noqa: E402
from madbwpu_r.identity.directory import IdentityDirectory  # noqa: E402
from madbwpu_r.signing import SigningKey, public_key_to_b64  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432/test"


def record(i: int, actor: str = "bench") -> AuditRecord:
    return AuditRecord(actor, "data.purge", f"deploy:d{i // 100}/step{i % 100}",
                       evidence={"manifest": f"{i:064x}"}, detail="bench")  # fmt: skip


def writer(url: str, n: int, batch: int, go: str) -> None:
    """One writer process: open, wait for the start file, append n entries, print start/end."""
    log = AuditLog.open(url, "madbwpu-r/bench")
    name = f"w{os.getpid()}"
    while not os.path.exists(go):
        time.sleep(0.001)
    start = time.time()
    for i in range(0, n, batch):
        log.append([record(i + j, name) for j in range(min(batch, n - i))])
    print(start, time.time(), flush=True)
    log.close()


def appends(url: str, writers: int, n: int, batch: int) -> float:
    """Durable appends/s with `writers` processes of n entries each."""
    AuditLog.open(url, "madbwpu-r/bench").close()  # tables exist before the race
    go = os.path.join(tempfile.gettempdir(), f"audit-bench-go-{uuid.uuid4().hex}")
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--_writer", url, str(n), str(batch), go],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(writers)
    ]
    time.sleep(1.0 + 0.3 * writers)  # every writer imported and connected
    Path(go).touch()
    spans = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        if p.returncode != 0:
            raise SystemExit(f"a writer failed ({p.returncode})")
        spans.append(tuple(map(float, out.split())))
    os.unlink(go)
    elapsed = max(e for _, e in spans) - min(s for s, _ in spans)
    return writers * n / elapsed


def fresh_url(backend: str, tmp: Path) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite:///{tmp}/bench-{uuid.uuid4().hex[:8]}.sqlite", None
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    return f"{PG}?schema={schema}", schema


def drop(schema: str | None) -> None:
    if schema:
        import psycopg

        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def postgres_up() -> bool:
    import psycopg

    try:
        psycopg.connect(PG, connect_timeout=2).close()
        return True
    except psycopg.Error:
        return False


def verify_rate(tmp: Path, m: int) -> dict[str, float]:
    """Build a log of m entries (fast, not measured), then time the live verification."""
    url = f"sqlite:///{tmp}/verify.sqlite"
    log = AuditLog.open(url, "madbwpu-r/bench")
    admin, service = SigningKey.generate("admin"), SigningKey.generate("audit-service")
    directory = IdentityDirectory(open_db(f"sqlite:///{tmp}/project.sqlite"))
    directory.apply(make_act(admin, "identity.init", "admin", ["admin"]))
    directory.apply(make_act(admin, "identity.add", "audit-service", ["service-audit"],
                             public_key_to_b64(service.public)))  # fmt: skip
    step = 20_000
    for i in range(0, m, step):
        log.append([record(i + j) for j in range(min(step, m - i))])
        if (i // step) % 10 == 0:
            log.checkpoint(service)
            say(f"  built {i + step:,} / {m:,} entries")
    log.checkpoint(service)
    start = time.perf_counter()
    report = verify_log(log, "bench", directory, "audit-service")
    seconds = time.perf_counter() - start
    if not report.ok:
        raise SystemExit(f"the bench log does not verify: {report.problems[:3]}")
    # An archive of the last 10,000 entries (a deploy-sized segment is far smaller).
    tail = min(10_000, m)
    out = tmp / "archive"
    t0 = time.perf_counter()
    last = next(log.entries(m - tail, m - tail + 1))
    from datetime import UTC, datetime

    since = datetime.strptime(last.time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    arch = export_archive(
        log, "bench", service, directory.acts(), out, actor="audit-service", since=since
    )
    export_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    arch_report = verify_archive(load_archive(out))
    archive_verify_s = time.perf_counter() - t0
    if not arch_report.ok:
        raise SystemExit(f"the bench archive does not verify: {arch_report.problems[:3]}")
    tree = log.tree()
    n = len(tree)
    inclusion = tree.inclusion_proof(n // 3, n)
    consistency = tree.consistency_proof(n // 2, n)
    entries_in_archive = arch.doc["stop"] - arch.doc["start"]
    size = (out / "archive.json").stat().st_size
    log.close()
    directory.db.close()
    return {
        "verify_entries": m,
        "verify_seconds": round(seconds, 2),
        "verify_entries_per_s": round(m / seconds),
        "archive_entries": entries_in_archive,
        "archive_export_seconds": round(export_s, 2),
        "archive_verify_entries_per_s": round(entries_in_archive / archive_verify_s),
        "archive_bytes_per_entry": round(size / entries_in_archive),
        "inclusion_proof_hashes": len(inclusion),
        "inclusion_proof_bytes": 32 * len(inclusion),
        "consistency_proof_hashes": len(consistency),
        "consistency_proof_bytes": 32 * len(consistency),
        "checkpoint_bytes": len(arch.checkpoint.text().encode()),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_writer":
        writer(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--appends", type=int, default=20_000, help="entries per writer")
    parser.add_argument("--batch", type=int, default=500, help="entries per transaction")
    parser.add_argument("--verify-entries", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in backends and not postgres_up():
        say("PostgreSQL is not running on 127.0.0.1:5432: measuring SQLite only")
        backends = ["sqlite"]
    result: dict[str, object] = {"load_before": load_average(), "batch": args.batch}
    say(f"load average before: {result['load_before']}")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for backend in backends:
            figures: dict[str, list[float]] = {"one": [], "four": [], "per_entry": []}
            for r in range(args.rounds):
                # Alternate the order of the cases each round, so drift spreads over all.
                cases = [("one", 1, args.batch, args.appends), ("four", 4, args.batch, args.appends),
                         ("per_entry", 1, 1, max(200, args.appends // 100))]  # fmt: skip
                shift = r % len(cases)
                for name, writers, batch, n in cases[shift:] + cases[:shift]:
                    url, schema = fresh_url(backend, tmp)
                    try:
                        rate = appends(url, writers, n, batch)
                    finally:
                        drop(schema)
                    figures[name].append(rate)
                    say(f"{backend} round {r + 1}: {name}: {rate:,.0f} durable appends/s")
            one, four, per = (median(figures[k]) for k in ("one", "four", "per_entry"))
            result[f"{backend}_appends_per_s_1_writer"] = round(one or 0)
            result[f"{backend}_appends_per_s_4_writers"] = round(four or 0)
            result[f"{backend}_appends_per_s_commit_per_entry"] = round(per or 0)
            result[f"{backend}_batched_vs_commit_per_entry"] = ratio(one, per)
        say(f"building and verifying a log of {args.verify_entries:,} entries ...")
        result.update(verify_rate(tmp, args.verify_entries))
    result["load_after"] = load_average()
    for key, value in result.items():
        print(f"{key}: {value}")
    print_json_line(result)


if __name__ == "__main__":
    main()

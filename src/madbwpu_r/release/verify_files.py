"""Check a version file against its manifest entry by re-reading every row.

The checksum is recomputed exactly as the worker computed it when writing the file, so a file
edited by hand (a row changed, added or removed) no longer matches its digest.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import orjson

from madbwpu_r.release.errors import Refused
from madbwpu_r.release.manifest import DatasetEntry
from madbwpu_r.store.port import Column
from madbwpu_r.store.versions import version_digest

__all__ = ["verify_version_file"]


def verify_version_file(path: Path, entry: DatasetEntry) -> None:
    if not path.exists():
        raise Refused(
            "version-missing", f"{entry.name}: version file {entry.digest[:12]} is missing"
        )
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            checksum = hashlib.sha256()
            count = 0
            fmt = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            if fmt and fmt[0] == "2":  # rows(_row, c0, c1, ...): user names only in meta
                cols = ", ".join(f"c{i}" for i in range(len(entry.schema)))
                query = f"SELECT {cols} FROM rows ORDER BY _row"
            else:  # format 1: user names as SQL columns, in rowid order
                query = "SELECT * FROM rows ORDER BY rowid"
            for row in conn.execute(query):
                checksum.update(orjson.dumps(list(row)))
                checksum.update(b"\n")
                count += 1
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise Refused(
            "version-unreadable", f"{entry.name}: version file unreadable: {exc}"
        ) from None
    schema = [Column(n, t) for n, t in entry.schema]
    actual = version_digest(schema, count, checksum.hexdigest())
    if count != entry.row_count or checksum.hexdigest() != entry.checksum or actual != entry.digest:
        raise Refused(
            "version-altered",
            f"{entry.name}: version file {entry.digest[:12]} does not match its digest "
            f"({count} rows, digest {actual[:12]})",
        )

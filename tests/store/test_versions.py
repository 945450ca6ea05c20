"""Version files: the format no column name can break, and no partial file after a failure."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from madbwpu_r.store.port import Column
from madbwpu_r.store.versions import FORMAT, QueryError, VersionFiles

SCHEMA = (Column("rowid", "integer"), Column("v", "text"))
ROWS = [(1, "a"), (1, "b"), (1, "c")]


def parts(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if p.name.endswith(".part")]


def write_format_1(files: VersionFiles, digest: str, schema, rows) -> None:
    """A file as the previous writer made it: user names as SQL columns, order by rowid."""
    conn = sqlite3.connect(files.path(digest))
    cols = ", ".join(f'"{c.name}" {c.type.upper()}' for c in schema)
    conn.execute(f"CREATE TABLE rows ({cols})")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.executemany(f"INSERT INTO rows VALUES ({', '.join('?' * len(schema))})", rows)
    conn.execute("INSERT INTO meta VALUES ('digest', ?)", [digest])
    conn.commit()
    conn.close()


def all_pages(reader, **query) -> list[dict]:
    out, after = [], None
    while True:
        page = reader.page(limit=1, after=after, **query)
        out += page.rows
        if not page.next_cursor:
            return out
        after = page.next_cursor


def test_user_names_never_reach_sql(tmp_path):
    files = VersionFiles(tmp_path)
    info = files.write("t", SCHEMA, ROWS)
    conn = sqlite3.connect(files.path(info.digest))
    assert [r[1] for r in conn.execute("PRAGMA table_info(rows)")] == ["_row", "c0", "c1"]
    assert dict(conn.execute("SELECT key, value FROM meta"))["format"] == FORMAT
    conn.close()
    reader = files.reader(info)
    expected = [{"rowid": 1, "v": v} for v in "abc"]
    assert all_pages(reader) == expected
    assert all_pages(reader, sort="rowid", descending=True) == expected[::-1]


@pytest.mark.parametrize("fail_at", ["rows", "progress"])
def test_a_failed_write_leaves_no_part_file(tmp_path, fail_at):
    files = VersionFiles(tmp_path)

    def rows():
        yield from [(i, "x") for i in range(6000)]
        if fail_at == "rows":
            raise RuntimeError("the upload vanished")

    def on_rows(count: int) -> None:
        if fail_at == "progress":
            raise RuntimeError("the API is down")

    with pytest.raises(RuntimeError):
        files.write("t", SCHEMA, rows(), on_rows=on_rows)
    assert parts(tmp_path) == [] and list(tmp_path.iterdir()) == []


def test_format_1_files_are_read_and_replaced_by_a_rewrite(tmp_path):
    files = VersionFiles(tmp_path)
    schema = (Column("id", "integer"), Column("v", "text"))
    rows = [(1, "a"), (2, "b")]
    digest = VersionFiles(tmp_path / "probe").write("t", schema, rows).digest
    write_format_1(files, digest, schema, rows)
    old = files.reader(_info(digest, schema))
    assert all_pages(old) == [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]
    files.write("t", schema, rows)  # same content: the file becomes format 2
    conn = sqlite3.connect(files.path(digest))
    assert dict(conn.execute("SELECT key, value FROM meta"))["format"] == FORMAT
    conn.close()
    fresh = VersionFiles(tmp_path).reader(_info(digest, schema))
    assert all_pages(fresh, sort="v", descending=True) == [{"id": 2, "v": "b"}, {"id": 1, "v": "a"}]
    assert parts(tmp_path) == []


def test_a_cursor_for_a_row_that_does_not_exist_is_refused(tmp_path):
    files = VersionFiles(tmp_path)
    reader = files.reader(files.write("t", SCHEMA, ROWS))
    cursor = reader.page(limit=1).next_cursor
    assert reader.page(limit=5, after=cursor).rows[0]["v"] == "b"
    with pytest.raises(QueryError) as info:
        reader.page(after="Wzk5XQ")  # [99]
    assert info.value.parameter == "_after"


def _info(digest: str, schema):
    from madbwpu_r.store.port import VersionInfo

    return VersionInfo(dataset="t", digest=digest, row_count=2, schema=schema, checksum="")

from pathlib import Path

import pytest

from madbwpu_r.store.port import Column
from madbwpu_r.worker.csvfile import (
    MAX_COLUMNS,
    MAX_FIELD_CHARS,
    MAX_NAME_CHARS,
    CSVError,
    parse_csv,
)


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "in.csv"
    path.write_bytes(data)
    return path


def test_types_are_inferred_per_column(tmp_path):
    parsed = parse_csv(
        write(tmp_path, b'id,score,name,mixed\n1,1.5,ann,1\n2,2,bob,x\n3,,"c, d",2\n')
    )
    assert parsed.schema == (
        Column("id", "integer"),
        Column("score", "real"),
        Column("name", "text"),
        Column("mixed", "text"),
    )
    assert parsed.row_count == 3
    assert list(parsed.rows()) == [
        (1, 1.5, "ann", "1"),
        (2, 2.0, "bob", "x"),
        (3, None, "c, d", "2"),
    ]


def test_quoted_newlines_and_bom(tmp_path):
    parsed = parse_csv(write(tmp_path, '\ufeffa,b\n"x\ny",2\n'.encode()))
    assert [c.name for c in parsed.schema] == ["a", "b"]
    assert list(parsed.rows()) == [("x\ny", 2)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "line 1: the file is empty"),
        (b"a,b\n1,2\n3\n", "line 3: expected 2 fields"),
        (b"a,b\n1,2\n3,4,5\n", "line 3: expected 2 fields"),
        (b"a,b\n1,2\n\xff\xfe,3\n", "line 3: not valid UTF-8"),
        (b"a,a\n1,2\n", "line 1: duplicate column names: a"),
        (b"a,\n1,2\n", "line 1: column 2 has no name"),
        (b'a,b\n"1,2\n', "line 2"),
        (b"id,Name,name\n1,a,b\n", "line 1: column names that differ only in case: Name, name"),
        (b"a,b\n1,2\n3\x00,4\n", "line 3: NUL byte"),
        (b"a\x00,b\n1,2\n", "line 1: NUL byte"),
        ((",".join(["c"] * 2) + "\n").encode(), "line 1: duplicate column names: c"),
        (
            ",".join(f"c{i}" for i in range(MAX_COLUMNS + 1)).encode() + b"\n",
            f"line 1: {MAX_COLUMNS + 1} columns; at most {MAX_COLUMNS}",
        ),
        (b"x" * (MAX_NAME_CHARS + 1) + b"\n", f"longer than {MAX_NAME_CHARS}"),
        (
            b"a\n1\n" + b"y" * (MAX_FIELD_CHARS + 1) + b"\n",
            f"line 3: a field is longer than {MAX_FIELD_CHARS}",
        ),
    ],
)
def test_malformed_files_name_the_line(tmp_path, data, message):
    with pytest.raises(CSVError) as info:
        parse_csv(write(tmp_path, data))
    assert message in str(info.value)


def test_a_real_that_overflows_is_text_not_infinity(tmp_path):
    parsed = parse_csv(write(tmp_path, b"a,b\n1e999,1e3\n"))
    assert parsed.schema == (Column("a", "text"), Column("b", "real"))
    assert list(parsed.rows()) == [("1e999", 1000.0)]


def test_the_limits_themselves_are_accepted(tmp_path):
    header = ",".join(f"c{i}" for i in range(MAX_COLUMNS)).encode()
    parsed = parse_csv(
        write(tmp_path, header + b"\n" + b"x" * MAX_FIELD_CHARS + b"," * (MAX_COLUMNS - 1) + b"\n")
    )
    assert len(parsed.schema) == MAX_COLUMNS
    assert len(next(parsed.rows())[0]) == MAX_FIELD_CHARS

"""A version file verifies against its manifest entry only while its rows are untouched."""

from __future__ import annotations

import sqlite3

import pytest

from madbwpu_r.release.errors import Refused
from madbwpu_r.release.manifest import DatasetEntry
from madbwpu_r.release.verify_files import verify_version_file
from madbwpu_r.store.port import Column
from madbwpu_r.store.versions import VersionFiles

SCHEMA = (Column("id", "integer"), Column("name", "text"))


def written(tmp_path):
    files = VersionFiles(tmp_path)
    info = files.write("people", SCHEMA, [(1, "ann"), (2, "bob"), (3, None)])
    entry = DatasetEntry(
        "people", info.digest, info.row_count, info.checksum, (("id", "integer"), ("name", "text"))
    )
    return files.path(info.digest), entry


def test_untouched_file_verifies(tmp_path):
    path, entry = written(tmp_path)
    verify_version_file(path, entry)


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE rows SET c1 = 'eve' WHERE c0 = 2",
        "DELETE FROM rows WHERE c0 = 3",
        "INSERT INTO rows VALUES (4, 4, 'dan')",
    ],
)
def test_edited_file_is_refused(tmp_path, edit):
    path, entry = written(tmp_path)
    conn = sqlite3.connect(path)
    conn.execute(edit)
    conn.commit()
    conn.close()
    with pytest.raises(Refused) as exc:
        verify_version_file(path, entry)
    assert exc.value.code == "version-altered"


def test_missing_file_is_refused(tmp_path):
    path, entry = written(tmp_path)
    path.unlink()
    with pytest.raises(Refused) as exc:
        verify_version_file(path, entry)
    assert exc.value.code == "version-missing"

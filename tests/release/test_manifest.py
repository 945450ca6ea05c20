"""Release ids are the digest of the canonical manifest; diffs name what changed."""

from __future__ import annotations

import pytest

from madbwpu_r.release.manifest import DatasetEntry, Manifest, ManifestError, diff


def entry(name: str, digest: str, rows: int = 10) -> DatasetEntry:
    return DatasetEntry(name, digest, rows, "c-" + digest, (("id", "integer"), ("name", "text")))


def manifest(*entries: DatasetEntry, cut_by: str = "dev") -> Manifest:
    return Manifest("madbwpu-r", "staging", "0.1.0", cut_by, 1000.0, entries)


def test_id_is_independent_of_dataset_order_and_changes_with_content():
    a, b = entry("a", "d1"), entry("b", "d2")
    assert manifest(a, b).release_id == manifest(b, a).release_id
    assert manifest(a, b).release_id != manifest(a, entry("b", "d3")).release_id
    assert manifest(a, cut_by="dev").release_id != manifest(a, cut_by="other").release_id
    assert len(manifest(a).release_id) == 64


def test_round_trip_and_tampering_detected():
    m = manifest(entry("a", "d1"), entry("b", "d2"))
    again = Manifest.from_json(m.to_json(), expected_id=m.release_id)
    assert again == m
    edited = m.to_json()
    edited["datasets"][0]["row_count"] = 11
    with pytest.raises(ManifestError, match="altered"):
        Manifest.from_json(edited, expected_id=m.release_id)
    with pytest.raises(ManifestError):
        Manifest.from_json({"format": "other"})
    with pytest.raises(ManifestError):
        Manifest.from_json({**m.to_json(), "datasets": [{"name": "x"}]})


def test_duplicate_dataset_refused():
    with pytest.raises(ManifestError):
        manifest(entry("a", "d1"), entry("a", "d2"))


def test_diff_added_removed_changed_with_rows():
    old = manifest(entry("keep", "k1"), entry("gone", "g1", 5), entry("chg", "c1", 10))
    new = manifest(entry("keep", "k1"), entry("chg", "c2", 12), entry("new", "n1", 7))
    d = diff(old, new)
    assert [e.name for e in d.added] == ["new"]
    assert [e.name for e in d.removed] == ["gone"]
    assert [(c.name, c.old.row_count, c.new.row_count) for c in d.changed] == [("chg", 10, 12)]
    assert d.touched == ("chg", "gone", "new")
    assert d.to_json()["changed"][0]["rows_after"] == 12
    assert diff(None, new).touched == ("chg", "keep", "new")
    assert diff(new, new).touched == ()

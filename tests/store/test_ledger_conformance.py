"""The release ledger's rules, on every store backend (see `madbwpu_r.store.ledger`)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from madbwpu_r.audit.records import AuditRecord
from madbwpu_r.store import MetadataStore
from madbwpu_r.store.ledger import GENESIS, event_hash


def chain(prev: str, seq: int, at: float) -> str:
    return event_hash(prev, {"seq": seq, "at": at})


def test_a_document_is_kept_unless_replaced(store: MetadataStore) -> None:
    with store.unit_of_work() as uow:
        assert uow.put_document("release", "r1", b'{"a":1}', index="staging")
        assert not uow.put_document("release", "r1", b'{"a":2}')
        assert uow.document("release", "r1") == b'{"a":1}'
    assert store.document("release", "r1") == b'{"a":1}'
    with store.unit_of_work() as uow:
        assert uow.put_document("release", "r1", b'{"a":3}', index="production", replace=True)
    assert store.document("release", "r1") == b'{"a":3}'
    assert store.documents("release", index="production") == [b'{"a":3}']
    assert store.documents("release", index="staging") == []
    assert store.document("release", "nope") is None


def test_documents_come_back_oldest_first_per_kind(store: MetadataStore) -> None:
    with store.unit_of_work() as uow:
        for i in range(3):
            uow.put_document("decision", f"d{i}", f'"{i}"'.encode(), index="r")
        uow.put_document("policy", "t", b'"p"')
    assert store.documents("decision") == [b'"0"', b'"1"', b'"2"']
    assert store.documents("policy") == [b'"p"']


def test_events_chain_and_filter(store: MetadataStore) -> None:
    with store.unit_of_work() as uow:
        first = uow.record_event("ann", "deploy.started", "dep-1", "ok", {"n": 1})
        second = uow.record_event("bob", "qa.signoff", "r1", "refused", {"why": "x"})
    assert (first.seq, second.seq) == (1, 2)
    assert first.hash == event_hash(GENESIS, first.body())
    assert second.hash == event_hash(first.hash, second.body())
    assert [e.seq for e in store.events()] == [1, 2]
    assert [e.actor for e in store.events(target="dep-1")] == ["ann"]
    assert [e.outcome for e in store.events(action_prefix="qa.")] == ["refused"]
    assert store.events(action_prefix="qa.signoff")[0].evidence == {"why": "x"}


def test_an_event_rolls_back_with_its_unit_of_work(store: MetadataStore) -> None:
    with pytest.raises(RuntimeError), store.unit_of_work() as uow:
        uow.put_document("release", "r1", b"{}")
        uow.record_event("ann", "release.cut", "r1", "ok", {})
        raise RuntimeError("crash before commit")
    assert store.events() == [] and store.document("release", "r1") is None


def test_the_pointer_moves_with_its_cutover_and_a_grant_is_consumed_once(
    store: MetadataStore,
) -> None:
    assert store.pointer("production").head == (None, None, None, None)
    with store.unit_of_work() as uow:
        row = uow.switch_pointer("production", "g1", "r1", b'{"g":1}', b'{"m":1}', chain)
        assert row is not None
        uow.audit(
            AuditRecord(
                actor="pipeline",
                action="release.cutover",
                target="release:r1",
                evidence={"grant": "a" * 64},
            )
        )
    assert row.seq == 1 and row.prev_hash == GENESIS and row.hash == chain(GENESIS, 1, row.at)
    with store.unit_of_work() as uow:
        assert uow.switch_pointer("production", "g1", "r2", b"{}", b"{}", chain) is None
    state = store.pointer("production")
    assert state.head == ("r1", 1, 1, row.hash)
    assert state.consumed == {"g1": "r1"} and state.audited == {"a" * 64}
    assert state.cutovers[0].grant == b'{"g":1}' and state.cutovers[0].manifest == b'{"m":1}'
    with store.unit_of_work() as uow:
        second = uow.switch_pointer("production", "g2", "r2", b"{}", b"{}", chain)
    assert second is not None and second.prev_hash == row.hash
    assert store.pointer("production").head[:3] == ("r2", 2, 2)


def test_concurrent_switches_with_one_grant_move_the_pointer_once(
    make_store: Callable[[], MetadataStore],
) -> None:
    stores = [make_store() for _ in range(4)]
    results: list[object] = []

    def switch(s: MetadataStore) -> None:
        with s.unit_of_work() as uow:
            results.append(uow.switch_pointer("production", "g", "r", b"{}", b"{}", chain))

    threads = [threading.Thread(target=switch, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1
    assert len(stores[0].pointer("production").cutovers) == 1


def test_concurrent_writers_chain_events_without_a_gap_or_a_clash(
    make_store: Callable[[], MetadataStore],
) -> None:
    stores = [make_store() for _ in range(4)]
    errors: list[BaseException] = []

    def write(s: MetadataStore, n: int) -> None:
        try:
            for i in range(10):
                with s.unit_of_work() as uow:
                    uow.record_event(f"w{n}", "deploy.step", f"dep-{n}", "ok", {"i": i})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, n)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    events = stores[0].events()
    assert [e.seq for e in events] == list(range(1, 41))
    prev = GENESIS
    for e in events:
        assert e.hash == event_hash(prev, e.body())
        prev = e.hash


def test_concurrent_cutovers_with_different_grants_chain_one_after_another(
    make_store: Callable[[], MetadataStore],
) -> None:
    stores = [make_store() for _ in range(4)]
    errors: list[BaseException] = []

    def switch(s: MetadataStore, n: int) -> None:
        try:
            with s.unit_of_work() as uow:
                uow.switch_pointer("production", f"g{n}", f"r{n}", b"{}", b"{}", chain)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=switch, args=(s, n)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    cutovers = stores[0].pointer("production").cutovers
    assert [c.seq for c in cutovers] == [1, 2, 3, 4]
    assert all(b.prev_hash == a.hash for a, b in zip(cutovers, cutovers[1:], strict=False))

"""The Kafka adapter's per-partition ledger, without a broker: what a consumer commits is enough
for the next owner of the partition to tell finished, redelivered and new records apart."""

from __future__ import annotations

from orquestrador.brokers.kafka.ledger import MAX_METADATA, Committed, Ledger


def test_the_commit_stops_at_the_lowest_unfinished_offset_and_says_the_rest():
    ledger = Ledger(Committed(None), owner="a")
    for offset in range(10, 16):
        assert ledger.classify(offset) == "new"
        ledger.hand_out(offset)
    for offset in (10, 12, 13):
        ledger.finish(offset)
    offset, metadata = ledger.proposal() or (None, "")
    assert offset == 11, "10 is done; 11 still runs, so nothing from 11 on may be skipped"

    nxt = Ledger(Committed(offset, metadata), owner="b")  # a crash: another consumer takes over
    kinds = {o: nxt.classify(o) for o in range(11, 18)}
    assert kinds == {11: "again", 12: "skip", 13: "skip", 14: "again", 15: "again", 16: "new", 17: "new"}


def test_a_commit_seen_again_unchanged_is_ours_and_another_is_not():
    ledger = Ledger(Committed(5), owner="a")
    ledger.classify(5)
    ledger.hand_out(5)
    proposal = ledger.proposal()
    assert proposal is not None
    ledger.confirm(proposal)
    assert ledger.proposal() is None, "nothing changed: no second commit"
    assert ledger.ours(Committed(*proposal))
    assert not ledger.ours(Committed(proposal[0], proposal[1].replace(" a ", " b ")))


def test_unmarking_a_prefetch_counts_no_attempt_for_it():
    ledger = Ledger(Committed(0), owner="a")
    for offset in range(4):
        ledger.classify(offset)
        ledger.hand_out(offset)
    ledger.delivered = 1  # 2 and 3 were prefetched, never given to a handler
    for offset in (2, 3):
        ledger.forget(offset)
    ledger.unmark()
    offset, metadata = ledger.proposal() or (None, "")
    nxt = Ledger(Committed(offset, metadata), owner="b")
    assert [nxt.classify(o) for o in range(4)] == ["again", "again", "new", "new"]


def test_metadata_stays_under_kafkas_limit_however_many_finished_out_of_order():
    ledger = Ledger(Committed(0), owner="a")
    for offset in range(0, 20_000):
        ledger.classify(offset)
        ledger.hand_out(offset)
        if offset % 2:
            ledger.finish(offset)
    _offset, metadata = ledger.proposal() or (0, "")
    assert len(metadata) <= MAX_METADATA
    assert Committed(0, metadata).handed == 19_999, "the hand-out mark is always kept"

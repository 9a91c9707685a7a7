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


def test_a_reservation_counts_for_the_next_owner_but_not_as_in_flight():
    """Reserved ahead (so a lone record is handed out without a commit first): after a crash the
    next owner counts an attempt for every reserved record (``maybe`` past those surely handed
    out: the consumer counts those once per record), while inspection counts as in flight only
    those really handed out."""
    ledger = Ledger(Committed(0), owner="a")
    ledger.position = 0
    assert ledger.reserve(9, 19), "nothing committed yet: a commit is needed"
    proposal = ledger.proposal()
    assert proposal is not None
    ledger.confirm(proposal)
    assert ledger.covers(19) and not ledger.covers(20)
    assert not ledger.reserve(9, 19), "already in the group's commit"
    for offset in range(3):
        assert ledger.classify(offset) == "new"
        ledger.hand_out(offset)
    ledger.finish(0)
    offset, metadata = ledger.proposal() or (None, "")

    committed = Committed(offset, metadata)
    assert (committed.offset, committed.handed, committed.held) == (1, 19, 2)
    nxt = Ledger(committed, owner="b")
    assert [nxt.classify(o) for o in (1, 2, 3, 19, 20)] == ["again", "again", "maybe", "maybe", "new"]


def test_a_reservation_given_back_counts_no_attempt():
    ledger = first_of_a_reservation(9)
    ledger.delivered = 0
    ledger.unmark()  # a rebalance: the reservation goes, the record given to a handler stays
    offset, metadata = ledger.proposal() or (None, "")
    nxt = Ledger(Committed(offset, metadata), owner="b")
    assert [nxt.classify(o) for o in range(3)] == ["again", "new", "new"]


def test_metadata_written_before_reservations_reads_the_same():
    committed = Committed(10, "orq1 a 3 4 1-2")  # mark 14, 11 and 12 finished, no reservation field
    assert (committed.handed, committed.held, committed.finished) == (14, 14, {11, 12})


def test_an_earlier_owners_reservation_counts_only_records_that_existed_when_it_left():
    """Past the log's end when the partition changed hands, records (the restamped copies of the
    new owner among them) were never handed out: counting them would restamp copies in a loop."""
    ledger = first_of_a_reservation(19)
    offset, metadata = ledger.proposal() or (None, "")  # then "a" crashes

    nxt = Ledger(Committed(offset, metadata), owner="b", end=2)  # the log held offsets 0 and 1
    assert [nxt.classify(o) for o in range(4)] == ["again", "maybe", "new", "new"]
    assert nxt.covers(19), "the group's commit still counts them: handing them out needs no commit"


def first_of_a_reservation(upto: int) -> Ledger:
    """A consumer that committed a reservation up to ``upto``, then handed out offset 0 under it."""
    ledger = Ledger(Committed(0), owner="a")
    ledger.position = 0
    ledger.reserve(upto // 2, upto)
    ledger.confirm(ledger.proposal() or (0, ""))
    ledger.classify(0)
    ledger.hand_out(0)
    return ledger

"""One partition's progress, so a consumer commits only what is finished.

Kafka keeps one committed offset per partition and consumer group; records below it are done.
With several jobs of a partition in flight at once, finishing out of order, the consumer commits
the lowest offset not finished yet, and records in the commit's metadata what the offset alone
cannot say: the highest offset handed out to a handler and which ones above the commit are
finished. The next owner of the partition (after a crash or a rebalance) reads it back: a record
at or below that mark and not finished was handed out before, so it is a redelivery and counts
an attempt (:mod:`orquestrador.brokers.support.attempts`); a finished one is skipped.

A consumer reserves ahead: before it waits for records it commits a mark some offsets past its
position (:meth:`Ledger.reserve`), so a record that arrives is handed out at once, with no commit
in between; the next owner counts an attempt for every record up to the reservation, so a crash
counts at most a prefetch or two of records no handler saw (as RabbitMQ counts a dead
consumer's prefetch). The records really handed out are committed too, after the hand-out, and
inspection counts those as in flight. Such an uncertain attempt counts once per record: its copy
is flagged, counts none again, and is handed out only after an exact commit, so a job that
kills its worker every time cannot push its neighbours past ``max_tentativas``.

Metadata: ``orq1 <owner> <seq> <mark - offset> <finished ranges relative to offset> <handed out
at or above offset>``, where the mark is the reservation or the highest offset handed out,
whichever is higher, under Kafka's default 4 KiB limit (finished offsets beyond it are left out:
at worst they run again). Metadata without the last field (written before reservations) says
the mark is what was handed out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAGIC = "orq1"
MAX_METADATA = 3000


@dataclass
class Committed:
    """What the group committed for a partition: offset (None: nothing yet) and our metadata."""

    offset: int | None
    metadata: str = ""

    @property
    def handed(self) -> int:
        """Highest offset an earlier owner may have handed out, its reservation included (below
        ``offset``: none): a record up to it counts an attempt."""
        parts = self.metadata.split(" ")
        if self.offset is None or len(parts) < 4 or parts[0] != MAGIC or not parts[3].isdigit():
            return (self.offset or 0) - 1
        return self.offset + int(parts[3])

    @property
    def held(self) -> int:
        """Highest offset really handed out (inspection's in-flight count), not reserved ones."""
        parts = self.metadata.split(" ")
        if self.offset is not None and len(parts) >= 6 and parts[0] == MAGIC and parts[5].isdigit():
            return self.offset + int(parts[5]) - 1
        return self.handed

    @property
    def finished(self) -> set[int]:
        parts = self.metadata.split(" ")
        if self.offset is None or len(parts) < 5 or parts[0] != MAGIC:
            return set()
        return {self.offset + n for n in _parse_ranges(parts[4])}


@dataclass
class Ledger:
    """Offsets of one partition seen by this consumer since it was assigned (see the module)."""

    prior: Committed
    owner: str
    end: int | None = None  # where the log ended when this consumer got the partition
    unfinished: set[int] = field(default_factory=set)  # held by handlers, or being copied
    finished: set[int] = field(default_factory=set)  # at or above the commit point
    position: int | None = None  # the next offset to expect
    handed: int = -1
    reserved: int = -1  # the mark may run ahead of ``handed`` up to here (see the module)
    seq: int = 0
    last: tuple[int, str] | None = None  # what this consumer committed last
    lost: bool = False  # the partition went to another consumer: settling here is useless

    def __post_init__(self) -> None:
        self._committed_state: tuple[int, int, int, frozenset[int]] | None = None
        self._proposed: tuple[int, int, int, frozenset[int]] | None = None
        self.position = self.prior.offset
        # An earlier owner's mark counts only for records that existed when this one took over:
        # its reservation may run past the end of the log, and records written since (copies
        # this consumer restamps among them) were never handed out by it.
        self._prior_mark = self.prior.handed
        if self.end is not None:
            self._prior_mark = max(self.prior.held, min(self.prior.handed, self.end - 1))
        self.handed = self.prior.held
        self.reserved = self._prior_mark  # holds until passed
        self.secured = self.prior.handed  # the mark the group holds: hand-outs up to it are safe
        self.delivered = self.prior.held  # highest offset given to a handler (handed: marked)
        self._prior_finished = self.prior.finished

    def classify(self, offset: int) -> str:
        """``skip`` (seen, finished), ``again`` (an earlier owner handed it out), ``maybe`` (an
        earlier owner's reservation covered it: it may have been handed out) or ``new``."""
        if offset in self.unfinished or offset in self.finished:
            return "skip"
        point = self.point()
        if point is not None and offset < point:
            return "skip"
        if offset in self._prior_finished:
            self.see(offset)
            self.finish(offset)
            return "skip"
        self.see(offset)
        prior = self.prior.offset
        if prior is None or not prior <= offset <= self._prior_mark:
            return "new"
        return "again" if offset <= self.prior.held else "maybe"

    def see(self, offset: int) -> None:
        self.unfinished.add(offset)
        if self.position is None or offset >= self.position:
            self.position = offset + 1

    def forget(self, offset: int) -> None:
        """Fetched but never handed out (its hand-out failed): it will be fetched again."""
        self.unfinished.discard(offset)
        if self.position is not None and offset < self.position:
            self.position = offset

    def hand_out(self, offset: int) -> None:
        """Mark ``offset`` handed out (committed before it is, so a crash counts the attempt)."""
        self.handed = max(self.handed, offset)

    def reserve(self, low: int, high: int) -> bool:
        """Let the mark run ahead to ``high`` if it covers less than ``low``; whether a commit is
        needed before records up to ``low`` can be handed out without one."""
        if self.reserved < low:
            self.reserved = max(self.reserved, high)
        return self.secured < low

    def covers(self, offset: int) -> bool:
        """Whether the group's commit already counts ``offset`` as handed out."""
        return offset <= self.secured

    @property
    def mark(self) -> int:
        return max(self.handed, self.reserved)

    def unmark(self) -> None:
        """Marked offsets nobody was given (a prefetch handed back, a reservation) are not handed
        out after all; an earlier owner's mark still holds."""
        self.handed = max(self.prior.held, self.delivered)
        self.reserved = self._prior_mark

    def finish(self, offset: int) -> None:
        if offset in self.unfinished:
            self.unfinished.discard(offset)
            self.finished.add(offset)

    @property
    def busy(self) -> bool:
        return bool(self.unfinished)

    def point(self) -> int | None:
        """The offset to commit: the lowest not finished (or the next to come)."""
        if self.unfinished:
            return min(self.unfinished)
        return self.position

    def proposal(self) -> tuple[int, str] | None:
        """``(offset, metadata)`` to commit if anything changed since the last commit, else None."""
        point = self.point()
        if point is None:
            return None
        self.finished = {o for o in self.finished if o >= point}
        mark = self.mark
        state = (point, mark, self.handed, frozenset(self.finished))
        if state == self._committed_state:
            return None
        text = f"{MAGIC} {self.owner} {self.seq + 1}"
        if mark >= point:
            ranges = _ranges(sorted(o - point for o in self.finished if o <= mark))
            if len(text) + len(ranges) + 40 > MAX_METADATA:
                ranges = "-"  # finished ones left out: at worst they run again
            text += f" {mark - point} {ranges} {max(0, self.handed - point + 1)}"
        self._proposed = state
        return point, text

    def confirm(self, committed: tuple[int, str]) -> None:
        """The group holds ``committed`` (the last :meth:`proposal`) now."""
        self.seq += 1
        self.last = committed
        self._committed_state = self._proposed
        if self._proposed is not None:
            self.secured = self._proposed[1]

    def ours(self, committed: Committed) -> bool:
        """Whether the group's commit is still this consumer's last one (nobody owned it since)."""
        return (
            self.last is not None and committed.offset == self.last[0] and committed.metadata == self.last[1]
        )

    def in_flight(self) -> int:
        return len(self.unfinished)


def _ranges(numbers: list[int]) -> str:
    out: list[str] = []
    start = prev = None
    for n in numbers:
        if start is None:
            start = prev = n
        elif prev is not None and n == prev + 1:
            prev = n
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = n
    if start is not None:
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ",".join(out) or "-"


def _parse_ranges(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        if low.isdigit() and (not high or high.isdigit()):
            a, b = int(low), int(high or low)
            if 0 <= b - a <= 100_000:
                out.update(range(a, b + 1))
    return out

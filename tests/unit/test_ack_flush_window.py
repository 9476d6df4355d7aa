"""When the worker forgets an asynchronous ack, and which it writes again after an outage.

Pure bookkeeping of pgqueue.settling (no database): the crash itself is the fault row
tests/faults/test_outages.py::test_postgres_crash_right_after_the_replies_loses_no_ack.
"""

from __future__ import annotations

from pgqueue import outcomes
from pgqueue.replies import ReplyStatus
from pgqueue.settling import FLUSH_MARGIN_S, Pending, Settler


def _acked(msg_id: int) -> Pending:
    msg = outcomes.Claimed(msg_id, "default", "t", {}, f"k{msg_id}", 5, "", 1, 0.0, None)
    return Pending(msg, outcomes.Ack(ReplyStatus.COMPLETED, "1", "", "completed"), 0.0)


def _settler() -> Settler:
    settler = Settler(
        result_ttl=60, notify=True, max_error_bytes=1024, known=frozenset(), async_acks=True
    )
    settler.server_flushes_within(0.2)
    return settler


def test_an_ack_is_kept_until_a_later_statement_proves_its_flush() -> None:
    settler = _settler()
    window = 3 * 0.2 + FLUSH_MARGIN_S
    settler.unflushed.extend([(100.0, [_acked(1)]), (101.0, [_acked(2)])])
    settler.confirm(100.0 + window - 0.01)  # too soon for the first
    assert [g[0].msg.msg_id for _, g in settler.unflushed] == [1, 2]
    settler.confirm(100.0 + window)
    assert [g[0].msg.msg_id for _, g in settler.unflushed] == [2]
    # A synchronous commit that began after an ack flushed it, whatever the time.
    settler.confirm(101.0, flushed=True)
    assert not settler.unflushed


def test_after_an_outage_every_uncertain_ack_is_written_again_once() -> None:
    settler = _settler()
    settler.unflushed.extend([(100.0, [_acked(1), _acked(2)]), (100.5, [_acked(3)])])
    assert not settler.unwritten
    settler.reconnected()
    assert settler.unwritten
    assert [(p.msg.msg_id, p.again) for p in settler.again] == [(1, True), (2, True), (3, True)]
    assert not settler.unflushed
    assert settler.pending == []  # not held: nothing to renew, no lease to lose
    settler.reconnected()  # a second outage before the writes: nothing doubled
    assert len(settler.again) == 3


def test_the_window_follows_the_servers_wal_writer_delay() -> None:
    settler = _settler()
    settler.server_flushes_within(10.0)  # its longest
    settler.unflushed.append((100.0, [_acked(1)]))
    settler.confirm(100.0 + 3 * 0.2 + FLUSH_MARGIN_S)  # enough at the default, not here
    assert len(settler.unflushed) == 1
    settler.confirm(100.0 + 30 + FLUSH_MARGIN_S)
    assert not settler.unflushed

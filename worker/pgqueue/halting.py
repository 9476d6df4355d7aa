"""Cancellation, the worker's side (architecture §3.12): stop the runs nobody wants any more.

Two things stop a run before it ends:

- **A cancel** (:mod:`pgqueue.cancelling`) deletes the message's row. The worker holding it hears
  the NOTIFY on ``pgqueue_cancel`` at once, or, if it missed it (reconnecting, or behind a
  transaction pooler where it cannot LISTEN), its next lease renewal finds the lease lost; either
  way it asks the database which held messages are *gone* (named query ``held_gone``) and stops
  those: a run is killed with its whole process group (the slot leads its own session, so what
  the task spawned dies too), a job queued in a slot or claimed but not handed out is dropped, a
  finished run's pending write is dropped. The bound is lease/3 + one loop turn (1 s). A NOTIFY
  alone never kills anything: only a row that is gone does, so a forged NOTIFY is harmless. A
  row gone because another worker took the message over after this one's lease lapsed and
  settled it is stopped the same way: that run's result could not land anyway (the fence).
- **A caller's deadline, with cancel_on_timeout** (a per-task option in the message's headers,
  :mod:`pgqueue.limits`): a running call whose deadline passed is killed within one loop turn,
  and the worker writes the cancel itself, fenced by its claim: a dead letter whose reason says
  so and a reply with the status ``cancelled``.

The inline pool runs a task in the worker's own thread, which cannot be killed: a cancelled
message it has not started is dropped, one it runs finishes, and its result is discarded (the
row is gone, so its ack is fenced out); cancel_on_timeout does not interrupt it (its run limit,
at most lease/3, bounds it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pgqueue import metrics, outcomes
from pgqueue.replies import ReplyStatus
from pgqueue.store import control

if TYPE_CHECKING:
    from pgqueue.slots import Slot
    from pgqueue.supervisor import Worker

log = logging.getLogger(__name__)

# A msg_id as a NOTIFY payload: digits, at most 19 (bigint).
_MAX_ID_DIGITS = 19

# How often the loop looks for calls abandoned at their deadline, seconds: a look reads every busy
# slot's start stamp, too much for every turn of a loop draining short tasks, and the bound
# (lease/3 + 1 s) leaves room.
ABANDONED_EVERY_S = 0.1


@dataclass
class State:
    """What a worker keeps for this module between loop turns."""

    heard: set[int] = field(default_factory=set)  # msg_ids of cancel NOTIFYs not handled yet
    next_look: float = 0.0  # monotonic: when to look for abandoned calls again


def heard(worker: Worker, payloads: list[str]) -> None:
    """Cancel NOTIFYs arrived (msg_ids). What no slot holds (claimed and not handed out, or run
    with its write pending) is stopped now, before the next flush would write it; what a slot
    holds waits for the loop's next turn (:func:`stop_unwanted`), where a slot may be killed and
    restarted, never while its pipe is being read."""
    worker.halt_state.heard.update(
        int(p) for p in payloads if p.isascii() and p.isdigit() and len(p) <= _MAX_ID_DIGITS
    )
    unslotted = {m.msg_id for m, _ in worker.buffer}
    unslotted |= {p.msg.msg_id for p in worker.settler.pending}
    asked = worker.halt_state.heard & unslotted
    if asked:
        worker.halt_state.heard -= asked
        _drop_unslotted(worker, _gone(worker, asked))


def stop_unwanted(worker: Worker, now: float) -> None:
    """One loop turn's check: the cancels heard, then the calls abandoned at their deadline."""
    if worker.halt_state.heard:
        held = {m.msg_id for m in worker._held()}
        asked = worker.halt_state.heard & held
        worker.halt_state.heard = set()
        if asked:
            stop_gone(worker, _gone(worker, asked))
    stop_abandoned(worker, now)


def after_renewal(worker: Worker, lost: list[int]) -> None:
    """A renewal found leases lost: stop those whose row is gone (a cancel this worker did not
    hear of); a row claimed by another worker is left as it was (first write wins)."""
    if lost:
        stop_gone(worker, _gone(worker, set(lost)))


def _gone(worker: Worker, ids: set[int]) -> set[int]:
    """Of these held msg_ids, those whose row no longer exists (empty when it cannot tell)."""
    conn = worker._conn
    if conn is None:
        return set()
    try:
        rows = control.held_gone(conn, sorted(ids))
    except Exception as exc:  # the policy decides; the loop never dies here
        worker._failed("cancel", exc, "cancel check failed: %s; asked again later")
        return set()
    return {int(r["msg_id"]) for r in rows}


def stop_gone(worker: Worker, gone: set[int]) -> None:
    """Stop everything this worker holds of these cancelled (gone) messages."""
    if not gone:
        return
    _drop_unslotted(worker, gone)
    back = False
    for slot in worker.slots:
        back = _stop_in_slot(worker, slot, gone) or back
    if back:
        worker._start_buffered()


def _drop_unslotted(worker: Worker, gone: set[int]) -> None:
    """Drop gone messages claimed and not handed out, and the pending writes of gone runs."""
    kept = []
    for msg, work in worker.buffer:
        if msg.msg_id in gone:
            _stopped(worker, worker._take(msg), "before it started")
        else:
            kept.append((msg, work))
    worker.buffer.clear()
    worker.buffer.extend(kept)
    pending = []
    for item in worker.settler.pending:
        if item.msg.msg_id in gone:
            _stopped(worker, item.msg, "after it ran: its result is discarded")
        else:
            pending.append(item)
    worker.settler.pending = pending


def stop_abandoned(worker: Worker, now: float) -> None:
    """Kill the running calls whose caller's deadline passed, where the message asked for it
    (cancel_on_timeout); the worker writes the cancel itself, fenced by its claim."""
    if now < worker.halt_state.next_look:
        return
    worker.halt_state.next_look = now + ABANDONED_EVERY_S
    for slot in worker.slots:
        running = slot.running() if slot.busy else None
        if running is None:
            continue
        msg, started = worker._current(running[0]), running[1]
        if not (msg.requested.cancel_on_timeout and msg.reply_key is not None):
            continue
        if msg.deadline_in is None or now < msg.claimed_at + msg.deadline_in:
            continue
        reason = (
            f"cancelled at its caller's deadline (cancel_on_timeout): killed after running "
            f"{now - started:.3f}s on {worker.worker_id}"
        )
        log.info("msg_id=%d task=%s: %s", msg.msg_id, _task(worker, msg), reason)
        _kill(worker, slot, set(), {msg.msg_id: reason})


def _stop_in_slot(worker: Worker, slot: Slot, gone: set[int]) -> bool:
    """Stop a slot's jobs of gone messages; True when jobs went back to the buffer."""
    if not gone & slot.outstanding.keys():
        return False
    back: list[outcomes.Claimed] = []
    running = slot.running()
    if running is None or running[0].msg_id not in gone:
        # Not started yet: take back what waits in the slot, drop the gone, requeue the rest.
        for taken in slot.withdraw():
            msg = worker._take(taken)
            if msg.msg_id in gone:
                _stopped(worker, msg, "before it started")
            else:
                back.append(msg)
        worker._requeue_front(back)
    if gone & slot.outstanding.keys():  # running, or it started while being taken back
        _kill(worker, slot, gone, {})
    return bool(back)


def _kill(worker: Worker, slot: Slot, gone: set[int], abandoned: dict[int, str]) -> None:
    """Kill a slot's process group; settle what it reported, cancel the culprits, release the
    jobs that were not theirs (a job just begun behind a culprit is not at fault)."""
    lost = slot.kill()
    worker._reported([(m, r) for m, r in lost.reports if m.msg_id not in gone])
    for msg, _ in lost.reports:
        if msg.msg_id in gone:
            _stopped(worker, worker._take(msg), "after it ran: its result is discarded")
    release = []
    for msg, _ in lost.started:
        if msg.msg_id in gone:
            _stopped(worker, worker._take(msg), "while running: its process group was killed")
        elif msg.msg_id in abandoned:
            verdict = outcomes.DeadLetter(abandoned[msg.msg_id], ReplyStatus.CANCELLED)
            worker.settler.add(worker._take(msg), verdict)
        else:
            release.append(msg)
    for msg in lost.unstarted:
        if msg.msg_id in gone:
            _stopped(worker, worker._take(msg), "before it started")
        else:
            release.append(msg)
    worker._release(release)


def _task(worker: Worker, msg: outcomes.Claimed) -> str:
    return outcomes.metric_task(msg.task_name, worker.known)


def _stopped(worker: Worker, msg: outcomes.Claimed, how: str) -> None:
    task = _task(worker, msg)
    metrics.TASKS.labels(msg.queue, task, "cancelled").inc()
    log.info("msg_id=%d task=%s cancelled %s", msg.msg_id, task, how)

"""Leases: renew what the worker holds every lease/3, and hand it all back when the grace ends.

Renewal is fenced like every write (architecture §3.2): a message re-claimed by another worker
or removed is not renewed, and is counted as a lease lost. It also takes back a claim a Postgres
crash lost (claims commit asynchronously; architecture §3.4): the worker renews at once after
every reconnect, inside the restart quarantine that keeps other workers off those calls.
"""

from __future__ import annotations

import logging
import time

from pgqueue import claiming, metrics, outcomes
from pgqueue.finishing import Finishing
from pgqueue.slots import Slot
from pgqueue.store import leases

# One logger for the whole worker loop, whichever part of it speaks.
log = logging.getLogger("pgqueue.supervisor")


class Leasing(Finishing):
    """Lease renewal and the grace period's end."""

    def _held(self) -> list[outcomes.Claimed]:
        held = [self._current(m) for s in self.slots for m in s.held()]
        return held + [m for m, _ in self.buffer] + self.settler.held()

    def _renew(self) -> None:
        self._next_renew = time.monotonic() + self.s.lease / 3
        # An ack to write again (its commit may have died with the server) may have lost its
        # claim too: taken back here, before the flush writes the ack, or the ack's fence
        # would refuse it and the call would run again after the quarantine.
        rewrites = [p.msg for p in self.settler.again]
        held = self._held() + rewrites
        if not held or self._conn is None:
            return
        try:
            rows = leases.renew(self._conn, self.s.lease, self.worker_id, claiming.held_fence(held))
        except Exception as exc:  # the policy decides; the loop never dies here
            if not self._failed("renew", exc, "lease renewal failed: %s; retried next turn"):
                self._next_renew = time.monotonic() + 1.0
            return
        self._db_up()
        metrics.LEASE_RENEWALS.inc(len(rows))
        kept = {r["msg_id"] for r in rows}
        back = [r["msg_id"] for r in rows if r["reasserted"]]
        if back:
            metrics.CLAIMS_REASSERTED.inc(len(back))
            log.warning(
                "took back %d claims a database crash had lost (msg_ids %s): their runs go on "
                "here, once",
                len(back),
                ",".join(map(str, back[:20])),
            )
        # An ack written again whose row is gone had landed: nothing was lost there.
        held = held[: len(held) - len(rewrites)]
        for m in held:
            if m.msg_id not in kept:
                metrics.LEASE_LOST.inc()
                log.warning(
                    "lease lost at renewal: msg_id=%d task=%s (re-claimed or removed)",
                    m.msg_id,
                    m.task_name,
                )
        self._leases_lost([m.msg_id for m in held if m.msg_id not in kept])

    def _abandon(self, busy: list[Slot]) -> None:
        """Grace period over: kill what still runs and hand it back at once (not an attempt)."""
        released: list[outcomes.Claimed] = []
        for slot in busy:
            lost = slot.kill()
            self._reported(lost.reports)
            released += lost.unstarted + [msg for msg, _ in lost.started]
        self._release(released)
        self._flush()
        log.warning(
            "grace period over: %d running tasks killed and released to other workers",
            len(released),
        )

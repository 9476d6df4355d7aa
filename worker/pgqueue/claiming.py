"""The claim side of the worker: the claim's parameters, its tenant cursor, the row → claim
mapping, and the release of claims never started.

A claim is one statement (``pgqueue.claim``, architecture §3.1) that commits asynchronously (a
call's synchronously with durable claims) and stamps each row with a fresh ``claim_token``; a
:class:`~pgqueue.outcomes.Claimed` carries that token, and every later write of this worker about
the message (renew, ack, retry, dead letter, release) is fenced by ``(msg_id, claim_token)``.
Errors are raised to the caller, which applies the one error policy of :mod:`pgqueue.dberrors`.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import psycopg

from pgqueue import dberrors, limits, metrics, outcomes
from pgqueue.store import leases

log = logging.getLogger(__name__)

TENANT_SPAN = 64  # tenants one claim considers; more rotate through successive claims


def claim_params(
    queue: str,
    limit: int,
    lease: float,
    worker_id: str,
    tenant_cursor: str = "",
    *,
    durable: bool = True,
    quarantine: float = 10.0,
) -> dict[str, Any]:
    """Parameters of the named query ``claim`` (the benchmark times the statement with them)."""
    return {
        "queue": queue,
        "limit": limit,
        # Over-fetched: SKIP LOCKED applies after, and concurrent claimers see the same rows.
        # Twice the limit (plus a few for small claims): the candidate list is what a big claim
        # pays for (a claim of 256 on a 60k backlog: 16 ms of server time with 4× + 4, 8 ms
        # with 2× + 4), and a claimer that meets locked rows claims again when its work settles.
        "candidates": limit * 2 + 16,
        "lease": lease,
        "worker_id": worker_id,
        "tenant_cursor": tenant_cursor,
        "tenant_span": TENANT_SPAN,
        # Shuffles tenants whose rows tie, so a one-row claim does not always favour the same.
        "salt": os.urandom(4).hex(),
        # A claim holding a call commits synchronously (WorkerSettings.durable_claims).
        "durable": durable,
        # The first claim after a crash holds waiting calls back (pgqueue.after_recovery).
        "quarantine": quarantine,
    }


@dataclass
class Cursor:
    """Where a queue's next claim starts its walk of tenants."""

    tenant: str = ""


def claimed_from_row(row: dict[str, Any], now: float) -> outcomes.Claimed:
    asked, ignored = limits.requested(row["payload"])
    return outcomes.Claimed(
        msg_id=row["msg_id"],
        queue=row["queue"],
        task_name=row["task_name"],
        payload=row["payload"],
        reply_key=row["reply_key"],
        priority=row["priority"],
        tenant=row["tenant"],
        read_ct=row["read_ct"],
        waited=row["waited"],
        deadline_in=row["deadline_in"],
        claimed_at=now,
        claim_token=row["claim_token"],
        enqueued_at=row.get("enqueued_at"),
        requested=asked,
        ignored=tuple(ignored),
    )


def claim(
    conn: psycopg.Connection[dict[str, Any]],
    queue: str,
    limit: int,
    *,
    lease: float,
    worker_id: str,
    cursor: Cursor,
    durable: bool = True,
    quarantine: float = 10.0,
) -> list[outcomes.Claimed]:
    """Claim up to ``limit`` messages of ``queue``, in order; moves the tenant cursor."""
    params = claim_params(
        queue, limit, lease, worker_id, cursor.tenant, durable=durable, quarantine=quarantine
    )
    rows = leases.claim(conn, params)
    metrics.CLAIMS.labels(queue).inc()
    now = time.monotonic()
    cursor.tenant = str(rows[0]["last_tenant"]) if rows and rows[0]["walked"] >= TENANT_SPAN else ""
    return [claimed_from_row(r, now) for r in rows]


def holds_call(msgs: list[outcomes.Claimed]) -> bool:
    """Whether a claim of these committed synchronously (with durable claims): it holds a call."""
    return any(m.reply_key is not None for m in msgs)


def fence(msgs: list[outcomes.Claimed]) -> dict[str, list[int]]:
    """The (msg_id, claim_token) arrays that fence a batch statement."""
    return {
        "msg_ids": [m.msg_id for m in msgs],
        "claim_tokens": [m.claim_token for m in msgs],
    }


def held_fence(msgs: list[outcomes.Claimed]) -> dict[str, list[Any]]:
    """The renew statement's arrays: the fence, and what takes a lost claim back (read_ct and
    enqueue time of the row as this worker's claim left it)."""
    return {
        **fence(msgs),
        "read_cts": [m.read_ct for m in msgs],
        "enqueued": [m.enqueued_at for m in msgs],
    }


def release(
    conn: psycopg.Connection[dict[str, Any]], msgs: list[outcomes.Claimed]
) -> BaseException | None:
    """Make claimed, never-started messages visible at once, without counting an attempt.

    Returns the outage that stopped it, if any. Whatever the error, the leases bring the
    messages back, which costs a lease of latency and nothing else, so no error goes further.
    """
    if not msgs:
        return None
    try:
        leases.release(conn, fence(msgs))
    except Exception as exc:  # the policy: whatever it was, the leases decide
        kind = dberrors.classify(exc)
        log.warning(
            "could not release %d messages (msg_ids %s; %s: %s); their leases will",
            len(msgs),
            ",".join(str(m.msg_id) for m in msgs[:10]),
            kind.value,
            dberrors.describe(exc),
        )
        return exc if kind is dberrors.Kind.OUTAGE else None
    return None

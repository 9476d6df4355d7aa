"""The raw ceiling: a bare SKIP LOCKED claim + DELETE ack loop, no framework around it.

``python -m bench.rawloop DSN BATCH`` claims up to BATCH rows of ``bench_raw.job`` in one
autocommit UPDATE (the statement ANCHORS.md describes), then deletes them in a second autocommit
statement, until SIGTERM. Two commits per batch: that is what bounds it, nothing else.
"""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType

import psycopg

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS bench_raw;
CREATE TABLE IF NOT EXISTS bench_raw.job (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    vt       timestamptz NOT NULL DEFAULT now(),
    read_ct  integer NOT NULL DEFAULT 0,
    payload  jsonb NOT NULL
);
-- The harness primes the planner statistics of a full backlog (ANALYZE) and truncates between
-- runs; an autoanalyze of the drained, empty table replaced them, and the third drain of a full
-- run then crawled at ~1,000 jobs/s (twice, 2026-11-28). The raw loop is the statement alone.
ALTER TABLE bench_raw.job SET (autovacuum_enabled = false);
"""

# The claim as a data-modifying CTE (locked once, materialised). The ``WHERE id IN (SELECT ...
# FOR UPDATE SKIP LOCKED LIMIT n)`` spelling of ANCHORS.md hung here: in the second drain of a
# full run both claimers sat for minutes in one statement (wait event LockManager) with 50,000
# rows visible; the CTE form is also the one pgqueue's claim uses.
CLAIM = """
WITH picked AS (
    SELECT id FROM bench_raw.job WHERE vt <= now() ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
)
UPDATE bench_raw.job j SET vt = now() + interval '60 seconds', read_ct = j.read_ct + 1
FROM picked WHERE j.id = picked.id
RETURNING j.id, j.payload
"""

ACK = "DELETE FROM bench_raw.job WHERE id = ANY(%s)"

_stop = False


def _on_term(_signum: int, _frame: FrameType | None) -> None:
    global _stop  # noqa: PLW0603 - the loop's one flag, set from the signal handler
    _stop = True


def main(argv: list[str]) -> None:
    dsn, batch = argv[0], int(argv[1])
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    with psycopg.connect(dsn, autocommit=True, options="-c statement_timeout=30000") as conn:
        while not _stop:
            rows = conn.execute(CLAIM, (batch,)).fetchall()
            if not rows:
                time.sleep(0.005)
                continue
            conn.execute(ACK, ([r[0] for r in rows],))


if __name__ == "__main__":
    main(sys.argv[1:])

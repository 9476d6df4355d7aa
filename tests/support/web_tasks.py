"""Tasks for the web console tests: ``web.until_fixed`` fails until its key is in ``web_fixed``
(the operator's "fix the bug, then replay the dead letter"), recording each run in ``test_runs``."""

from __future__ import annotations

from pgqueue import task
from tests.support.core_tasks import record_phase, task_db

FIXED_DDL = "CREATE TABLE IF NOT EXISTS web_fixed (key text PRIMARY KEY)"


@task(name="web.until_fixed")
def until_fixed(key: str) -> str:
    record_phase(key, "start")
    if task_db().execute("SELECT 1 FROM web_fixed WHERE key = %s", (key,)).fetchone() is None:
        raise RuntimeError(f"{key} is still broken")
    record_phase(key, "end")
    return key

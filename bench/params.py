"""The knobs of a benchmark run, with the two presets: ``full`` (make bench) and ``smoke`` (CI).

Every size and duration is a field, so a run that must fit a time budget is cut through options,
and the cut is recorded with the figures (the JSON carries the parameters it was taken with).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

SCENARIOS = (
    "drain",
    "rpc_latency",
    "rpc_throughput",
    "backlog",
    "fairness",
    "fleet",
    "tx_enqueue",
    "async_rpc",
)


@dataclass(frozen=True)
class BenchParams:
    preset: str = "full"
    scenarios: tuple[str, ...] = SCENARIOS
    runs: int = 3
    # 1. fire-and-forget drain
    drain_jobs: int = 50_000
    drain_workers: int = 2
    pgqueue_concurrency: int = 4
    pgqueuer_batch: int = 10
    raw_batch: int = 50
    # 2. sequential RPC latency
    rpc_calls: int = 2_000
    rpc_warmup: int = 200
    pooled_poll_interval: float = 0.005
    use_pgbouncer: bool = True
    # 3. RPC throughput
    callers: int = 8
    throughput_seconds: float = 15.0
    # "threads": one process, `callers` threads sharing one client (the 8 caller
    # threads); "processes": `callers` processes with a client each
    caller_shapes: tuple[str, ...] = ("threads", "processes")
    # 4. backlog scaling and churn
    backlog_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    claim_samples: int = 300
    backlog_drain_seconds: float = 10.0
    churn_seconds: float = 300.0
    churn_backlog: int = 10_000
    # 5. fairness
    fairness_big: int = 50_000
    fairness_small_calls: int = 200
    # 6. fleet: every N callers x W workers (--pool inline: one slot each), a window per cell
    fleet_callers: tuple[int, ...] = (8, 50, 200)
    fleet_workers: tuple[int, ...] = (2, 10, 40)
    fleet_seconds: float = 15.0
    fleet_pool: str = "inline"
    # 7. enqueue in the caller's transaction: one window per mode and run
    tx_seconds: float = 5.0
    # 8. AsyncClient beside the sync Client (warm-up: rpc_warmup)
    async_calls: int = 1_000
    async_seconds: float = 8.0
    async_callers: int = 8
    # how callers wait for replies (ClientSettings.reply_wait): "listen" or "poll"
    fleet_reply_wait: str = "listen"

    def with_changes(self, **changes: object) -> BenchParams:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


FULL = BenchParams()

# Every smoke value spelled out, alike on purpose: the preset is read and cut as this one list.
SMOKE = BenchParams(
    preset="smoke",
    runs=2,
    drain_jobs=400,
    rpc_calls=30,
    rpc_warmup=5,
    callers=2,
    throughput_seconds=1.0,
    backlog_sizes=(300, 3_000),
    claim_samples=20,
    backlog_drain_seconds=0.5,
    churn_seconds=2.0,
    churn_backlog=300,
    fairness_big=1_000,
    fairness_small_calls=5,
    fleet_callers=(2, 4),
    fleet_workers=(1, 2),
    fleet_seconds=2.0,
    tx_seconds=0.5,
    async_calls=30,
    async_seconds=1.0,
    async_callers=4,
)

PRESETS = {"full": FULL, "smoke": SMOKE}

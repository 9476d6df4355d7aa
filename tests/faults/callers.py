"""Callers in threads for the fault rows: each call records its result and when it came."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pgqueue import CallResult, Client, ClientSettings


@dataclass
class Calls:
    results: dict[str, CallResult] = field(default_factory=dict)
    answered_at: dict[str, float] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)
    timeout: float = 0.0
    started: float = 0.0

    def join(self) -> None:
        for t in self.threads:
            t.join(self.timeout + 30)

    def check(self, keys: list[str], diagnose: Callable[[], str] = lambda: "") -> None:
        """Zero lost: every caller answered ok with its own key, by its deadline."""
        assert sorted(self.results) == sorted(keys), "a caller never returned"
        bad = {k: r for k, r in self.results.items() if not r.ok or r.value != k}
        assert not bad, f"failed: {sorted(bad)} {list(bad.values())[:1]}\n{diagnose()}"
        late = [k for k, t in self.answered_at.items() if t - self.started > self.timeout]
        assert not late, late


def start_calls(
    dsn: str, keys: list[str], seconds: float, timeout: float, task: str = "f.mark"
) -> Calls:
    calls = Calls(timeout=timeout, started=time.monotonic())
    client = Client(dsn, ClientSettings(pool_size=4))

    def one(key: str) -> None:
        calls.results[key] = client.call(task, [key, seconds], timeout=timeout)
        calls.answered_at[key] = time.monotonic()

    calls.threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in keys]
    for t in calls.threads:
        t.start()
    return calls

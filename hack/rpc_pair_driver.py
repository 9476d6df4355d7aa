"""One tree's caller for hack/rpc_pair.py: reads a count N per line on stdin, makes N
``demo.add`` calls (each answer checked) from THREADS threads sharing one Client (env, default
1: sequential calls), and prints their p50 and mean in ms, the calls per second and this
process's CPU time per call in µs (its threads and the client's listener together)."""

import json
import os
import statistics
import sys
import threading
import time

import pgqueue

client = pgqueue.Client(sys.argv[1])
threads = int(os.environ.get("THREADS", "1"))
for i in range(50):  # warm-up: pool, LISTEN, prepared statements
    assert client.call("demo.add", args=[i, 1], timeout=10).value == i + 1
print("ready", flush=True)


def calls(n: int, latencies: list[float]) -> None:
    for i in range(n):
        t = time.perf_counter()
        result = client.call("demo.add", args=[i, 1], timeout=10)
        latencies.append((time.perf_counter() - t) * 1000)
        assert result.ok, result
        assert result.value == i + 1, result


for line in sys.stdin:
    latencies: list[float] = []
    share = max(1, int(line) // threads)
    started, cpu = time.perf_counter(), time.process_time()
    workers = [threading.Thread(target=calls, args=(share, latencies)) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    block = {
        "p50": statistics.median(latencies),
        "mean": statistics.fmean(latencies),
        "rate": len(latencies) / elapsed,
        "calls": len(latencies),
        "cpu_us": (time.process_time() - cpu) / len(latencies) * 1e6,
    }
    print(json.dumps(block), flush=True)

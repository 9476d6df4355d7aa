"""One tree's caller for hack/rpc_pair.py: reads a count N per line on stdin, makes N
sequential ``demo.add`` calls (each answer checked) and prints their p50 and mean in ms."""

import json
import statistics
import sys
import time

import pgqueue

client = pgqueue.Client(sys.argv[1])
for i in range(50):  # warm-up: pool, LISTEN, prepared statements
    assert client.call("demo.add", args=[i, 1], timeout=10).value == i + 1
print("ready", flush=True)
for line in sys.stdin:
    latencies = []
    for i in range(int(line)):
        t = time.perf_counter()
        result = client.call("demo.add", args=[i, 1], timeout=10)
        latencies.append((time.perf_counter() - t) * 1000)
        assert result.ok and result.value == i + 1, result
    print(json.dumps({"p50": statistics.median(latencies), "mean": statistics.fmean(latencies)}),
          flush=True)  # fmt: skip

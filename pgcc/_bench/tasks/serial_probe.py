"""Benchmark task: sleeps a little and reports when it really ran."""

import time


def run(params: dict[str, float]) -> dict[str, float]:
    start = time.time()
    time.sleep(params.get("sleep", 0.002))
    return {"start": start, "end": time.time()}

"""Benchmark task: does nothing."""


def run(params: dict[str, object]) -> None:
    return None

"""The names of `pgcc bench`'s workloads, apart from the bench: the CLI shows
them in --help, and importing pgcc._bench (its client, its queries) for that
would slow every command's start (tests/e2e/test_imports.py)."""

WORKLOADS = ("REF", "W1", "W2", "W3", "W4", "W5", "W5-COLD", "W6", "W7", "W8", "W9")


def check_workloads(names: list[str]) -> None:
    """ValueError naming the first name that is not a workload."""
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown:
        raise ValueError(f"unknown workload {unknown[0]} (choose from {', '.join(WORKLOADS)})")

"""The names of `pgcc bench`'s workloads, apart from the bench: the CLI shows
them in --help, and importing pgcc._bench (its client, its queries) for that
would slow every command's start (tests/e2e/test_imports.py)."""

WORKLOADS = ("REF", "W1", "W2", "W3", "W4", "W5", "W5-COLD", "W6", "W7", "W8", "W9")

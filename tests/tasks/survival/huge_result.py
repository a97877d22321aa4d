"""Returns a 2 MB string: more than the parameters limit (1 MiB by default)."""


def run(params):
    return "x" * 2_000_000

"""The bench's workloads are named once (pgcc/_workloads.py, which the CLI
imports for --help); each name has the Bench method that runs it."""

from __future__ import annotations

from pgcc import _bench as bench
from pgcc import _workloads


def test_every_workload_has_its_method_and_every_method_its_workload() -> None:
    methods = {name for name in vars(bench.Bench)
               if name == "ref" or (name.startswith("w") and name[1:2].isdigit())}
    assert {bench.method_name(name) for name in _workloads.WORKLOADS} == methods

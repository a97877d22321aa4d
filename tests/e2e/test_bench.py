"""A tiny `pgcc bench` run, so the benchmark keeps working (no speed is asserted)."""

from __future__ import annotations

import json
import subprocess

import psycopg

from tests.paths import PGCC


def test_bench_runs_every_workload_and_reports_ratios(pg_dsn: str) -> None:
    result = subprocess.run(
        [PGCC, "bench", "--dsn", pg_dsn, "--reps", "1", "--scale", "0.01", "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    figures = report["figures"]
    for key in ("REF-claim", "REF-insert", "SQL-enqueue", "W1", "W1-p50", "W1-p99", "W2",
                "W3-1", "W3-2", "W3-rss", "W4-p50", "W4-p99", "W5", "W6", "W9-plain",
                "W9-step", "W9-plain-p50", "W9-step-p50"):
        assert key in figures, f"{key} missing from the report"
        assert figures[key]["median"] > 0, key
    assert figures["W1"]["ratio_to_ref"] > 0
    assert figures["W3-1"]["ref"] == "REF-claim"
    assert figures["W9-step"]["ref"] == "W9-plain" and "W9-extra" in figures
    assert report["problems"] == {}, report["problems"]
    assert "..." in result.stderr  # progress lines while it runs


def _bench_schemas(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench\\_%'").fetchall()
    return {row[0] for row in rows}


def test_bench_leaves_no_schema_behind(pg_dsn: str) -> None:
    before = _bench_schemas(pg_dsn)  # a shared server may hold others' runs
    subprocess.run([PGCC, "bench", "--dsn", pg_dsn, "--reps", "1", "--scale", "0.01",
                    "--only", "W1,W2"], capture_output=True, check=True, timeout=120)
    assert _bench_schemas(pg_dsn) - before == set()


def test_bench_refuses_an_unknown_workload(pg_dsn: str) -> None:
    result = subprocess.run([PGCC, "bench", "--dsn", pg_dsn, "--only", "W99"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "W99" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_bench_ships_its_tasks_and_sql_in_its_package() -> None:
    """What `pyproject.toml` lists as pgcc._bench's package data, found where
    the bench looks for it."""
    from importlib import resources

    from pgcc import _bench as bench

    home = resources.files("pgcc._bench")
    runner = bench.Bench("postgresql://unused", reps=1, sizes=bench.Sizes(), progress=print)
    assert sorted(p.name for p in runner.tasks_dir.glob("*.py")) == [
        "noop.py", "serial_probe.py", "write_plain.py", "write_step.py"]
    for script in ("claim_cycle", "ref_setup", "schedule_task", "single_insert"):
        assert (home / "sql" / f"{script}.sql").is_file(), script
    assert 'FROM "s".jobs' in bench._q("s", "serial_runs")
    assert 'FROM "s".jobs' in bench._q("s", "jobs_final")

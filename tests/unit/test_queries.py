"""The named queries (pgcc/queries.py): every name the code asks for is in its
file, each query binds to any schema, and the advisory lock spaces never meet."""

from __future__ import annotations

import ast
import re
from importlib import resources

import pytest

from pgcc._queries import (
    PLAIN,
    Queries,
    _texts,
    _without_prioritized,
    channel,
    for_schema,
    lock_space,
    queue_lock_space,
)
from tests.paths import REPO

SOURCES = sorted((REPO / "pgcc").rglob("*.py"))


BENCH = ("bench.sql", "pgcc._bench")
RUNTIME = ("queries.sql", "pgcc.sql")


def names_in(filename: str, package: str = "pgcc.sql") -> list[str]:
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    return re.findall(r"^-- name: (\w+)\s*$", text, re.MULTILINE)


def _strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant)
            and isinstance(n.value, str)}


def _called(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def asked_for() -> tuple[set[str], set[str]]:
    """Names the code looks up: `<...>queries[<name>]` in queries.sql, also
    through a function that takes the name as a parameter (as the reaper's
    `_run(link, "reap", ...)`), and `_q(schema, <name>)` (the bench's) in bench.sql."""
    main: set[str] = set()
    bench: set[str] = set()
    trees = [ast.parse(path.read_text(), str(path)) for path in SOURCES]
    # Functions that look a query up by one of their parameters: name -> its position.
    passing: dict[str, int] = {}
    for tree in trees:
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef):
                continue
            params = [a.arg for a in function.args.args]
            for node in ast.walk(function):
                if isinstance(node, ast.Subscript) and _called(node.value).endswith("queries") \
                        and isinstance(node.slice, ast.Name) and node.slice.id in params:
                    offset = 1 if params[0] in ("self", "cls") else 0
                    passing[function.name] = params.index(node.slice.id) - offset
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Subscript) and _called(node.value).endswith("queries"):
                main |= _strings(node.slice)
            elif isinstance(node, ast.Call):
                called = _called(node.func)
                if called == "_q" and len(node.args) == 2:
                    bench |= _strings(node.args[1])
                elif called in passing and len(node.args) > passing[called]:
                    main |= _strings(node.args[passing[called]])
    return main, bench


def test_every_query_the_code_asks_for_is_in_its_file() -> None:
    main, bench = asked_for()
    # The worker's, the client's, the reaper's and status's queries at least.
    assert {"claim", "finish", "heartbeat", "schedule_task", "reap", "status_by_state"} <= main
    assert main - set(names_in("queries.sql")) == set()
    assert bench - set(names_in(*BENCH)) == set()


@pytest.mark.parametrize("where", [RUNTIME, BENCH])
def test_each_name_is_given_once(where: tuple[str, str]) -> None:
    names = names_in(*where)
    assert names and len(names) == len(set(names))
    assert sorted(name for name in _texts(*where) if not name.endswith(PLAIN)) == sorted(names)


@pytest.mark.parametrize("name", names_in("queries.sql"))
def test_each_query_binds_to_a_schema_that_needs_quoting(name: str) -> None:
    query = Queries('Odd "Schema"')[name]
    assert "{schema}" not in query
    assert query.strip(), "an empty query"
    if "Odd" in query:
        assert '"Odd ""Schema"""' in query


def test_whole_line_comments_are_left_out_and_the_rest_kept() -> None:
    query = Queries("s")["finish"]
    assert not [line for line in query.splitlines() if line.lstrip().startswith("--")]
    assert "UPDATE \"s\".jobs" in query


def test_an_unknown_name_is_an_error() -> None:
    with pytest.raises(KeyError):
        Queries("s")["no_such_query"]


def test_one_query_set_per_schema_and_file() -> None:
    assert for_schema("a") is for_schema("a")
    assert for_schema("a") is not for_schema("b")
    assert for_schema("a", *BENCH) is not for_schema("a")


def test_queue_locks_never_share_a_space_with_pgccs_own() -> None:
    for schema in ["pgcc", "a", "tenant_1", "x" * 58, *(f"s{n}" for n in range(5000))]:
        space, queues = lock_space(schema), queue_lock_space(schema)
        assert queues != space, schema
        assert -2**31 <= space < 2**31 and -2**31 <= queues < 2**31  # int4 keys
        assert (space, queues) == (lock_space(schema), queue_lock_space(schema))


def test_environments_have_their_own_lock_spaces_and_channel() -> None:
    assert lock_space("a") != lock_space("b")
    assert queue_lock_space("a") != queue_lock_space("b")
    assert channel("prod") == "pgcc.prod"


def test_a_query_with_prioritized_parts_has_a_plain_variant_without_them() -> None:
    texts = _texts(*RUNTIME)
    for name in ("claim",):
        full, plain = texts[name], texts[name + PLAIN]
        assert "priority <> 0" in full
        assert "priority <> 0" not in plain and "free_prioritized" not in plain
        assert "when prioritized" not in full + plain  # the markers are comments
        # Every line of the plain variant is a line of the full one, in order.
        lines = iter(full.splitlines())
        assert all(any(line == other for other in lines) for line in plain.splitlines())
    assert not any(name.endswith(PLAIN) and name[:-len(PLAIN)] != "claim"
                   for name in texts)


@pytest.mark.parametrize("body, problem", [
    ("SELECT 1\n-- when prioritized:\nFROM x\n", "without"),
    ("SELECT 1\n-- end when\n", "out of place"),
    ("-- when prioritized:\n-- when prioritized:\n-- end when\n", "out of place"),
])
def test_unbalanced_prioritized_markers_are_refused(body: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        _without_prioritized("q", body)

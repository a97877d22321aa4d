"""The maintenance leadership is a lease row (pgcc/_maintenance/leadership.py):
one candidate leads, the others stand by without writing; an expired lease
is taken over, a resigned one at once; many candidates at once elect one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgcc._database import Link
from pgcc._maintenance.leadership import Leadership
from tests.helpers import q


@pytest.fixture
def links(pg_dsn: str) -> Iterator[list[Link]]:
    opened = [Link(pg_dsn) for _ in range(8)]
    yield opened
    for link in opened:
        link.close()


def leader_row(db: psycopg.Connection[Any], schema: str) -> tuple[Any, ...] | None:
    return db.execute(q(schema, "SELECT leader_id, elected_at, expires_at, xmin::text,"
                                " xmax::text FROM {}.leader")).fetchone()


def test_one_candidate_leads_and_the_others_stand_by_without_writing(
        db: psycopg.Connection[Any], schema_name: str, links: list[Link]) -> None:
    first, second, third = (Leadership(schema_name, 30.0) for _ in range(3))
    assert first.hold(links[0])
    row = leader_row(db, schema_name)
    assert row is not None and row[0] == first.name
    assert not second.hold(links[1]) and not third.hold(links[2])
    # A standby neither updated nor locked the row.
    assert leader_row(db, schema_name) == row
    assert first.hold(links[0]), "the leader still leads"


def test_a_leader_renews_before_its_lease_ends_and_keeps_it(
        db: psycopg.Connection[Any], schema_name: str, links: list[Link]) -> None:
    leader, other = Leadership(schema_name, 0.6), Leadership(schema_name, 0.6)
    assert leader.hold(links[0])
    elected = leader_row(db, schema_name)
    assert elected is not None
    until = time.monotonic() + 2.0
    while time.monotonic() < until:
        assert leader.hold(links[0])
        assert not other.hold(links[1]), "a renewed lease was taken over"
        time.sleep(0.05)
    renewed = leader_row(db, schema_name)
    assert renewed is not None
    assert renewed[0] == leader.name and renewed[1] == elected[1], "elected once"
    assert (renewed[2] - elected[2]).total_seconds() > 1.0, "the lease did not move on"


def test_an_expired_lease_is_taken_over_and_its_old_holder_stands_by(
        db: psycopg.Connection[Any], schema_name: str, links: list[Link]) -> None:
    """A leader that stopped renewing (frozen, cut off) leads no more once its
    lease has expired by the server's clock; when it looks again, it stands by."""
    old, new = Leadership(schema_name, 0.5), Leadership(schema_name, 30.0)
    assert old.hold(links[0])
    assert not new.hold(links[1])
    time.sleep(0.7)
    assert new.hold(links[1])
    row = leader_row(db, schema_name)
    assert row is not None and row[0] == new.name
    assert not old.hold(links[0]), "the old holder took its expired lease back"
    assert new.hold(links[1])


def test_a_resigned_lease_is_taken_at_once(
        db: psycopg.Connection[Any], schema_name: str, links: list[Link]) -> None:
    leader, other = Leadership(schema_name, 3600.0), Leadership(schema_name, 30.0)
    assert leader.hold(links[0])
    assert not other.hold(links[1])
    leader.resign(links[0])
    assert leader_row(db, schema_name) is None
    assert other.hold(links[1])
    # A resignation of a candidate that no longer holds the row removes nothing.
    leader.resign(links[0])
    row = leader_row(db, schema_name)
    assert row is not None and row[0] == other.name


def race(schema: str, links: list[Link], lease: float) -> list[Leadership]:
    """Every link's candidate asks at the same moment; those that lead."""
    candidates = [Leadership(schema, lease) for _ in links]
    start = threading.Barrier(len(links))
    won: list[Leadership] = []

    def ask(candidate: Leadership, link: Link) -> None:
        link.connection()  # connected before the race
        start.wait()
        if candidate.hold(link):
            won.append(candidate)

    threads = [threading.Thread(target=ask, args=pair) for pair in zip(candidates, links,
                                                                         strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return won


def test_many_candidates_at_once_elect_one(
        db: psycopg.Connection[Any], schema_name: str, links: list[Link]) -> None:
    """No row yet, then an expired one: each time, of eight candidates asking
    together, exactly one leads."""
    for _ in range(5):
        won = race(schema_name, links, 0.3)
        assert len(won) == 1, [c.name for c in won]
        row = leader_row(db, schema_name)
        assert row is not None and row[0] == won[0].name
        time.sleep(0.4)  # expired: the next round takes it over
    db.execute(q(schema_name, "DELETE FROM {}.leader"))
    assert len(race(schema_name, links, 30.0)) == 1


def test_a_lease_short_or_long_is_taken_and_given_up(
        db: psycopg.Connection[Any], schema_name: str, links: list[Link]) -> None:
    """The lease is a worker's --lease, which may be long or a fraction of a second."""
    for lease in (0.05, 86400.0 * 365):
        candidate = Leadership(schema_name, lease)
        assert candidate.hold(links[0])
        candidate.resign(links[0])
    assert leader_row(db, schema_name) is None

"""The exchange: the worker's hot path, in a thread of its own.

It registers the worker, reads the children's answers (pgcc._worker.pool),
writes the outcomes (before anything else, in their own transaction, kept
until the database takes them), claims jobs for the room the children have,
hands them out, and listens for new jobs (LISTEN/NOTIFY, and a poll): an
answer becomes an outcome, a claim and the child's next job without leaving
this thread. The write of a queue job's response goes on with the queue's
next job when there is room (see the finish_in_queues query), and claims
first take in the queues that enqueues touched (migration 0007) when told of
new jobs. Errors are handled by class (pgcc._policy). The supervisor,
which never waits for the database, stops children through the pool.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

import psycopg
from psycopg import sql

from pgcc._database import LINK_CONNECT_TIMEOUT, Link, Rows, Statement, StatementFailed
from pgcc._policy import Backoff, ErrorClass, classify, describe
from pgcc._queries import PLAIN, channel, for_schema, queue_lock_space
from pgcc._rows import CLAIMED, RUNNING, ClaimedRow, HandedRow, RunningRow
from pgcc._worker.config import CLAIM_UNTIL, MAX_PENDING_OUTCOMES, WorkerConfig
from pgcc._worker.messages import AskedRetry, JobOrder, NoResponse, Outcome, PutBack, Response
from pgcc._worker.outcomes import OutcomeWriter
from pgcc._worker.parts import LeaseStatus, Mailbox, Standing
from pgcc._worker.pool import Child, Pool
from pgcc._worker.stats import Stats

log = logging.getLogger("pgcc.worker")

# The claim position before every job: a claim from here reads jobs without a
# queue from the front of the line. Positions are run_at as text (see the claim).
FRONT = ("-infinity", 0)
# Touched jobs each claim takes in at most (see take_in_touched_queues): a
# bulk enqueue into queues is taken in over several claims.
TAKE_IN_BATCH = 1000
# Queue heads read per task beyond twice the heads wanted, for those other
# workers' claims hold at the same moment.
HEAD_SCAN_SPARE = 8
# At most how often (seconds) a worker looks whether jobs of another priority
# than 0 wait (see _prioritized); more often when its poll interval is shorter.
PRIORITY_CHECK_INTERVAL = 1.0


# ---- what the supervisor says to the exchange --------------------------------


class Adopt(NamedTuple):
    """The children are up: read their pipes, and give them jobs."""

    pool: Pool


class StopClaiming(NamedTuple):
    pass


class Retask(NamedTuple):
    """--reload found these tasks: claim them, and say so in the worker's row."""

    tasks: list[str]
    max_attempts: list[int]


class Close(NamedTuple):
    """Write what is pending until `deadline` (monotonic), unregister, end."""

    deadline: float


# ---- what the exchange says to the supervisor --------------------------------


class Registered(NamedTuple):
    worker_id: int
    max_parameters_bytes: int | None


class Closed(NamedTuple):
    unwritten: int


class Exchange:
    def __init__(self, config: WorkerConfig, status: LeaseStatus, supervisor: Mailbox,
                 stats: Stats | None = None) -> None:
        self._config = config
        # Counts for the metrics: claim round trips (the pool counts the jobs);
        # None without --metrics.
        self._stats = stats
        self._queries = for_schema(config.schema)
        self._status = status
        self._supervisor = supervisor
        self.inbox = Mailbox()
        self.link = Link(config.dsn, application_name="pgcc worker", generic_plans=True)
        self._listen: psycopg.Connection[Any] | None = None
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.inbox, selectors.EVENT_READ, "inbox")
        self._task_names = config.task_names
        self._max_attempts = [config.tasks[name].max_attempts for name in self._task_names]
        self._writer = OutcomeWriter(self._queries, self._task_names, self._max_attempts)
        # The worker's row does not list the tasks as they are now (--reload).
        self._tasks_changed = False
        self._queue_lock_space = queue_lock_space(config.schema)
        self._worker_id: int | None = None
        self._announced = False
        # (id, token) of the jobs handed to children whose outcome has not come back.
        self._ledger: set[tuple[int, int]] = set()
        self._pool: Pool | None = None
        # Children whose pipe is watched for room to write (their outbox is not empty).
        self._writing: set[Child] = set()
        self._room = 0
        self._stopped_claiming = False
        self._close_deadline: float | None = None
        self.closed = False
        # Called when a user cancelled a running job (a NOTIFY with payload
        # 'cancel', migration 0008): the supervisor renews the lease at once,
        # and the renewal tells which jobs to stop.
        self.on_cancel: Callable[[], None] | None = None
        # When to try again after a failure, per activity.
        self._connect_at = 0.0
        self._write_at = 0.0
        self._claim_at = 0.0
        self._listen_at = 0.0
        self._connect_backoff = Backoff()
        self._write_backoff = Backoff()
        self._claim_backoff = Backoff()
        self._listen_backoff = Backoff()
        self._outage_logged = False
        # Claim pacing: whether to claim now (news of jobs, or the last claim
        # came back full), and when to poll at the latest.
        self._want_claim = True
        # Whether the children got room since the last claim. Room that a
        # queue's next job takes in the write itself needs no claim.
        self._room_grew = True
        self._next_poll = 0.0
        # Whether _next_poll already allows for every delayed job this worker
        # could know of: until new jobs are announced or a retry delays some,
        # a claim that comes back short need not ask again.
        self._due_known = False
        # Whether the claim first takes in touched queues (migration 0007):
        # after a notification (jobs or queue heads arrived), a reconnect, and
        # once per poll interval, which finds what changed unannounced (a cancel).
        self._take_in = True
        self._next_take_in = 0.0
        # (run_at as text, id) of the last job without a queue claimed: the
        # next claim reads on from there while a backlog lasts (see the claim
        # query), from the front when anything may have joined the line before
        # it, and at least once per poll interval.
        self._free_after = FRONT
        self._next_front_read = 0.0
        # The claim's and the write's "prioritized" (see the claim query): the
        # rule. True at start. While true, a look (any_prioritized, in a
        # claim's round trip) at most every PRIORITY_CHECK_INTERVAL (or poll
        # interval) turns it off when no waiting job has another priority than
        # 0: then the claim leaves out its parts for other priorities
        # (claim/plain) and the write (finish_in_queues, migration 0012) skips
        # them, and every job is taken in run_at order.
        # While false, it turns on by a NOTIFY 'priority' (the doors send one
        # when they write such a job) or by the same look, which finds jobs a
        # plain INSERT wrote: those may be taken in plain order until then.
        self._prioritized = True
        self._next_priority_check = 0.0

    # ---- the loop ------------------------------------------------------------

    def step(self) -> float | None:
        """One round: wait for something to do, then do it."""
        for key, mask in self._selector.select(self._wait_time()):
            data = key.data
            if data == "inbox":
                self._take_messages()
            elif data == "listen":
                self._drain_notifications()
            elif data[0] == "pipe":
                if mask & selectors.EVENT_READ:
                    self._receive(data[1])
                if mask & selectors.EVENT_WRITE:
                    data[1].write()
                    self._writing.add(data[1])
            else:
                self._exited(data[1])
        if self.closed:
            return 0.1
        self._collect()
        now = time.monotonic()
        if self._close_deadline is not None and (
                not self._writer or now >= self._close_deadline):
            self._close()
            return None
        lease = self._status.get()
        if lease.standing is Standing.RELEASED and lease.worker_id == self._worker_id:
            self._registration_lost()
        elif lease.standing is Standing.LOST:
            return None  # the supervisor stops the lost registration's jobs first
        if (not self.link.connected or self._worker_id is None) and (
                now < self._connect_at or not self._connect()):
            return None
        if self._listen is None and now >= self._listen_at and not self._stopped_claiming:
            self._open_listen()
        if self._tasks_changed and not self._record_tasks():
            return None
        self._exchange(now)
        return None

    def _wait_time(self) -> float:
        """Seconds until there is something to do, unless a message comes first."""
        if self.closed:
            return 0.0
        now = time.monotonic()
        if not self.link.connected or self._worker_id is None:
            return max(0.0, self._connect_at - now)
        # A wait of a poll interval at most, and of a quarter lease: the pulse
        # shows the loop goes round (messages, a lost lease, wake it at once).
        deadline = now + min(self._config.poll_interval, self._config.lease / 4)
        if self._writer:
            deadline = min(deadline, max(now, self._write_at))
        if self._may_claim(now) and self._credit()[0] > 0:
            due = max(now, self._claim_at) if self._want_claim or self._room_grew \
                else self._next_poll
            deadline = min(deadline, max(due, self._claim_at))
        return max(0.0, deadline - now)

    # ---- the children ------------------------------------------------------------

    def _adopt(self, pool: Pool) -> None:
        self._pool = pool
        for child in pool.children:
            self._watch(child)

    def _watch(self, child: Child) -> None:
        self._selector.register(child.fd, selectors.EVENT_READ, ("pipe", child))
        self._selector.register(child.sentinel, selectors.EVENT_READ, ("exit", child))

    def _receive(self, child: Child) -> None:
        assert self._pool is not None
        self._pool.receive(child)

    def _exited(self, child: Child) -> None:
        assert self._pool is not None
        self._selector.unregister(child.fd)
        self._selector.unregister(child.sentinel)
        self._writing.discard(child)
        replacement = self._pool.exited(child)
        if replacement is not None:
            self._watch(replacement)

    def _collect(self) -> None:
        """The children's outcomes to the writer; more room is worth a claim."""
        pool = self._pool
        if pool is None:
            return
        outcomes = pool.take_outcomes()
        if outcomes:
            self._outcomes(outcomes)
        room = pool.capacity()[0]
        if room > self._room:
            self._room_grew = True
        self._room = room
        if not pool.announced and pool.all_ready():
            pool.announced = True
            log.info("worker %s ready: %d children, tasks: %s", self._worker_id,
                     len(pool.children), ", ".join(self._task_names) or "(none)")
        # Watch a pipe for room to write only while its outbox holds something.
        for child in list(self._writing):
            key = self._selector.get_key(child.fd)
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if child.outbox else 0)
            if key.events != events:
                self._selector.modify(child.fd, events, key.data)
            if not child.outbox:
                self._writing.discard(child)

    def _take_messages(self) -> None:
        for message in self.inbox.take():
            if isinstance(message, Adopt):
                self._adopt(message.pool)
            elif isinstance(message, StopClaiming):
                self._stopped_claiming = True
                self._close_listen()
            elif isinstance(message, Close):
                self._stopped_claiming = True
                self._close_deadline = message.deadline
            elif isinstance(message, Retask):
                self._task_names, self._max_attempts = message.tasks, message.max_attempts
                self._writer.retask(message.tasks, message.max_attempts)
                self._tasks_changed = True
                self._want_claim = True
                self._due_known = False

    def _outcomes(self, outcomes: list[Outcome]) -> None:
        ledger = self._ledger
        for outcome in outcomes:
            ledger.discard((outcome.id, outcome.token))
            if type(outcome) is NoResponse or type(outcome) is AskedRetry:
                # A retry delays its job: the next wake-up time is to be asked again.
                self._due_known = False
            elif type(outcome) is Response and outcome.queue is not None:
                # The queue's next job may go on in the write, or be claimed.
                self._room_grew = True
        self._writer.add(outcomes)

    # ---- registration and connection -------------------------------------------

    def _connect(self) -> bool:
        """Connect (and register, or reconcile after an outage); False on failure."""
        try:
            if self._worker_id is None:
                self._register()
            else:
                self._reconcile()
        except StatementFailed as failure:
            self._failed(failure, "connect")
            return False
        if self._outage_logged:
            log.info("database connection restored")
            self._outage_logged = False
        self._connect_backoff.reset()
        self._want_claim = True
        self._due_known = False
        self._take_in = True
        self._free_after = FRONT
        return True

    def _register(self) -> None:
        rows = self.link.transactions([[
            ("register_worker", self._queries["register_worker"], {
                "hostname": socket.gethostname(), "pid": os.getpid(),
                "tasks": self._task_names, "concurrency": self._config.concurrency,
                "lease": self._config.lease}),
            ("max_parameters_bytes", self._queries["max_parameters_bytes"], None),
        ]])[0]
        self._worker_id = int(rows[0][0][0])
        self._tasks_changed = False
        self._status.registered(self._worker_id)
        if not self._announced:
            self._announced = True
            # The query's one row holds the limit, or NULL when the setting is
            # removed: then nothing is limited, here as in the SQL doors.
            limit = rows[1][0][0]
            self._supervisor.put(Registered(self._worker_id,
                                            None if limit is None else int(limit)))

    def _record_tasks(self) -> bool:
        """The worker's row lists its tasks as they are now (`pgcc status`
        shows them); False on failure."""
        try:
            self.link.transactions([[("update_worker_tasks", self._queries["update_worker_tasks"],
                                      {"worker": self._worker_id, "tasks": self._task_names})]])
        except StatementFailed as failure:
            self._failed(failure, "connect")
            return False
        self._tasks_changed = False
        return True

    def _registration_lost(self) -> None:
        """The reaper declared this worker dead: its jobs are stopped by the
        supervisor, and anything not yet written is fenced off."""
        if self._writer:
            log.warning("%d outcomes of the old registration dropped (fenced off)",
                        len(self._writer))
        self._writer.clear()
        self._ledger.clear()
        self._worker_id = None

    def _reconcile(self) -> None:
        """After an outage: a claim may have committed without its answer
        reaching this worker. Such jobs run nowhere; put them back."""
        rows = cast(list[RunningRow], self.link.transactions([[(
            "running_of_worker", self._queries["running_of_worker"],
            {"worker": self._worker_id}, RUNNING)]])[0][0])
        known = set(self._ledger)
        known.update((o.id, o.token) for o in self._writer.pending())
        orphans = [(row.id, row.token) for row in rows if (row.id, row.token) not in known]
        if orphans:
            log.warning("%d claimed jobs never reached a child; putting them back", len(orphans))
            self._writer.add([PutBack(job_id, token, started=False) for job_id, token in orphans])

    def _open_listen(self) -> None:
        try:
            conn = psycopg.connect(self._config.dsn, autocommit=True,
                                   connect_timeout=LINK_CONNECT_TIMEOUT,
                                   application_name="pgcc worker listen")
            try:
                conn.execute(sql.SQL("LISTEN {}").format(
                    sql.Identifier(channel(self._config.schema))))
            except BaseException:
                conn.close()
                raise
        except (psycopg.Error, OSError):
            self._listen_at = time.monotonic() + self._listen_backoff.next_delay()
            return
        self._listen = conn
        self._listen_backoff.reset()
        self._selector.register(conn.fileno(), selectors.EVENT_READ, "listen")
        # Announcements may have been missed meanwhile.
        self._want_claim = True
        self._due_known = False
        self._take_in = True
        self._free_after = FRONT

    def _close_listen(self) -> None:
        listen, self._listen = self._listen, None
        if listen is not None:
            # By its key: a connection the server dropped has no fileno() any more.
            for key in list(self._selector.get_map().values()):
                if key.data == "listen":
                    self._selector.unregister(key.fileobj)
            with contextlib.suppress(Exception):
                listen.close()

    def _drain_notifications(self) -> None:
        if self._listen is None:
            return
        try:
            pgconn = self._listen.pgconn
            pgconn.consume_input()
            while (notification := pgconn.notifies()) is not None:
                if notification.extra == b"cancel":
                    if self.on_cancel is not None:
                        self.on_cancel()
                    continue
                if notification.extra == b"priority":
                    self._prioritized = True
                self._want_claim = True
                self._due_known = False
                self._take_in = True
                # An insert that committed late holds an earlier run_at.
                self._free_after = FRONT
            if pgconn.status != psycopg.pq.ConnStatus.OK:
                raise psycopg.OperationalError("the LISTEN connection was closed")
        except psycopg.Error as exc:
            log.warning("LISTEN connection lost (%s); polling until it is back", describe(exc))
            self._close_listen()
            self._listen_at = time.monotonic() + self._listen_backoff.next_delay()

    # ---- writing and claiming --------------------------------------------------

    def _credit(self) -> tuple[int, int]:
        """Jobs and queue heads the children have room for now."""
        if self._pool is None or self._stopped_claiming:
            return 0, 0
        return self._pool.capacity()

    def _may_claim(self, now: float) -> bool:
        lease = self._status.get()
        return (not self._stopped_claiming and bool(self._task_names)
                and lease.worker_id == self._worker_id and not lease.lost
                and now - lease.renewed_at <= CLAIM_UNTIL * self._config.lease
                and len(self._writer) < MAX_PENDING_OUTCOMES)

    def _exchange(self, now: float) -> None:
        """Write the pending outcomes, then claim, in one round trip and two
        transactions."""
        assert self._worker_id is not None
        groups: list[list[Statement]] = []
        writing = bool(self._writer) and now >= self._write_at
        limit, heads = self._credit()
        may_claim = limit > 0 and now >= self._claim_at and self._may_claim(now)
        # Queues whose job ended go on with their next job in the write itself;
        # the claim asks for what room is left.
        hand = min(heads, self._writer.queue_responses) if writing and may_claim else 0
        if writing:
            groups.append(self._writer.statements(self._worker_id, hand, self._prioritized))
        limit, heads = limit - hand, heads - hand
        # Every pending outcome is a queue's job going on with its next one:
        # the room they free is taken in the write.
        covered = hand > 0 and hand == len(self._writer)
        claiming = limit > 0 and may_claim and (
            self._want_claim or (self._room_grew and not covered) or now >= self._next_poll)
        # Jobs put back keep their place, before the position.
        free_after = FRONT if now >= self._next_front_read \
            or (writing and self._writer.has_put_backs) else self._free_after
        asking_due = False
        taking_in = False
        checking_priority = False
        if claiming:
            claim: list[Statement] = []
            taking_in = self._take_in or now >= self._next_take_in
            if taking_in:
                self._next_take_in = now + self._config.poll_interval
                claim.append(("take_in_touched_queues", self._queries["take_in_touched_queues"],
                              {"queue_lock_space": self._queue_lock_space,
                               "batch": TAKE_IN_BATCH}))
            claim_text = self._queries["claim" if self._prioritized else "claim" + PLAIN]
            claim.append(("claim", claim_text, {
                "worker": self._worker_id, "tasks": self._task_names,
                "max_attempts": self._max_attempts, "limit": limit,
                "head_limit": heads, "head_scan": 2 * heads + HEAD_SCAN_SPARE,
                "queue_lock_space": self._queue_lock_space,
                "free_after_run_at": free_after[0], "free_after_id": free_after[1],
            }, CLAIMED))
            # For the wake-up timer if the claim comes back short, in the same
            # round trip; only when something may have changed it.
            asking_due = not self._due_known or now >= self._next_poll
            if asking_due:
                claim.append(("next_due", self._queries["next_due"],
                              {"tasks": self._task_names}))
            # Last, for the next claims (see _prioritized).
            checking_priority = now >= self._next_priority_check
            if checking_priority:
                self._next_priority_check = now + min(PRIORITY_CHECK_INTERVAL,
                                                      self._config.poll_interval)
                claim.append(("any_prioritized", self._queries["any_prioritized"], {}))
            groups.append(claim)
        if not groups:
            return
        sent = time.monotonic()
        try:
            results = self.link.transactions(groups)
        except StatementFailed as failure:
            if writing and failure.committed:
                self._written(failure.results[0])
            self._failed(failure, "write" if writing and not failure.committed else "claim")
            return
        if writing:
            started = self._written(results.pop(0))
            if covered and not claiming:
                # A queue that ran dry leaves its room to the next claim.
                self._room_grew = started < hand
        if claiming:
            rows = results[0]
            if checking_priority:
                waiting = rows.pop()
                if bool(waiting[0][0]) and not self._prioritized:
                    # Jobs a plain INSERT wrote: the next claim orders them.
                    self._want_claim = True
                self._prioritized = bool(waiting[0][0])
            if taking_in:
                # Until a call finds nothing touched: there may be more than a batch.
                taken = rows.pop(0)
                self._take_in = bool(taken and taken[0][0])
            claimed = cast(list[ClaimedRow], rows[0])
            if self._stats is not None:
                self._stats.claim(time.monotonic() - sent, len(claimed))
            self._claimed(claimed, limit, free_after, now)
            if asking_due:
                self._due_known = True
                if not self._want_claim:
                    self._schedule_poll(rows[1][0][0] if rows[1] else None)
            self._claim_backoff.reset()

    def _written(self, results: list[Rows]) -> int:
        """Takes the write's results; how many jobs it started here."""
        self._write_backoff.reset()
        started = self._writer.written(results)
        self._take(started)
        return len(started)

    def _take(self, rows: Sequence[ClaimedRow | HandedRow]) -> None:
        """Jobs this worker now runs (claimed, or next in a queue) to the children."""
        orders = []
        for row in rows:
            orders.append(JobOrder(row.id, row.task, row.parameters, row.attempts, row.queue,
                                   row.token, row.timeout, row.priority or 0))
            self._ledger.add((row.id, row.token))
        if orders:
            assert self._pool is not None
            sound = not self._status.get().in_doubt(time.monotonic(), self._config.lease)
            self._writing.update(self._pool.assign(orders, self._config.log_parameters, sound))
            # Jobs no child could take came back as put-backs.
            self._collect()

    def _claimed(self, rows: list[ClaimedRow], limit: int, free_after: tuple[str, int],
                 now: float) -> None:
        self._take(rows)
        self._want_claim = len(rows) == limit
        self._room_grew = False
        if free_after == FRONT:
            self._next_front_read = now + self._config.poll_interval
        if not self._want_claim:
            # A short claim: the line may have run dry, so the next one starts over.
            self._free_after = FRONT
            return
        # Rows come in claim order: the last without a queue is the position.
        # Only jobs of priority 0 come from the position on (see the claim).
        for row in reversed(rows):
            if row.queue is None and row.priority == 0:
                self._free_after = (row.run_at, row.id)
                break

    def _schedule_poll(self, next_due: float | None) -> None:
        """Sleep until the poll interval, or the next delayed job if it is sooner."""
        delay = self._config.poll_interval
        if next_due is not None:
            delay = min(delay, max(0.0, next_due))
        self._next_poll = time.monotonic() + delay

    def _failed(self, failure: StatementFailed, activity: str) -> None:
        """One failure, handled by its class (see pgcc._policy)."""
        kind = classify(failure.cause)
        now = time.monotonic()
        if kind is ErrorClass.CONNECTION:
            self.link.close()
            self._close_listen()
            self._connect_at = now + self._connect_backoff.next_delay()
            if not self._outage_logged:
                log.warning("database unavailable (%s: %s); reconnecting", failure.name,
                            describe(failure.cause))
                self._outage_logged = True
            return
        if activity == "write" and kind is ErrorClass.JOB:
            # One job's data is at fault: find it, and fail that job alone.
            assert self._worker_id is not None
            try:
                self._writer.write_one_by_one(self.link, self._worker_id)
                return
            except StatementFailed as again:
                self._failed(again, "write-one")
                return
        log.error("%s failed: %s", failure.name, describe(failure.cause))
        if activity in ("write", "write-one"):
            self._write_at = now + self._write_backoff.next_delay()
        elif activity == "claim":
            self._claim_at = now + self._claim_backoff.next_delay()
        else:
            self._connect_at = now + self._connect_backoff.next_delay()

    # ---- closing ---------------------------------------------------------------

    def _close(self) -> None:
        unwritten = len(self._writer)
        if unwritten:
            log.error("%d outcomes could not be written before the worker stopped; the "
                      "reaper requeues their jobs after the lease", unwritten)
        elif self._worker_id is not None and self.link.connected:
            with contextlib.suppress(StatementFailed):
                self.link.transactions([[("unregister_worker",
                                          self._queries["unregister_worker"],
                                          {"worker": self._worker_id})]])
        self._close_listen()
        self.link.close()
        self.closed = True
        self._supervisor.put(Closed(unwritten))

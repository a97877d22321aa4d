"""Exactly once with steps (ctx.step): charge an order, then schedule its receipt.

    pgcc schedule charge_once '{"order": "order-1", "amount": 100}'

Each step runs its function in one transaction on the job's database, and the same
transaction records the step for this job. If the worker dies after the charge
committed, the job's next attempt gets the recorded payment back instead of charging
again; if it dies during the charge, nothing of it committed and the next attempt
charges. The receipt is scheduled inside a step too (ctx.schedule_task in a step's
function joins the step's transaction), so it is scheduled once.

Steps are for effects in this database, done by one job. For state several jobs
share (one order that two jobs may both try to charge), or for an effect in another
system that no transaction here can include, use the taskstate pattern
(taskstate_pattern.py). See docs/steps.md.

The payments go to the table `table` (default charge_once_payments, created on first
use). `"crash_once": true` makes the first attempt die right after the charge, to
watch the second one pick up from there.
"""

from __future__ import annotations

import os
from typing import Any

from psycopg import sql

from pgcc import JobContext


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    table = sql.Identifier(*params.get("table", "charge_once_payments").split("."))

    def charge(conn: Any) -> int:
        # Two first runs at once must not both create the table.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('charge_once'))")
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY,"
                             " order_id text NOT NULL, amount numeric NOT NULL,"
                             " job_id bigint NOT NULL, attempt integer NOT NULL)"
                             ).format(table))
        row = conn.execute(sql.SQL("INSERT INTO {} (order_id, amount, job_id, attempt)"
                                   " VALUES (%s, %s, %s, %s) RETURNING id").format(table),
                           [params["order"], params.get("amount", 100), ctx.job_id,
                            ctx.attempt]).fetchone()
        return int(row[0])

    payment = ctx.step("charge", charge)
    if params.get("crash_once") and ctx.attempt == 1:
        os._exit(1)  # as if the machine died here: the charge is committed, and recorded

    def receipt(conn: Any) -> int:
        return ctx.schedule_task("send_email", {
            "to": params.get("email", "customer@example.com"),
            "subject": f"Receipt for {params['order']}",
            "body": f"Payment {payment}: {params.get('amount', 100)}",
            "message_id": f"receipt-{payment}"})

    email_job = ctx.step("receipt", receipt)
    print(f"charge_once {params['order']}: payment {payment}, receipt job {email_job}",
          flush=True)
    return {"payment": payment, "receipt_job": email_job}

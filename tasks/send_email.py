"""A shared task that other tasks schedule: "sends" an email by writing it to the outbox,
the task state `email:<message_id>` (nothing leaves the machine). A message id sent twice
is written once, so senders may schedule it again safely. An async task: ctx calls are awaited.

    pgcc schedule send_email '{"to": "ada@example.com", "subject": "Hi", "body": "Hello"}'
"""

from __future__ import annotations

from typing import Any

from pgcc import AsyncJobContext, StaleTaskStateError


async def run(params: dict[str, Any], ctx: AsyncJobContext) -> dict[str, Any]:
    message_id = params.get("message_id") or f"job-{ctx.job_id}"
    outbox = await ctx.taskstate.get(f"email:{message_id}")
    if outbox.status == "complete":
        return {"message_id": message_id, "sent": False, "reason": "already sent"}
    outbox.data = {"to": params["to"], "subject": params.get("subject", ""),
                   "body": params.get("body", ""), "job_id": ctx.job_id}
    outbox.status = "complete"
    try:
        await outbox.save()
    except StaleTaskStateError:
        # Another job wrote this message at the same moment: it is sent once.
        return {"message_id": message_id, "sent": False, "reason": "sent by another job"}
    print(f"send_email: to {params['to']!r}: {outbox.data['subject']!r}", flush=True)
    return {"message_id": message_id, "sent": True}

"""Reuses the shared send_email task: records a new user (task state `user:<email>`) and
schedules a welcome email whose message id comes from the user, so a redelivered signup
cannot send it twice.

    pgcc schedule signup '{"email": "ada@example.com", "name": "Ada"}'
"""

from __future__ import annotations

from typing import Any

from pgcc import JobContext


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    email, name = params["email"], params.get("name", "")
    user = ctx.taskstate.get(f"user:{email}")
    if user.status != "complete":
        user.data = {"email": email, "name": name}
        user.status = "complete"
        user.save()
    job_id = ctx.schedule_task("send_email", {
        "to": email,
        "subject": f"Welcome, {name or email}",
        "body": "Thanks for signing up.",
        "message_id": f"welcome:{email}",
    })
    return {"user": f"user:{email}", "email_job": job_id}

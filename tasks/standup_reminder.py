"""A periodic task: every weekday at 09:45 in Berlin (summer time or not), mails the team a
reminder through the shared send_email task. The message id is the day's date, so the
reminder goes out once a day however often the job runs (a redelivery, a manual run).

    pgcc schedule standup_reminder '{"to": "team@example.com"}'
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from pgcc import JobContext

schedule = "45 9 * * MON-FRI"
schedule_timezone = "Europe/Berlin"
schedule_parameters = {"to": "team@example.com"}


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    today = dt.datetime.now(zoneinfo.ZoneInfo(schedule_timezone)).date().isoformat()
    job_id = ctx.schedule_task("send_email", {
        "to": params["to"],
        "subject": f"Stand-up at 10:00 ({today})",
        "body": "See you there.",
        "message_id": f"standup:{today}",
    })
    return {"email_job": job_id}

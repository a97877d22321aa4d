"""Log formats of the commands: text (the default) and JSON lines (`--log-format json`).

A JSON line is one object: time (UTC, ISO 8601), level, logger, message, and
for a job's events the job's fields the worker attaches to its records
(`extra={"pgcc_job": {...}}`, see pgcc._worker.pool): job_id, task,
attempt, queue, and once it ended outcome and duration (seconds). A job's
parameters appear only in the message, and only where the text format shows
them too (`pgcc worker -v`). See docs/metrics.md.
"""

from __future__ import annotations

import json
import logging
import time
from enum import Enum

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogFormat(str, Enum):
    TEXT = "text"
    JSON = "json"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, object] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        job = getattr(record, "pgcc_job", None)
        if isinstance(job, dict):
            line.update(job)
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def formatter(log_format: LogFormat) -> logging.Formatter:
    if log_format is LogFormat.JSON:
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT)

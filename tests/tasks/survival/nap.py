"""Logs each run (job id and attempt) to params["log"], then sleeps params["seconds"]."""

import os
import time


def run(params, ctx):
    with open(params["log"], "a") as f:
        f.write(f"{ctx.job_id} {ctx.attempt} {os.getpid()}\n")
    time.sleep(params.get("seconds", 0))
    return "slept"

"""Marks that it started, then sleeps an hour; its timeout (2 s) stops it, and
with one attempt only the job then ends dead."""

import time

timeout = 2
max_attempts = 1


def run(params):
    with open(params["mark"], "a") as f:
        f.write("started\n")
    time.sleep(3600)

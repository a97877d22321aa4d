"""Marks that it started, then sleeps an hour (the worker's default timeout)."""

import time


def run(params):
    with open(params["mark"], "a") as f:
        f.write("started\n")
    time.sleep(3600)

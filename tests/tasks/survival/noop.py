"""Does nothing; its parameters may be large."""


def run(params):
    return "ok"

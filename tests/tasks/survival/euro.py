"""Returns a character that a LATIN1 database cannot store."""


def run(params):
    return "\u20ac"

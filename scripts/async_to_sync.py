"""Write the sync twin of each async module from it, as psycopg does.

    python scripts/async_to_sync.py          # rewrite the sync modules
    python scripts/async_to_sync.py --check  # exit 1 if one is out of date

The async module is the source; its sync twin is generated, never edited.
The transformation works on tokens, so the layout and comments stay:

- `async` and `await` go;
- names are renamed by RENAMES (AsyncClient -> Client...), in code and in
  docstrings and comments too;
- dotted names by DOTTED (asyncio.sleep -> time.sleep...), and
  `Awaitable[X]` is X;
- a block `if True:  # ASYNC` keeps only its `else:` branch, one level less
  indented, or nothing when it has none: code that differs beyond names.
"""

from __future__ import annotations

import io
import re
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (async source, sync twin), relative to the repository's root.
PAIRS = [("pgcc/_client_async.py", "pgcc/_client.py"),
         ("pgcc/_taskstate_async.py", "pgcc/_taskstate.py"),
         ("pgcc/_steps_async.py", "pgcc/_steps.py")]

RENAMES = {
    "AsyncClient": "Client",
    "AsyncConnection": "Connection",
    "AsyncConnectionPool": "ConnectionPool",
    "AsyncIterator": "Iterator",
    "AbstractAsyncContextManager": "AbstractContextManager",
    "AsyncTaskState": "TaskState",
    "AsyncTaskStates": "TaskStates",
    "AsyncConnect": "SyncConnect",
    "asynccontextmanager": "contextmanager",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "asyncio": "threading",  # the import; its attributes go by DOTTED
    # The async modules import each other's twins.
    "_client_async": "_client",
    "_taskstate_async": "_taskstate",
    "_steps_async": "_steps",
}
DOTTED = {
    "asyncio.Lock": "threading.Lock",
    "asyncio.sleep": "time.sleep",
}
# In docstrings and comments, the names of classes, functions and methods only.
_WORDS = re.compile(r"\b(" + "|".join(sorted(
    (name for name in RENAMES if name[0].isupper() or name.startswith("__")),
    key=len, reverse=True)) + r")\b")
_ASYNC_BLOCK = re.compile(r"^(\s*)if True:\s*# ASYNC\s*$")

def to_sync(text: str, source: str) -> str:
    """The sync twin of an async module's text."""
    sync = _tokens(_branches(_docstring(text, source)))
    # A block dropped whole leaves the blank lines on both of its sides.
    return re.sub(r"\n{4,}", "\n\n\n", sync)


def _docstring(text: str, source: str) -> str:
    """The module's docstring: its first line, and where the module comes from."""
    if not text.startswith('"""'):
        raise ValueError(f"{source} has no module docstring")
    end = text.index('"""', 3) + 3
    first = text[3:end - 3].strip().splitlines()[0]
    return (f'"""{first}\n\nGenerated from {source} by scripts/async_to_sync.py: edit that\n'
            f'file, not this one.\n"""' + text[end:])


def _branches(text: str) -> str:
    """Each `if True:  # ASYNC` block replaced by its else branch, dedented
    (or by nothing)."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _ASYNC_BLOCK.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent = match[1]
        i += 1
        body_end = i
        while i < len(lines) and _inside(lines[i], indent):
            i += 1  # the async branch
            if lines[i - 1].strip():
                body_end = i
        if i >= len(lines) or lines[i].rstrip() != f"{indent}else:":
            i = body_end  # no else: the blank lines after it belong to what follows
            continue
        i += 1
        while i < len(lines) and _inside(lines[i], indent):
            line = lines[i]
            out.append(line[4:] if line.startswith(indent + "    ") else line)
            i += 1
    return "".join(out)


def _inside(line: str, indent: str) -> bool:
    """Whether a line belongs to a block opened at `indent` (blank lines do)."""
    return not line.strip() or (line.startswith(indent + " ")
                                and len(line) - len(line.lstrip()) > len(indent))


def _tokens(text: str) -> str:
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    lines = text.splitlines(keepends=True)
    # (row, start column, end column, replacement), applied right to left.
    edits: list[tuple[int, int, int, str]] = []
    for index, token in enumerate(tokens):
        (row, col), (end_row, end_col) = token.start, token.end
        if token.type == tokenize.NAME and token.string in ("async", "await"):
            following = tokens[index + 1].start  # the space after it goes too
            cut = (following[1] if following[0] == row else end_col) - col
            edits.append((row, col, col + cut, ""))
            if token.string == "async" and tokens[index + 1].string == "def":
                # The signature's continuation lines move left with it.
                close = _closing(tokens, index + 3)  # async def name (
                for at in range(row + 1, tokens[close].start[0] + 1):
                    if lines[at - 1].startswith(" " * cut):
                        edits.append((at, 0, cut, ""))
        elif token.type == tokenize.NAME and token.string == "Awaitable" \
                and tokens[index + 1].string == "[":
            # Awaitable[X] is X: the name and its brackets go.
            close = _closing(tokens, index + 1)
            edits.append((row, col, tokens[index + 1].end[1], ""))
            edits.append((*tokens[close].start, tokens[close].end[1], ""))
        elif token.type == tokenize.NAME and token.string in RENAMES:
            dotted = _dotted(tokens, index)
            if dotted in DOTTED:
                edits.append((row, col, tokens[index + 2].end[1], DOTTED[dotted]))
            else:
                edits.append((row, col, end_col, RENAMES[token.string]))
        elif token.type in (tokenize.STRING, tokenize.COMMENT):
            for at in range(row, end_row + 1):
                first = col if at == row else 0
                last = end_col if at == end_row else len(lines[at - 1])
                for match in _WORDS.finditer(lines[at - 1], first, last):
                    edits.append((at, match.start(), match.end(), RENAMES[match[1]]))
    for row, col, end, replacement in sorted(edits, reverse=True):
        line = lines[row - 1]
        lines[row - 1] = line[:col] + replacement + line[end:]
    return "".join(lines)


def _closing(tokens: list[tokenize.TokenInfo], index: int) -> int:
    """The index of the bracket that closes the one at `index`."""
    depth = 0
    for at in range(index, len(tokens)):
        if tokens[at].string in "([{":
            depth += 1
        elif tokens[at].string in ")]}":
            depth -= 1
            if depth == 0:
                return at
    raise ValueError(f"line {tokens[index].start[0]}: a bracket that never closes")


def _dotted(tokens: list[tokenize.TokenInfo], index: int) -> str | None:
    if index + 2 < len(tokens) and tokens[index + 1].string == "." \
            and tokens[index + 2].type == tokenize.NAME:
        return f"{tokens[index].string}.{tokens[index + 2].string}"
    return None


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for source, target in PAIRS:
        wanted = to_sync((ROOT / source).read_text(), source)
        path = ROOT / target
        if path.exists() and path.read_text() == wanted:
            continue
        stale.append(target)
        if not check:
            path.write_text(wanted)
            print(f"wrote {target} from {source}")
    if check and stale:
        print(f"out of date: {', '.join(stale)}; run scripts/async_to_sync.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

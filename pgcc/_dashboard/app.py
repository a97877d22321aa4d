"""The dashboard's web application: a few server-rendered pages and two forms.

Security: with a token, every request needs it (the `Authorization: Bearer`
header, or the cookie the login form sets). Every POST carries a CSRF token
derived from the browser's session cookie with a per-process secret, and a
cross-site Origin is refused. Templates are autoescaped.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import psycopg
from jinja2 import Environment, PackageLoader, select_autoescape
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from pgcc import _periodic as periodic
from pgcc._queries import for_schema

STATES = ("queued", "running", "done", "failed", "dead", "cancelled")
PAGE_SIZE = 50
SESSION_COOKIE = "pgcc_session"
AUTH_COOKIE = "pgcc_auth"
MAX_NAME = 200


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or name to bind) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class Settings:
    schema: str
    token: str | None = None
    secret: bytes = b""
    page_size: int = PAGE_SIZE

    def __post_init__(self) -> None:
        if not self.secret:
            self.secret = secrets.token_bytes(32)

    def csrf_for(self, session: str) -> str:
        return hmac.new(self.secret, b"csrf:" + session.encode(), hashlib.sha256).hexdigest()

    def auth_cookie(self) -> str:
        assert self.token is not None
        return hmac.new(self.secret, b"auth:" + self.token.encode(), hashlib.sha256).hexdigest()


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {int(seconds % 60)}s"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60)}m"
    return f"{int(seconds // 86400)}d {int(seconds % 86400 // 3600)}h"


def _time(value: datetime.datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _iso_time(value: str | None) -> str:
    """An ISO 8601 time (as the periodic listing gives it), shown like `time`."""
    return "" if value is None else _time(datetime.datetime.fromisoformat(value))


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("pgcc._dashboard", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters["duration"] = _duration
    env.filters["time"] = _time
    env.filters["iso_time"] = _iso_time
    env.filters["json"] = _json
    return env


class BadInput(ValueError):
    pass


def _filter(request: Request, name: str) -> str | None:
    value = request.query_params.get(name, "").strip()
    if not value:
        return None
    if len(value) > MAX_NAME or not value.isprintable():
        raise BadInput(f"{name}: at most {MAX_NAME} printable characters")
    if name == "state" and value not in STATES:
        raise BadInput(f"state: one of {', '.join(STATES)}")
    return value


def _cursor(request: Request, name: str) -> int | None:
    value = request.query_params.get(name, "").strip()
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        raise BadInput(f"{name}: a job id") from None
    if not 0 <= number < 2**63:
        raise BadInput(f"{name}: a job id")
    return number


def create_app(pool: ConnectionPool[Any], settings: Settings) -> Starlette:
    """The dashboard over `pool` (connections to the environment's database)."""
    queries = for_schema(settings.schema, "dashboard.sql")
    templates = _environment()

    def fetch_now(name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(queries[name], params)
            rows: list[dict[str, Any]] = cur.fetchall()
            return rows

    async def fetch(name: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return await run_in_threadpool(fetch_now, name, params or {})

    def session_of(request: Request) -> tuple[str, bool]:
        session = request.cookies.get(SESSION_COOKIE, "")
        if len(session) == 43 and session.replace("-", "").replace("_", "").isalnum():
            return session, False
        return secrets.token_urlsafe(32), True

    def render(request: Request, template: str, status_code: int = 200,
               **context: Any) -> HTMLResponse:
        session, new = session_of(request)
        html = templates.get_template(template).render(
            csrf=settings.csrf_for(session), schema=settings.schema,
            authenticated=settings.token is not None, states=STATES, **context)
        response = HTMLResponse(html, status_code=status_code)
        _secure_headers(response)
        if new:
            response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict")
        return response

    def refuse(request: Request, status_code: int, message: str) -> HTMLResponse:
        return render(request, "error.html", status_code=status_code, message=message)

    def authorized(request: Request) -> bool:
        if settings.token is None:
            return True
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer ") and hmac.compare_digest(
                header[7:].encode(), settings.token.encode()):
            return True
        cookie = request.cookies.get(AUTH_COOKIE, "")
        return hmac.compare_digest(cookie.encode(), settings.auth_cookie().encode())

    def same_origin(request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is None or origin == "null":
            # A browser sends Origin with every cross-site POST; "null" comes
            # from sandboxed or privacy-minded contexts: the CSRF token decides.
            return origin is None
        return urlsplit(origin).netloc == request.headers.get("host", "")

    async def check_form(request: Request) -> tuple[dict[str, str], HTMLResponse | None]:
        form = await _form(request)
        session = request.cookies.get(SESSION_COOKIE, "")
        if not same_origin(request):
            return form, refuse(request, 403, "refused: the form was sent from another site")
        expected = settings.csrf_for(session) if session else ""
        if not session or not hmac.compare_digest(form.get("csrf", "").encode(),
                                                  expected.encode()):
            return form, refuse(request, 403, "refused: the form's CSRF token is missing or "
                                "stale; reload the page and try again")
        return form, None

    def guarded(handler: Any, open_to_all: bool = False) -> Any:
        async def endpoint(request: Request) -> Response:
            if not open_to_all and not authorized(request):
                if request.method == "GET":
                    return RedirectResponse("/login?" + urlencode({"next": request.url.path}),
                                            status_code=303)
                return refuse(request, 401, "refused: log in with the dashboard's token")
            try:
                result: Response = await handler(request)
            except BadInput as exc:
                return refuse(request, 400, f"bad input: {exc}")
            return result
        return endpoint

    def schedules_now() -> list[dict[str, Any]]:
        with pool.connection() as conn:
            return periodic.collect(conn, settings.schema)

    async def overview(request: Request) -> Response:
        counts = {row["state"]: row["jobs"] for row in await fetch("counts")}
        return render(request, "overview.html", page="overview",
                      counts=[(state, counts.get(state, 0)) for state in STATES],
                      total=sum(counts.values()), running=await fetch("running"),
                      queues=await fetch("queues"), workers=await fetch("workers"),
                      leader=next(iter(await fetch("leader")), None),
                      periodic=await run_in_threadpool(schedules_now),
                      paused=await fetch("paused_queues"))

    async def jobs(request: Request) -> Response:
        filters = {name: _filter(request, name) for name in ("state", "task", "queue")}
        before = _cursor(request, "before")
        after = _cursor(request, "after")
        limit = settings.page_size
        if after is not None:
            newer = await fetch("newer_page", {**filters, "after": after, "limit": limit})
            before = newer[-1]["id"] + 1 if newer else None
        rows = await fetch("jobs_page", {**filters, "before": before, "limit": limit + 1})
        more = len(rows) > limit
        rows = rows[:limit]
        kept = {k: v for k, v in filters.items() if v is not None}
        older_link = (f"/jobs?{urlencode({**kept, 'before': rows[-1]['id']})}"
                      if more and rows else None)
        newer_link = (f"/jobs?{urlencode({**kept, 'after': rows[0]['id']})}"
                      if rows and before is not None else None)
        return render(request, "jobs.html", page="jobs", jobs=rows, filters=filters,
                      older_link=older_link, newer_link=newer_link)

    async def job(request: Request) -> Response:
        job_id = _job_id(request)
        rows = await fetch("job", {"job_id": job_id})
        if not rows:
            return refuse(request, 404, f"no job {job_id}")
        try:
            steps: list[dict[str, Any]] | None = await fetch("steps", {"job_id": job_id})
        except psycopg.errors.InsufficientPrivilege:
            # A role granted before steps existed (see `pgcc grant`): the job
            # is still shown.
            steps = None
        return render(request, "job.html", page="jobs", job=rows[0], steps=steps,
                      message=request.query_params.get("done"))

    async def act(request: Request) -> Response:
        job_id = _job_id(request)
        action = request.path_params["action"]
        _form, refused = await check_form(request)
        if refused is not None:
            return refused
        try:
            changed = (await fetch(f"{action}_job", {"job_id": job_id}))[0]["changed"]
        except psycopg.errors.InsufficientPrivilege:
            return refuse(request, 403, f"refused by the database: the dashboard's role may "
                          f"not call {action}_job (see `pgcc grant`)")
        outcome = f"{action}" if changed else f"{action}-refused"
        if action == "cancel" and changed:
            # A running job is stopped by its worker within seconds.
            rows = await fetch("job", {"job_id": job_id})
            if rows and rows[0]["state"] == "running":
                outcome = "cancel-requested"
        return RedirectResponse(f"/jobs/{job_id}?done={outcome}", status_code=303)

    async def login(request: Request) -> Response:
        target = request.query_params.get("next", "/")
        if not target.startswith("/") or target.startswith(("//", "/\\")):
            target = "/"
        if request.method == "GET":
            return render(request, "login.html", page="login", next=target, failed=False)
        form, refused = await check_form(request)
        if refused is not None:
            return refused
        if settings.token is None or not hmac.compare_digest(
                form.get("token", "").encode(), settings.token.encode()):
            return render(request, "login.html", status_code=401, page="login", next=target,
                          failed=True)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(AUTH_COOKIE, settings.auth_cookie(), httponly=True,
                            samesite="strict")
        return response

    routes = [
        Route("/", guarded(overview)),
        Route("/jobs", guarded(jobs)),
        Route("/jobs/{job_id}", guarded(job)),
        Route("/jobs/{job_id}/{action:str}", guarded(act), methods=["POST"]),
        Route("/login", guarded(login, open_to_all=True), methods=["GET", "POST"]),
    ]
    return Starlette(routes=routes)


async def _form(request: Request) -> dict[str, str]:
    """A url-encoded form's fields (the only kind the pages send; read here
    rather than with Starlette's parser, which needs python-multipart)."""
    body = await request.body()
    if len(body) > 64 * 1024:
        raise BadInput("form too large")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise BadInput("form not readable") from None
    return {key: values[0] for key, values in fields.items()}


def _job_id(request: Request) -> int:
    raw = request.path_params["job_id"]
    action = request.path_params.get("action")
    if action is not None and action not in ("retry", "cancel"):
        raise BadInput(f"unknown action {action!r}: retry or cancel")
    try:
        number = int(raw)
    except ValueError:
        raise BadInput(f"job id {raw!r} is not a number") from None
    if not 0 <= number < 2**63:
        raise BadInput(f"job id {raw!r} is out of range")
    return number


def _secure_headers(response: Response) -> None:
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"

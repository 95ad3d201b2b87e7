"""The dashboard's web application (Starlette): pages, live streams, login, and the supervisor's actions.

Pages are rendered on the server from Jinja2 templates with autoescaping, so
whatever a student, session or assistant is called reaches the browser as
text. A live stream (Server-Sent Events) sends the same page parts again,
rendered from the hub's latest figures, whenever the shared poll has read
them (``producers.dashboard.live``). A Content-Security-Policy allows only the
dashboard's own script and style files: no inline script, handler or style.

Actions go through the existing tasks (``AssignmentClient``): only users with
the admin role may send them, every form carries the session's CSRF token,
and every action (and every refused one) is logged with who asked.
"""

from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable
from urllib.parse import quote, urlencode

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import anyio.to_thread
import jinja2

from callqueue.config import Settings
from callqueue.producers.client import AssignmentClient
from callqueue.producers.dashboard import render
from callqueue.producers.dashboard.auth import Logins, User, csrf_ok, csrf_token
from callqueue.producers.dashboard.live import CLOSED, OPEN, Hub, ListKey, Reader, SessionKey, SessionsView
from callqueue.workers.eventlog import log_event
from callqueue.workers.exceptions import CallqueueError, Rejected
from callqueue.workers.store import AssignmentStore

HERE = Path(__file__).parent
KEEPALIVE_SECONDS = 15.0
MAX_SEARCH = 128
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                 b"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
Client = Callable[[], AssignmentClient]


class SecurityHeaders:
    """Adds the security headers to every response (pure ASGI, so live streams pass untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers if scope["type"] == "http" else send)


@dataclass
class Dashboard:
    """The parts a request needs: settings, logins, the hub, templates, and a way to reach the tasks."""

    settings: Settings
    logins: Logins
    hub: Hub
    templates: Jinja2Templates
    client: Client

    # -- pages -----------------------------------------------------------------

    async def sessions_page(self, request: Request) -> Response:
        user = self.logins.current(request)
        if user is None:
            return self.login_page(request, status_code=401)
        key = list_key(request)
        view: SessionsView = await self.hub.get(key)
        live = f"/live/sessions?{urlencode(key_query(key))}" if key.status == OPEN else ""
        return self.page(request, "sessions.html", user, {"view": view, "key": key, "live_url": live})

    async def session_page(self, request: Request) -> Response:
        user = self.logins.current(request)
        if user is None:
            return self.login_page(request, status_code=401)
        session_id = request.query_params.get("id", "")
        detail = await self.hub.get(SessionKey(session_id)) if session_id else None
        if detail is None:
            return self.page(request, "missing.html", user, {"session_id": session_id}, status_code=404)
        return self.page(request, "session.html", user, {
            "detail": detail, "live_url": f"/live/session?id={quote(session_id, safe='')}"})

    def page(self, request: Request, template: str, user: User, context: dict[str, Any],
             status_code: int = 200) -> Response:
        flash = request.session.pop("flash", None)
        return self.templates.TemplateResponse(request, template, {
            **context, "user": user, "csrf": csrf_token(request), "flash": flash,
            "open_access": self.logins.open_access, **render.helpers(self.settings)}, status_code=status_code)

    # -- live streams ------------------------------------------------------------

    async def sessions_stream(self, request: Request) -> Response:
        user = self.logins.current(request)
        if user is None:
            return PlainTextResponse("log in first", status_code=401)
        key = list_key(request)
        return self.stream(request, key, lambda view: {"list": self.part(request, user, "parts/sessions_table.html",
                                                                          {"view": view, "key": key})})

    async def session_stream(self, request: Request) -> Response:
        user = self.logins.current(request)
        if user is None:
            return PlainTextResponse("log in first", status_code=401)
        key = SessionKey(request.query_params.get("id", ""))
        return self.stream(request, key, lambda detail: {} if detail is None else {
            region: self.part(request, user, f"parts/{region}.html", {"detail": detail})
            for region in render.SESSION_REGIONS})

    def stream(self, request: Request, key: Any, parts: Callable[[Any], dict[str, str]]) -> Response:
        async def events() -> AsyncIterator[str]:
            async with self.hub.watching(key) as watch:
                version = -1
                while True:
                    newer, view = await watch.next(version, KEEPALIVE_SECONDS)
                    if newer == version or view is None:
                        yield ": still here\n\n"
                        continue
                    version = newer
                    yield f"event: update\ndata: {json.dumps(parts(view))}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"X-Accel-Buffering": "no"})

    def part(self, request: Request, user: User, template: str, context: dict[str, Any]) -> str:
        return self.templates.get_template(template).render({
            **context, "user": user, "csrf": csrf_token(request), "request": request,
            **render.helpers(self.settings)})

    # -- login ---------------------------------------------------------------------

    def login_page(self, request: Request, status_code: int = 200, failed: bool = False) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        next_url = request.query_params.get("next") if request.url.path == "/login" else target
        return self.templates.TemplateResponse(request, "login.html", {
            "csrf": csrf_token(request), "next": safe_next(next_url), "failed": failed},
            status_code=status_code, headers={"WWW-Authenticate": 'Form realm="callqueue dashboard"'}
            if status_code == 401 else None)

    async def login(self, request: Request) -> Response:
        form = await request.form()
        if not csrf_ok(request, form.get("csrf")):
            return PlainTextResponse("the form expired: reload the page", status_code=403)
        name = str(form.get("username", ""))[:MAX_SEARCH]
        user = self.logins.check(name, str(form.get("password", "")))
        if user is None:
            log_event("dashboard_login", user=name, ok=False)
            return self.login_page(request, status_code=401, failed=True)
        log_event("dashboard_login", user=user.name, role=user.role, ok=True)
        request.session.clear()
        request.session["user"] = user.name
        csrf_token(request)
        return RedirectResponse(safe_next(str(form.get("next", "/"))), status_code=303)

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        if csrf_ok(request, form.get("csrf")):
            request.session.clear()
        return RedirectResponse("/login", status_code=303)

    # -- actions -------------------------------------------------------------------------

    async def act(self, request: Request) -> Response:
        """One supervisor action (``/actions/{name}``): admin only, CSRF-checked, logged, through a task."""
        user = self.logins.current(request)
        if user is None:
            return PlainTextResponse("log in first", status_code=401)
        form = {key: str(value) for key, value in (await request.form()).items()}
        action = request.path_params["name"]
        fields = {key: form.get(key) for key in ("session_id", "assistant_id", "student_id")}
        if not user.may_act or not csrf_ok(request, form.get("csrf")) or action not in ACTIONS:
            reason = "read-only role" if not user.may_act else "unknown action" if action not in ACTIONS \
                else "missing or wrong CSRF token"
            log_event("dashboard_refused", user=user.name, role=user.role, action=action, reason=reason,
                      session=fields["session_id"], assistant=fields["assistant_id"], student=fields["student_id"])
            return self.page(request, "refused.html", user, {"reason": reason}, status_code=403)
        message = await ACTIONS[action](self, user, form)
        self.hub.refresh_soon()
        request.session["flash"] = message
        return RedirectResponse(f"/session?id={quote(form.get('session_id', ''), safe='')}", status_code=303)

    async def run_task(self, user: User, action: str, form: dict[str, str],
                       call: Callable[[AssignmentClient], Any], describe: Callable[[Any], str]) -> str:
        """Send the task from a worker thread; what came of it, in one sentence."""
        return await anyio.to_thread.run_sync(self.send_and_log, user, action, form, call, describe)

    def in_background(self, user: User, action: str, form: dict[str, str],
                      call: Callable[[AssignmentClient], Any], describe: Callable[[Any], str]) -> None:
        """A batch job (close, reopen) may take minutes: sent from a thread of its own, logged when it ends."""
        threading.Thread(target=self.send_and_log, args=(user, action, form, call, describe),
                         name=f"dashboard-{action}", daemon=True).start()

    def send_and_log(self, user: User, action: str, form: dict[str, str],
                     call: Callable[[AssignmentClient], Any], describe: Callable[[Any], str]) -> str:
        """Send the task, log who asked and what came of it, and say it in one sentence."""
        fields = {"session": form.get("session_id"), "assistant": form.get("assistant_id"),
                  "student": form.get("student_id")}
        try:
            with self.client() as client:
                result = call(client)
        except Rejected as exc:
            log_event("dashboard_action", user=user.name, role=user.role, action=action, code=exc.code, **fields)
            return f"refused: {exc.code}: {exc}"
        except CallqueueError as exc:
            log_event("dashboard_action", user=user.name, role=user.role, action=action,
                      error=type(exc).__name__, **fields)
            return f"failed: {type(exc).__name__}"
        log_event("dashboard_action", user=user.name, role=user.role, action=action, result=describe(result),
                  **fields)
        return describe(result)


async def _close(dashboard: Dashboard, user: User, form: dict[str, str]) -> str:
    session_id = form.get("session_id", "")
    log_event("dashboard_action", user=user.name, role=user.role, action="close", session=session_id,
              result="requested")
    dashboard.in_background(user, "close", form, lambda client: client.close_session(session_id),
                            lambda result: f"closed {session_id}: {result['closed_students']} students closed")
    return f"closing {session_id}: this page follows it"


async def _reopen(dashboard: Dashboard, user: User, form: dict[str, str]) -> str:
    session_id = form.get("session_id", "")
    log_event("dashboard_action", user=user.name, role=user.role, action="reopen", session=session_id,
              result="requested")
    dashboard.in_background(user, "reopen", form, lambda client: client.reopen_session(session_id),
                            lambda result: f"reopened {session_id}: {result['reopened_students']} students back")
    return f"reopening {session_id}: this page follows it"


async def _release_assistant(dashboard: Dashboard, user: User, form: dict[str, str]) -> str:
    session_id, assistant = form.get("session_id", ""), form.get("assistant_id", "")
    return await dashboard.run_task(
        user, "release_assistant", form, lambda client: client.release_assistant(session_id, assistant),
        lambda released: f"released {released} student(s) held by {assistant}")


async def _release_student(dashboard: Dashboard, user: User, form: dict[str, str]) -> str:
    session_id, assistant, student = form.get("session_id", ""), form.get("assistant_id", ""), form.get("student_id", "")
    try:
        token = int(form.get("assignment_token", ""))
    except ValueError:
        return "refused: invalid_argument: the assignment token is not a number"
    return await dashboard.run_task(
        user, "release_student", form, lambda client: client.release(session_id, student, assistant, token),
        lambda update: f"released student {student} (held by {assistant}) back to the pool")


ACTIONS: dict[str, Callable[[Dashboard, User, dict[str, str]], Awaitable[str]]] = {
    "close": _close,
    "reopen": _reopen,
    "release-assistant": _release_assistant,
    "release-student": _release_student,
}


def list_key(request: Request) -> ListKey:
    """The list view a request asks for (bad numbers and statuses fall back to the first open page)."""
    status = request.query_params.get("status", OPEN)
    try:
        page = max(1, min(100_000, int(request.query_params.get("page", "1"))))
    except ValueError:
        page = 1
    return ListKey(status if status in (OPEN, CLOSED) else OPEN, request.query_params.get("q", "")[:MAX_SEARCH], page)


def key_query(key: ListKey) -> dict[str, str]:
    return {"status": key.status, "q": key.search, "page": str(key.page)}


def safe_next(target: str | None) -> str:
    """Only a path on this site (never ``//host`` or a scheme) may follow a login."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


def create_app(settings: Settings, logins: Logins, store: AssignmentStore,
               client: Client | None = None, secret_key: str | None = None) -> Starlette:
    """The dashboard application; its hub starts and stops with it."""
    import secrets

    # Autoescaping on for every template: whatever a student or session is called is shown as text.
    templates = Jinja2Templates(env=jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                                                       autoescape=True))
    hub = Hub(Reader(store, settings), settings.dashboard_poll_seconds)
    dashboard = Dashboard(settings, logins, hub, templates, client or (lambda: AssignmentClient(settings)))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()

    app = Starlette(
        routes=[
            Route("/", dashboard.sessions_page),
            Route("/session", dashboard.session_page),
            Route("/live/sessions", dashboard.sessions_stream),
            Route("/live/session", dashboard.session_stream),
            Route("/login", dashboard.login_page, methods=["GET"]),
            Route("/login", dashboard.login, methods=["POST"]),
            Route("/logout", dashboard.logout, methods=["POST"]),
            Route("/actions/{name}", dashboard.act, methods=["POST"]),
            Route("/healthz", healthz),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        ],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(SessionMiddleware, secret_key=secret_key or secrets.token_urlsafe(32),
                       session_cookie="callqueue_dashboard", max_age=int(settings.dashboard_login_hours * 3600),
                       same_site="strict"),
        ],
        lifespan=lifespan,
    )
    app.state.hub = hub
    return app

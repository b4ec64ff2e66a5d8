"""The page (GET /), its event stream (GET /events) and the login form."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from loguru import logger
from sse_starlette import EventSourceResponse
from sse_starlette.sse import SendTimeoutError
from starlette.types import Receive, Scope, Send

from bot.config import redacted_dump
from server.events import SseClient
from server.logfiles import list_logs
from server.render import config_fields
from server.routes.common import RunnerDep, peer_of
from server.security import SESSION_COOKIE, SESSION_MAX_AGE, client_of, require_auth, require_auth_page

PING_SECONDS = 10  # heartbeat comment so proxies and the browser see a live stream
SEND_TIMEOUT_SECONDS = 5  # a client that cannot take a write for this long is cut off
SHUTDOWN_GRACE_SECONDS = 2  # on SIGTERM / Ctrl-C: streams end with a proper last chunk, then the bot stops

page_router = APIRouter(
    tags=["dashboard"], dependencies=[Depends(require_auth_page)], include_in_schema=False
)
stream_router = APIRouter(tags=["dashboard"], dependencies=[Depends(require_auth)])
login_router = APIRouter(tags=["dashboard"], include_in_schema=False)


class DashboardStream(EventSourceResponse):
    """An SSE response that ends quietly when its client stops reading, and then resets the connection: a
    plain close would hold the socket (and the megabytes queued in it) until a reader that never reads drains
    it."""

    client: SseClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            logger.info("dashboard stream {} cut off: not reading", scope.get("client"))
            scope["app"].state.connections.abort(scope.get("client"))
        else:
            if self.client is not None and self.client.dropped:
                scope["app"].state.connections.abort(scope.get("client"))


@page_router.get("/", response_class=HTMLResponse)
async def dashboard(request: Request, runner: RunnerDep) -> Response:
    renderer = request.app.state.renderer
    logs = await anyio.to_thread.run_sync(list_logs, runner.log_dir)  # directory listing: off the loop
    return request.app.state.templates.TemplateResponse(
        request,
        "dashboard.html",
        {
            "fragments": renderer(runner.snapshot()),
            "config_fields": config_fields(redacted_dump(runner.config), redacted_dump(runner.file_config)),
            "token_enabled": request.app.state.security.enabled,
            "trading_tz": runner.config.risk.trading_day_tz,  # one zone on screen: the trading day's
            "logs": logs,
        },
        headers={"Cache-Control": "no-store"},
    )


@stream_router.get("/events", response_class=EventSourceResponse)
async def events(request: Request) -> EventSourceResponse:
    """Named events, one per panel (HTML fragments), plus `chart` (JSON); only changed panels are sent."""
    broadcaster = request.app.state.broadcaster
    limit = request.app.state.max_streams
    if broadcaster.client_count >= limit:
        raise HTTPException(
            503,
            f"too many dashboard streams open ({limit}); close a tab and retry",
            headers={"Retry-After": "5"},
        )
    client = broadcaster.subscribe(peer_of(request))
    shutting_down = anyio.Event()  # set by sse-starlette when the server is asked to exit

    async def end_on_shutdown() -> None:
        await shutting_down.wait()
        broadcaster.end(client, "server shutting down")

    response = DashboardStream(
        broadcaster.stream(client),
        ping=PING_SECONDS,
        send_timeout=SEND_TIMEOUT_SECONDS,
        headers={"Cache-Control": "no-store"},
        data_sender_callable=end_on_shutdown,
        shutdown_event=shutting_down,
        shutdown_grace_period=SHUTDOWN_GRACE_SECONDS,
    )
    response.client = client
    return response


@login_router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> Response:
    if not request.app.state.security.enabled:
        return RedirectResponse("/", status_code=303)
    return request.app.state.templates.TemplateResponse(request, "login.html", {"error": None})


@login_router.post("/login", response_class=HTMLResponse)
async def login(request: Request, token: Annotated[str, Form(max_length=1024)] = "") -> Response:
    security = request.app.state.security
    if not security.enabled:
        return RedirectResponse("/", status_code=303)
    client = client_of(request.client)
    wait = security.throttle.retry_after(client)
    if wait is not None:
        return request.app.state.templates.TemplateResponse(
            request,
            "login.html",
            {"error": f"too many wrong tokens; try again in {wait} s"},
            status_code=429,
            headers={"Retry-After": str(wait)},
        )
    if not security.token_matches(token):
        security.throttle.failed(client)
        logger.warning("login refused from {}", peer_of(request))
        return request.app.state.templates.TemplateResponse(
            request, "login.html", {"error": "wrong token"}, status_code=401
        )
    logger.info("login from {}", peer_of(request))
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        security.new_session(),
        max_age=SESSION_MAX_AGE,
        httponly=True,
        samesite="strict",
        path="/",
        secure=request.url.scheme == "https",
    )
    return response


@login_router.post("/logout")
async def logout(request: Request) -> Response:
    """Ends the session for good (the revocation is saved, so a restart does not bring it back). Needs the
    session it ends: a stranger's POST cannot churn the list."""
    security = request.app.state.security
    if security.enabled:
        if not security.end_session(request.cookies.get(SESSION_COOKIE)):
            raise HTTPException(401, "no valid session to end")
        try:
            await anyio.to_thread.run_sync(security.revoked.save)
        except OSError as e:
            logger.error("could not save the logout ({}); it holds until this server stops", e)
        logger.info("logout from {}", peer_of(request))
    response = RedirectResponse("/login" if security.enabled else "/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response

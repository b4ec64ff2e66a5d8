"""The FastAPI app: the control plane and the dashboard over one BotService living in app.state.

The lifespan starts the service (in sim mode the venue too) and the dashboard broadcaster on uvicorn's own
loop, and stops both on shutdown (Ctrl-C / SIGTERM), so the bot and the web share one asyncio loop.
"""

from __future__ import annotations

import resource
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from loguru import logger
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.config import AppConfig
from bot.infra.logging_runtime import register_secret
from server.body_limit import BodyLimit
from server.connections import ConnectionGuard, connection_cap
from server.events import Broadcaster
from server.metrics import build_registry
from server.render import FragmentRenderer, chart_payload, make_templates
from server.routes import config as config_routes
from server.routes import control, dashboard, history, logs, ops, research
from server.routes.common import runner_in
from server.security import AuthGuard, HostOriginGuard, Security

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PROJECT_ROOT / "templates"
STATIC_DIR = PROJECT_ROOT / "static"
NODE_MODULES = PROJECT_ROOT / "node_modules"
# URL under /static/vendor → folder inside node_modules (installed by `make js`, never committed)
VENDOR_DIRS = {
    "htmx": "htmx.org/dist",
    "htmx-ext-sse": "htmx-ext-sse/dist",
    "uplot": "uplot/dist",
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)


class SecurityHeaders:
    """Every response: no framing (a hidden frame must not click Kill), no sniffing, nothing off-site."""

    _HEADERS = [
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"content-security-policy", CSP.encode()),
    ]

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self._HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _missing_vendor(url: str) -> ASGIApp:
    answer = JSONResponse(
        {"detail": f"the dashboard's {url} scripts are not installed: run `make js` (npm ci) and restart"},
        status_code=404,
    )

    async def missing(scope: Scope, receive: Receive, send: Send) -> None:
        await answer(scope, receive, send)

    return missing


def _mount_static(app: FastAPI, security: Security) -> None:
    # vendor mounts first: "/static" would otherwise swallow "/static/vendor/..."
    for url, folder in VENDOR_DIRS.items():
        path = NODE_MODULES / folder
        if not path.is_dir():
            logger.warning("{} missing: run `make js` (npm ci) so the dashboard has its scripts", path)
            app.mount(f"/static/vendor/{url}", _missing_vendor(url))
            continue
        app.mount(f"/static/vendor/{url}", AuthGuard(StaticFiles(directory=path, check_dir=False), security))
    app.mount("/static", AuthGuard(StaticFiles(directory=STATIC_DIR, check_dir=False), security))


def create_app(
    cfg: AppConfig,
    *,
    log_dir: Path,
    token: str | None = None,
    service: Any | None = None,
    allowed_hosts: Sequence[str] = (),
    venue_url: str | None = None,
) -> FastAPI:
    """The app over `service` (a BotService; built from cfg when None). The lifespan starts and stops it.
    `token` (STST_TOKEN) protects every endpoint but /healthz and /login; `allowed_hosts` adds Host header
    names besides the loopback ones and cfg.server.host (for a non-loopback bind)."""
    if service is None:
        from bot.service import BotService  # the real bot; imported here so tests can pass their own

        service = BotService(cfg, log_dir=Path(log_dir), venue_url=venue_url)
    if token:
        register_secret(token)  # masked in the runtime log should it ever reach a line
    security = Security.build(
        token,
        ports=[cfg.server.port],
        hosts=[cfg.server.host, *allowed_hosts],
        revoked_file=Path(log_dir) / "revoked-sessions.json",
    )
    templates = make_templates(TEMPLATES_DIR)
    renderer = FragmentRenderer(templates)
    broadcaster = Broadcaster(
        snapshot=lambda: runner_in(service).snapshot(),
        render=renderer,
        chart=chart_payload,
        hz=cfg.server.sse_hz,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await service.start()
        except Exception as e:
            logger.error("the bot could not start: {}", e)
            try:  # release what did start (the sim venue, sockets) before the process exits
                await service.stop()
            except Exception as cleanup:
                logger.warning("cleanup after the failed start: {!r}", cleanup)
            raise
        broadcaster.start()
        logger.info("control plane up ({} mode, auth {})", cfg.env, "on" if security.enabled else "off")
        try:
            yield
        finally:
            await broadcaster.stop()
            await service.stop()
            logger.info("control plane down")

    app = FastAPI(
        title="stall_then_strike",
        summary="Control plane and dashboard of the stall-then-strike market maker (bitFlyer FX_BTC_JPY)",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # the docs UI would load from a CDN; /openapi.json is served behind auth
    )
    app.state.service = service
    app.state.security = security
    app.state.templates = templates
    app.state.renderer = renderer
    app.state.broadcaster = broadcaster
    app.state.max_streams = cfg.server.max_streams
    soft_limit, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    app.state.connections = ConnectionGuard(
        connection_cap(cfg.server.max_connections, soft_limit), cfg.server.header_timeout_sec
    )
    app.state.metrics_registry = build_registry(service, broadcaster)

    app.include_router(ops.public_router)
    app.include_router(dashboard.login_router)
    app.include_router(dashboard.page_router)
    app.include_router(dashboard.stream_router)
    app.include_router(control.router)
    app.include_router(config_routes.router)
    app.include_router(logs.router)
    app.include_router(history.router)
    app.include_router(history.page_router)
    app.include_router(research.router)
    app.include_router(research.page_router)
    app.include_router(ops.router)
    _mount_static(app, security)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.opt(exception=exc).error("{} {} failed", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, status_code=500)

    # added last = outermost: Host/Origin refusals happen before any route runs, and they carry the headers
    # too
    app.add_middleware(BodyLimit)
    app.add_middleware(HostOriginGuard, security=security)
    app.add_middleware(SecurityHeaders)
    return app

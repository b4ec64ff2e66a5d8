"""SPEC §12: who may talk to the control plane.

- Host header must name this app (loopback names or a configured host) — a DNS-rebinding page cannot reach us.
- State-changing requests from another origin (a page in the user's browser posting to 127.0.0.1) are refused;
  no Origin and no Referer means a script such as curl, which cannot ride the user's cookies, so it may pass.
- With a token configured, every endpoint but /healthz and the login page needs the Bearer token or the session
  cookie set by POST /login. Tokens are compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fastapi import HTTPException, Request
from loguru import logger
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

SESSION_COOKIE = "stst_session"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SESSION_MAX_AGE = 7 * 24 * 3600   # seconds a login lasts
_MAX_REVOKED = 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}


def is_loopback_bind(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _normalise_name(host: str) -> str:
    host = host.strip().lower()
    if ":" in host and not host.startswith("["):  # a bare IPv6 literal as configured: bracket it as in a URL
        host = f"[{host}]"
    return host


def split_host_header(value: str) -> tuple[str, int | None] | None:
    """'127.0.0.1:8000' → ('127.0.0.1', 8000); '[::1]:80' → ('[::1]', 80); 'localhost' → ('localhost', None).
    None when malformed."""
    value = value.strip().lower()
    if not value or any(c in value for c in "/@?#\\ "):
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[: end + 1], value[end + 1:]
    else:
        name, _, port_s = value.partition(":")
        rest = f":{port_s}" if port_s or value.endswith(":") else ""
    if not rest:
        return name, None
    if not rest.startswith(":") or not rest[1:].isdigit():
        return None
    return name, int(rest[1:])


@dataclass
class Security:
    token: str | None
    ports: frozenset[int]                          # ports this app is reached on (configured and bound)
    extra_hosts: frozenset[str] = frozenset()      # the configured bind host, --allowed-host names
    _revoked: OrderedDict[str, None] = field(default_factory=OrderedDict)   # logged-out sessions

    @classmethod
    def build(cls, token: str | None, ports: Iterable[int], hosts: Iterable[str]) -> Security:
        names = frozenset(_normalise_name(h) for h in hosts if h and h.strip())
        return cls(token=token or None, ports=frozenset(p for p in ports if p), extra_hosts=names)

    # ---- Host / Origin -------------------------------------------------------------------------------------
    def host_allowed(self, host_header: str, bound_port: int | None, scheme: str = "http") -> bool:
        parsed = split_host_header(host_header)
        if parsed is None:
            return False
        name, port = parsed
        if name not in LOOPBACK_NAMES and name not in self.extra_hosts:
            return False
        ports = self.ports | ({bound_port} if bound_port else set())
        return (port if port is not None else _DEFAULT_PORTS.get(scheme, 80)) in ports

    def origin_allowed(self, url: str, bound_port: int | None) -> bool:
        """An Origin or Referer is ours when its scheme is http(s) and its host:port is one we answer on."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return False
        if parts.scheme not in _DEFAULT_PORTS or not parts.netloc or "@" in parts.netloc:
            return False
        return self.host_allowed(parts.netloc, bound_port, parts.scheme)

    # ---- authentication ------------------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return self.token is not None

    def token_matches(self, candidate: str) -> bool:
        if self.token is None:
            return False
        return hmac.compare_digest(candidate.encode("utf-8"), self.token.encode("utf-8"))

    def new_session(self, now: float | None = None) -> str:
        """A signed session value: `<issued>.<nonce>.<hmac(token, issued|nonce)>`. It holds no secret, survives a
        restart (so open dashboards reconnect), expires after SESSION_MAX_AGE and dies when the token changes."""
        issued = int(time.time() if now is None else now)
        nonce = secrets.token_urlsafe(12)
        return f"{issued}.{nonce}.{self._sign(issued, nonce)}"

    def end_session(self, value: str | None) -> None:
        if value:
            self._revoked[value] = None
            while len(self._revoked) > _MAX_REVOKED:
                self._revoked.popitem(last=False)

    def session_valid(self, value: str, now: float | None = None) -> bool:
        if self.token is None or value in self._revoked:
            return False
        issued_s, _, rest = value.partition(".")
        nonce, _, sig = rest.partition(".")
        if not issued_s.isdigit() or not nonce or not sig:
            return False
        age = (time.time() if now is None else now) - int(issued_s)
        if not -60 <= age <= SESSION_MAX_AGE:
            return False
        return hmac.compare_digest(sig, self._sign(int(issued_s), nonce))

    def _sign(self, issued: int, nonce: str) -> str:
        assert self.token is not None
        return hmac.new(self.token.encode(), f"stst-session|{issued}|{nonce}".encode(), hashlib.sha256).hexdigest()

    def authenticated(self, headers: Headers, cookies: dict[str, str]) -> bool:
        if self.token is None:
            return True
        auth = headers.get("authorization", "")
        scheme, _, credentials = auth.partition(" ")
        if scheme.lower() == "bearer" and credentials and self.token_matches(credentials.strip()):
            return True
        session = cookies.get(SESSION_COOKIE)
        return bool(session) and self.session_valid(session)


def _security(request: Request) -> Security:
    return request.app.state.security


def require_auth(request: Request) -> None:
    """Router dependency for the API: 401 unless the Bearer token or the session cookie is presented."""
    if not _security(request).authenticated(request.headers, request.cookies):
        raise HTTPException(401, "authentication required", headers={"WWW-Authenticate": "Bearer"})


def require_auth_page(request: Request) -> None:
    """Router dependency for pages: a browser without a session is sent to the login form."""
    if not _security(request).authenticated(request.headers, request.cookies):
        raise HTTPException(303, "login required", headers={"Location": "/login"})


class HostOriginGuard:
    """ASGI middleware in front of everything (routes and static mounts): unknown Host → 400, cross-origin
    state-changing request → 403. Nothing behind it runs for a refused request."""

    def __init__(self, app: ASGIApp, security: Security) -> None:
        self.app = app
        self.security = security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        server = scope.get("server")
        bound_port = server[1] if server and len(server) > 1 else None
        scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
        host = headers.get("host", "")
        if not self.security.host_allowed(host, bound_port, scheme):
            logger.warning("refused request with unknown Host header {!r} to {}", host[:100], scope.get("path"))
            await JSONResponse(
                {"detail": "unknown Host header (a name this server was not started for: see --allowed-host)"},
                status_code=400,
            )(scope, receive, send)
            return
        if scope["type"] == "http" and scope["method"] in STATE_CHANGING_METHODS:
            origin = headers.get("origin")
            source = origin if origin is not None else headers.get("referer")
            if source is not None and not self.security.origin_allowed(source, bound_port):
                logger.warning(
                    "refused cross-origin {} {} from origin {!r}", scope["method"], scope["path"], source[:200]
                )
                await JSONResponse({"detail": "cross-origin request refused"}, status_code=403)(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)


class AuthGuard:
    """Wraps a mounted ASGI app (static files) with the same token/cookie check as the routers."""

    def __init__(self, app: ASGIApp, security: Security) -> None:
        self.app = app
        self.security = security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            if not self.security.authenticated(request.headers, request.cookies):
                await JSONResponse(
                    {"detail": "authentication required"}, status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )(scope, receive, send)
                return
        await self.app(scope, receive, send)

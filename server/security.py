"""SPEC §12: who may talk to the control plane.

- Host header must name this app (loopback names or a configured host) — a DNS-rebinding page cannot reach us.
- State-changing requests from another origin (a page in the user's browser posting to 127.0.0.1) are refused;
  no Origin and no Referer means a script such as curl, which cannot ride the user's cookies, so it may pass.
- With a token configured, every endpoint but /healthz and the login page needs the Bearer token or the
  session cookie set by POST /login. Tokens are compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
import os
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import HTTPException, Request
from loguru import logger
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

SESSION_COOKIE = "stst_session"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SESSION_MAX_AGE = 7 * 24 * 3600  # seconds a login lasts
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
        name, rest = value[: end + 1], value[end + 1 :]
    else:
        name, _, port_s = value.partition(":")
        rest = f":{port_s}" if port_s or value.endswith(":") else ""
    if not rest:
        return name, None
    if not rest.startswith(":") or not rest[1:].isdigit():
        return None
    return name, int(rest[1:])


_SESSION_SHAPE = re.compile(r"^([0-9]{1,12})\.([A-Za-z0-9_-]{8,64})\.([0-9a-f]{64})$")
MIN_REMOTE_TOKEN = 16  # characters a token needs before the server listens beyond loopback


class FailureThrottle:
    """Wrong tokens per client: after `limit` failures inside `window` seconds the client is answered 429
    (without its guess being checked) until the oldest of them ages out. Bounded: the longest-quiet clients
    are forgotten."""

    def __init__(
        self,
        limit: int = 10,
        window: float = 60.0,
        clients: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window, self.clients, self.clock = limit, window, clients, clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> int | None:
        """Seconds the client must wait, or None when it may try."""
        times = self._failures.get(client)
        if times is None:
            return None
        now = self.clock()
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) < self.limit:
            return None
        return max(1, math.ceil(times[0] + self.window - now))

    def failed(self, client: str) -> None:
        times = self._failures.pop(client, None) or deque(maxlen=self.limit)
        times.append(self.clock())
        self._failures[client] = times
        while len(self._failures) > self.clients:
            self._failures.popitem(last=False)


class RevokedSessions:
    """Logged-out sessions, kept until they would have expired anyway and saved to a file so a logout survives
    a restart. Only a hash of each session's nonce is stored. Should the list ever overflow, every session
    issued until then is ended (`not_before`): failing closed means everyone logs in again, never that one
    revives."""

    def __init__(self, path: Path | None, capacity: int = 10_000) -> None:
        self.path, self.capacity = path, capacity
        self.not_before = 0
        self._revoked: dict[str, int] = {}  # sha256(nonce) → issued
        self._io = threading.Lock()
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self.not_before = int(data.get("not_before", 0))
            self._revoked = {str(k): int(v) for k, v in data.get("revoked", {}).items()}
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, AttributeError) as e:
            # unreadable: end every session issued so far rather than forget who logged out
            logger.error("revoked-sessions file {} unreadable ({}); every earlier session is ended", path, e)
            self.not_before = int(time.time())

    def revoked(self, issued: int, nonce: str) -> bool:
        return issued < self.not_before or _digest(nonce) in self._revoked

    def revoke(self, issued: int, nonce: str, now: float) -> None:
        horizon = now - SESSION_MAX_AGE
        self._revoked = {k: v for k, v in self._revoked.items() if v >= horizon}
        if len(self._revoked) >= self.capacity:
            self.not_before, self._revoked = int(now) + 1, {}
        else:
            self._revoked[_digest(nonce)] = issued

    def save(self) -> None:
        """Write the list atomically (call off the event loop)."""
        if self.path is None:
            return
        with self._io:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(
                json.dumps({"not_before": self.not_before, "revoked": dict(self._revoked)}), encoding="utf-8"
            )
            os.replace(tmp, self.path)


def _digest(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()


@dataclass
class Security:
    token: str | None
    ports: frozenset[int]  # ports this app is reached on (configured and bound)
    extra_hosts: frozenset[str] = frozenset()  # the configured bind host, --allowed-host names
    revoked: RevokedSessions = field(default_factory=lambda: RevokedSessions(None))
    throttle: FailureThrottle = field(default_factory=FailureThrottle)
    _last_malformed_log: float = -1e9

    @classmethod
    def build(
        cls, token: str | None, ports: Iterable[int], hosts: Iterable[str], revoked_file: Path | None = None
    ) -> Security:
        names = frozenset(_normalise_name(h) for h in hosts if h and h.strip())
        return cls(
            token=token or None,
            ports=frozenset(p for p in ports if p),
            extra_hosts=names,
            revoked=RevokedSessions(revoked_file),
        )

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
        return hmac.compare_digest(candidate.encode("utf-8", "replace"), self.token.encode("utf-8"))

    def new_session(self, now: float | None = None) -> str:
        """A signed session value: `<issued>.<nonce>.<hmac(token, issued|nonce)>`. It holds no secret,
        survives a restart (so open dashboards reconnect), expires after SESSION_MAX_AGE and dies when the
        token changes."""
        issued = int(time.time() if now is None else now)
        nonce = secrets.token_urlsafe(12)
        return f"{issued}.{nonce}.{self._sign(issued, nonce)}"

    def _parse(self, value: str, now: float | None) -> tuple[int, str] | None:
        """(issued, nonce) of a genuine, unexpired, not logged-out session value; None otherwise."""
        if self.token is None:
            return None
        m = _SESSION_SHAPE.match(value)
        if m is None:
            self._log_malformed()
            return None
        issued, nonce, sig = int(m.group(1)), m.group(2), m.group(3)
        age = (time.time() if now is None else now) - issued
        if not -60 <= age <= SESSION_MAX_AGE or not hmac.compare_digest(sig, self._sign(issued, nonce)):
            return None
        return None if self.revoked.revoked(issued, nonce) else (issued, nonce)

    def session_valid(self, value: str, now: float | None = None) -> bool:
        return self._parse(value, now) is not None

    def end_session(self, value: str | None, now: float | None = None) -> bool:
        """Revoke a genuine session (in memory; `revoked.save()` makes it last). False when it was not one."""
        parsed = self._parse(value or "", now)
        if parsed is None:
            return False
        self.revoked.revoke(*parsed, now=time.time() if now is None else now)
        return True

    def _sign(self, issued: int, nonce: str) -> str:
        assert self.token is not None
        return hmac.new(
            self.token.encode(), f"stst-session|{issued}|{nonce}".encode(), hashlib.sha256
        ).hexdigest()

    def _log_malformed(self) -> None:
        now = time.monotonic()
        if now - self._last_malformed_log >= 10:
            self._last_malformed_log = now
            logger.warning("malformed session cookie refused (repeats are logged at most every 10 s)")

    def authenticate(self, headers: Headers, cookies: dict[str, str], client: str) -> int | bool:
        """True when the request carries a valid session cookie or the Bearer token; an int (seconds to wait)
        when this client has guessed wrong too often; False otherwise. A wrong Bearer token counts as a
        guess."""
        if self.token is None:
            return True
        session = cookies.get(SESSION_COOKIE)
        if session and self.session_valid(session):
            return True
        auth = headers.get("authorization", "")
        scheme, _, credentials = auth.partition(" ")
        if scheme.lower() != "bearer" or not credentials:
            return False
        wait = self.throttle.retry_after(client)
        if wait is not None:
            return wait
        if self.token_matches(credentials.strip()):
            return True
        self.throttle.failed(client)
        return False

    def authenticated(self, headers: Headers, cookies: dict[str, str], client: str = "") -> bool:
        return self.authenticate(headers, cookies, client) is True


def client_of(scope_client: Any) -> str:
    """The throttle's key: the peer's address (its port changes with every connection)."""
    return str(scope_client[0]) if scope_client else "unknown"


def _security(request: Request) -> Security:
    return request.app.state.security


def _check(request: Request, refuse: HTTPException) -> None:
    result = _security(request).authenticate(request.headers, request.cookies, client_of(request.client))
    if result is True:
        return
    if result is not False:
        raise HTTPException(
            429, f"too many wrong tokens; retry in {result} s", headers={"Retry-After": str(result)}
        )
    raise refuse


def require_auth(request: Request) -> None:
    """Router dependency for the API: 401 unless the Bearer token or the session cookie is presented."""
    _check(request, HTTPException(401, "authentication required", headers={"WWW-Authenticate": "Bearer"}))


def require_auth_page(request: Request) -> None:
    """Router dependency for pages: a browser without a session is sent to the login form."""
    _check(request, HTTPException(303, "login required", headers={"Location": "/login"}))


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
            logger.warning(
                "refused request with unknown Host header {!r} to {}", host[:100], scope.get("path")
            )
            await JSONResponse(
                {
                    "detail": "unknown Host header "
                    "(a name this server was not started for: see --allowed-host)"
                },
                status_code=400,
            )(scope, receive, send)
            return
        if scope["type"] == "http" and scope["method"] in STATE_CHANGING_METHODS:
            origin = headers.get("origin")
            source = origin if origin is not None else headers.get("referer")
            if source is not None and not self.security.origin_allowed(source, bound_port):
                logger.warning(
                    "refused cross-origin {} {} from origin {!r}",
                    scope["method"],
                    scope["path"],
                    source[:200],
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
            result = self.security.authenticate(request.headers, request.cookies, client_of(request.client))
            if result is not True:
                if result is False:
                    answer = JSONResponse(
                        {"detail": "authentication required"},
                        status_code=401,
                        headers={"WWW-Authenticate": "Bearer"},
                    )
                else:
                    answer = JSONResponse(
                        {"detail": f"too many wrong tokens; retry in {result} s"},
                        status_code=429,
                        headers={"Retry-After": str(result)},
                    )
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)

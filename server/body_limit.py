"""Request bodies are bounded while they arrive, not after: a 100 MB PATCH is refused at its Content-Length or
at the first byte past the limit, and a body that trickles in is cut off at a deadline. The app behind sees a
body only when it is whole and within bounds."""

from __future__ import annotations

import anyio
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 64 * 1024  # the largest body any route takes (a config patch)
BODY_TIMEOUT_SEC = 10.0
_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS"})


class BodyLimit:
    def __init__(
        self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES, timeout: float = BODY_TIMEOUT_SEC
    ) -> None:
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _NO_BODY:
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or len(declared) > 18):
            await _refuse(scope, receive, send, 400, "Content-Length is not a number")
            return
        if declared is not None and int(declared) > self.max_bytes:
            await _refuse(scope, receive, send, 413, f"body over {self.max_bytes} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        with anyio.move_on_after(self.timeout) as deadline:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return  # the client left: nothing to answer
                body = message.get("body", b"")
                size += len(body)
                if size > self.max_bytes:
                    await _refuse(scope, receive, send, 413, f"body over {self.max_bytes} bytes")
                    return
                chunks.append(body)
                if not message.get("more_body", False):
                    break
        if deadline.cancelled_caught:
            await _refuse(scope, receive, send, 408, f"body not received within {self.timeout:.0f} s")
            return
        whole: Message | None = {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        async def replay() -> Message:
            nonlocal whole
            if whole is not None:
                message, whole = whole, None
                return message
            return await receive()

        await self.app(scope, replay, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    # "connection: close": the unread rest of the body must not be parsed as the next request
    await JSONResponse({"detail": detail}, status_code=status, headers={"connection": "close"})(
        scope, receive, send
    )

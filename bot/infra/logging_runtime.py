"""Runtime text log (loguru): `<log_dir>/runtime/app.log` with rotation/retention, plus stderr.

Both sinks are enqueued: the caller only formats and queues the line, loguru's writer thread does the I/O, so
a log call on the event loop never waits on the disk or a slow terminal.

Secrets: the runner registers the API key/secret and STST_TOKEN with `register_secret()` at start; every line
(message and rendered traceback) passes through `redact()` before it reaches a sink, and tracebacks are
rendered without local variable values (loguru's `diagnose`), which could hold a key.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from loguru import logger

RUNTIME_DIR = "runtime"  # the runtime log's folder under the log folder

MASK = "***"
LINE_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS Z} | {level: <8} | {name}:{function}:{line} | {message}"

# Values that look like credentials even when nobody registered them: `ACCESS-SIGN: abc`, `STST_TOKEN=abc`,
# `Authorization: Bearer abc`, `"api_secret": "abc"`. The key and separator are kept, the value is masked.
_CREDENTIAL_PATTERN = re.compile(
    r"(?i)(?<![a-z0-9])([a-z0-9_-]*?(?:access-key|access-sign|authorization|api[_-]?key|api[_-]?secret|secret"
    r"|token|password|passwd|signature)(?:[_-]?key)?)(?![a-z0-9])"
    r"(\s*[\"']?\s*[:=]\s*[\"']?\s*)(?:bearer\s+)?([^\s\"',;}\]]+)"
)

_secrets_lock = threading.Lock()
_secrets: set[str] = set()
_secret_pattern: re.Pattern[str] | None = None

_setup_lock = threading.Lock()
_handler_ids: list[int] = []


def register_secret(value: str | None) -> None:
    """Mask `value` wherever it appears in a runtime log line from now on. Empty values are ignored (masking
    "" is meaningless); anything else is masked, however short, since leaking it is worse than an odd log
    line."""
    global _secret_pattern
    if not value or not value.strip():
        return
    with _secrets_lock:
        _secrets.add(value)
        # longest first, so a secret that contains another is masked whole
        alternatives = sorted(_secrets, key=len, reverse=True)
        _secret_pattern = re.compile("|".join(re.escape(s) for s in alternatives))


def clear_secrets() -> None:
    """Forget every registered secret (tests; a process that rotates its keys re-registers them)."""
    global _secret_pattern
    with _secrets_lock:
        _secrets.clear()
        _secret_pattern = None


def redact(text: str) -> str:
    """`text` with every registered secret and every credential-looking `key: value` masked."""
    pattern = _secret_pattern  # one read: a concurrent register_secret swaps in a new compiled pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return _CREDENTIAL_PATTERN.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)


def _redact_record(record: Any) -> None:
    """Mask the message in place. Used as loguru's patcher, so every sink (also ones others add) gets it."""
    record["message"] = redact(record["message"])


def _format(record: Any) -> str:
    """loguru format callable: the message is redacted, and a traceback is rendered here (no variable values)
    and redacted too, instead of loguru's `{exception}` field, which would bypass `redact()`."""
    _redact_record(record)  # again: a patcher set by someone else may have replaced ours
    exc = record["exception"]
    if exc is not None and exc.type is not None:
        text = "".join(traceback.format_exception(exc.type, exc.value, exc.traceback))
        record["extra"]["_exc_text"] = "\n" + redact(text).rstrip("\n")
    else:
        record["extra"]["_exc_text"] = ""
    return LINE_FORMAT + "{extra[_exc_text]}\n"


REPEAT_INTERVAL_SEC = 10.0


class _StdlibToLoguru(logging.Handler):
    """Routes stdlib `logging` records (uvicorn, aiohttp, pybotters) into loguru, so they are redacted and
    land in app.log as well. A warning or error that repeats (asyncio's "socket.accept() out of system
    resource" under a flood, thousands a second) is written at most once per REPEAT_INTERVAL_SEC, with the
    count it stood for."""

    def __init__(self) -> None:
        super().__init__()
        self._repeats: dict[
            tuple[str, str], list[float]
        ] = {}  # (logger, message template) → [last, suppressed]

    def _suppressed(self, record: logging.LogRecord) -> int | None:
        """None: drop this record; otherwise how many like it were dropped since the last one written."""
        if record.levelno < logging.WARNING:
            return 0
        key = (record.name, str(record.msg)[:200])
        seen = self._repeats.get(key)
        now = time.monotonic()
        if seen is not None and now - seen[0] < REPEAT_INTERVAL_SEC:
            seen[1] += 1
            return None
        dropped = int(seen[1]) if seen is not None else 0
        if len(self._repeats) >= 1000:
            self._repeats.clear()
        self._repeats[key] = [now, 0]
        return dropped

    def emit(self, record: logging.LogRecord) -> None:
        dropped = self._suppressed(record)
        if dropped is None:
            return
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        message = record.getMessage()
        if dropped:
            message += f" (and {dropped} like it in the last {REPEAT_INTERVAL_SEC:.0f} s, not logged)"
        if record.exc_info and record.exc_info[0] is not None:
            message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        logger.patch(
            lambda r: r.update({"name": record.name, "function": record.funcName, "line": record.lineno})
        ).log(level, message)


def setup_runtime_logging(
    log_dir: Path,
    *,
    level: str = "INFO",
    rotation: str = "10 MB",
    retention: str = "7 days",
    stderr: bool = True,
    intercept_stdlib: bool = True,
) -> Path:
    """Send the runtime log to `<log_dir>/runtime/app.log` (rotated, old files removed after `retention`) and
    to stderr. Calling it again replaces the sinks it added before (no duplicates). Returns the app.log path.
    `intercept_stdlib` routes stdlib logging records at the root logger's level into the same sinks."""
    path = Path(log_dir) / RUNTIME_DIR / "app.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with _setup_lock:
        _remove_own_handlers()
        try:
            logger.remove(0)  # loguru's default stderr sink: ours replaces it
        except ValueError:
            pass
        logger.configure(patcher=_redact_record)
        common: dict[str, Any] = {
            "level": level,
            "format": _format,
            "enqueue": True,
            "backtrace": False,
            "diagnose": False,
        }
        _handler_ids.append(
            logger.add(str(path), rotation=rotation, retention=retention, encoding="utf-8", **common)
        )
        if stderr:
            _handler_ids.append(logger.add(sys.stderr, **common))
        if intercept_stdlib:
            root = logging.getLogger()
            if not any(isinstance(h, _StdlibToLoguru) for h in root.handlers):
                root.addHandler(_StdlibToLoguru())
    return path


def _remove_own_handlers() -> None:
    while _handler_ids:
        try:
            logger.remove(_handler_ids.pop())  # stops the handler's writer thread after draining it
        except ValueError:
            pass  # someone removed it already (logger.remove() with no id)


def shutdown_runtime_logging() -> None:
    """Drain and remove the sinks `setup_runtime_logging` added (call last on shutdown; tests)."""
    with _setup_lock:
        _remove_own_handlers()
        root = logging.getLogger()
        for h in [h for h in root.handlers if isinstance(h, _StdlibToLoguru)]:
            root.removeHandler(h)

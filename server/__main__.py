"""`python -m server [--config configs/base.yml] [--override configs/sim.yml] [--host 127.0.0.1] [--port
8000]`

Serves the dashboard and runs the bot on one uvicorn loop. Reads STST_TOKEN and BITFLYER_API_KEY/SECRET from
the environment or `.env`. Refuses to listen beyond this machine without a token (exit 2).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from types import FrameType

import uvicorn

from bot.config import ConfigError, load_app_config
from bot.config.loader import describe_config_error
from server.connections import raise_handle_limit
from server.dotenv import load_env_file
from server.security import MIN_REMOTE_TOKEN, is_loopback_bind

DEFAULT_BASE = Path(__file__).resolve().parent.parent / "configs" / "base.yml"
EXIT_CONFIG = 1
EXIT_REFUSED = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m server", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--config", default=str(DEFAULT_BASE), help="base config (default: the project's configs/base.yml)"
    )
    ap.add_argument("--override", default=None, help="override merged on top, e.g. configs/sim.yml")
    ap.add_argument("--host", default=None, help="bind address (default: server.host, 127.0.0.1)")
    ap.add_argument("--port", type=int, default=None, help="port (default: server.port, 8000)")
    ap.add_argument("--env-file", default=".env", help="KEY=VALUE file for secrets (default: %(default)s)")
    ap.add_argument("--log-dir", default=None, help="logs root (default: logging.dir)")
    ap.add_argument(
        "--venue",
        default=None,
        metavar="URL",
        help="trade against a simulated venue started apart (python -m bot.sim), e.g. http://127.0.0.1:8765",
    )
    ap.add_argument(
        "--record",
        default=None,
        metavar="DIR",
        help="write the public feed to hourly tapes in DIR for replay (record.dir)",
    )
    ap.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        help="extra Host header name the app answers to (for a non-loopback bind); repeatable",
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    loaded = load_env_file(Path(args.env_file))
    try:
        cfg = load_app_config(args.config, args.override)
    except ConfigError as e:
        print(describe_config_error(e), file=sys.stderr)
        return EXIT_CONFIG
    host = args.host or cfg.server.host
    port = cfg.server.port if args.port is None else args.port
    token = os.environ.get("STST_TOKEN") or None
    if not is_loopback_bind(host) and token is None:
        print(
            f"refusing to listen on {host}: a non-loopback address needs STST_TOKEN "
            "(set it in .env or the environment), or bind 127.0.0.1",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    if not is_loopback_bind(host) and len(token.strip()) < MIN_REMOTE_TOKEN:  # type: ignore[union-attr]
        print(
            f"refusing to listen on {host}: STST_TOKEN must be at least {MIN_REMOTE_TOKEN} characters "
            "for a non-loopback address (e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    cfg = cfg.model_copy(update={"server": cfg.server.model_copy(update={"host": host, "port": port})})
    if args.record:
        cfg = cfg.model_copy(update={"record": cfg.record.model_copy(update={"dir": args.record})})
    if host in ("0.0.0.0", "::") and not args.allowed_host:
        print(
            "note: only loopback Host names are accepted; add --allowed-host NAME for the name or address "
            "browsers will use to reach this machine",
            file=sys.stderr,
        )
    log_dir = Path(args.log_dir or cfg.logging.dir)

    from bot.infra.logging_runtime import setup_runtime_logging, shutdown_runtime_logging
    from server.app import create_app

    setup_runtime_logging(
        log_dir, level=cfg.logging.level, rotation=cfg.logging.rotation, retention=cfg.logging.retention
    )
    if loaded:
        print(f"read {', '.join(loaded)} from {args.env_file}", file=sys.stderr)
    raise_handle_limit()
    app = create_app(cfg, log_dir=log_dir, token=token, allowed_hosts=args.allowed_host, venue_url=args.venue)
    print(
        f"dashboard: http://{'[' + host + ']' if ':' in host else host}:{port}/ ({cfg.env} mode)",
        file=sys.stderr,
    )
    # uvicorn shuts down gracefully on SIGTERM / Ctrl-C (streams ended, bot stopped: orders cancelled, state
    # saved) and then re-raises the signal; by then there is nothing left to do but leave with status 0 and
    # the log flushed
    signal.signal(signal.SIGTERM, _leave)
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=10,
            **app.state.connections.uvicorn_options(),
        )
    except KeyboardInterrupt:
        pass
    finally:
        shutdown_runtime_logging()  # drain the enqueued runtime log before the process ends
    return 0


def _leave(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    sys.exit(main())

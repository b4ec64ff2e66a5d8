"""BotService: the bot's parts for one mode, started and stopped together on the caller's event loop.

sim   — the simulated venue runs in this process; the bot trades against it with the venue's test keys. With
        `venue_url` (`--venue http://HOST:PORT`) the venue is one started apart (`python -m bot.sim`), so its
        ledger outlives the bot's process (restart and chaos tests; its keys are sim.api_key /
        sim.api_secret).
paper — bitFlyer's public feed for market data; a local venue matches our orders against that same feed.
live  — bitFlyer. Only with `env: live` AND keys in the environment; starts STOPPED.
"""

from __future__ import annotations

import os
from pathlib import Path

from loguru import logger

from bot.config.loader import AppConfig
from bot.infra.notify import split_urls
from bot.runner import BotRunner, Endpoints
from bot.sim.server import SimVenue


class ModeRefused(Exception):
    """The config and environment do not allow this mode (e.g. live without keys)."""


class BotService:
    def __init__(
        self, cfg: AppConfig, *, log_dir: Path, state_file: Path | None = None, venue_url: str | None = None
    ) -> None:
        self.cfg = cfg
        self.venue_url = venue_url.rstrip("/") if venue_url else None
        self.log_dir = Path(log_dir)
        self.state_file = Path(state_file) if state_file else self.log_dir / "state.json"
        self.venue: SimVenue | None = None  # in sim/paper mode
        self.runner: BotRunner | None = None
        self._endpoints: Endpoints | None = None

    async def start(self) -> None:
        cfg = self.cfg
        if self.venue_url is not None:
            if cfg.env == "live":
                raise ModeRefused("--venue is for a simulated venue; live mode trades on bitFlyer only")
            ws = "ws" + self.venue_url.removeprefix("http") + "/json-rpc"
            ep = Endpoints(self.venue_url, ws, None, cfg.sim.api_key, cfg.sim.api_secret.get_secret_value())
        elif cfg.env == "sim":
            from bot.sim import SimVenue

            self.venue = SimVenue(cfg.sim)
            await self.venue.start()
            ep = Endpoints(
                self.venue.base_url,
                self.venue.ws_url,
                None,
                cfg.sim.api_key,
                cfg.sim.api_secret.get_secret_value(),
            )
        elif cfg.env == "paper":
            from bot.sim import SimVenue

            # the venue's market is bitFlyer's public feed; only our orders are matched locally
            self.venue = SimVenue(
                cfg.sim, public_feed_url=cfg.exchange.ws_url, product_code=cfg.exchange.product_code
            )
            await self.venue.start()
            ep = Endpoints(
                self.venue.base_url,
                cfg.exchange.ws_url,
                self.venue.ws_url,
                cfg.sim.api_key,
                cfg.sim.api_secret.get_secret_value(),
            )
        else:
            key = os.environ.get("BITFLYER_API_KEY", "").strip()
            secret = os.environ.get("BITFLYER_API_SECRET", "").strip()
            if not key or not secret:
                raise ModeRefused(
                    "live mode needs BITFLYER_API_KEY and BITFLYER_API_SECRET (in .env or the "
                    "environment); refusing to start"
                )
            from bot.infra.logging_runtime import register_secret

            register_secret(key)
            register_secret(secret)
            ep = Endpoints(cfg.exchange.base_url, cfg.exchange.ws_url, None, key, secret)
        self._endpoints = ep
        notify = [u.get_secret_value() for u in cfg.notify.urls] + split_urls(os.environ.get("STST_NOTIFY"))
        self.runner = BotRunner(
            cfg, endpoints=ep, log_dir=self.log_dir, state_file=self.state_file, notify_urls=notify
        )
        logger.info("starting bot in {} mode", cfg.env)
        await self.runner.open()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.close()
        if self.venue is not None:
            await self.venue.stop()

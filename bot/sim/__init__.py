"""A simulated bitFlyer venue for FX_BTC_JPY (SPEC §14): REST + JSON-RPC WebSocket on one port, a seeded
crowd, price-time matching, a ledger, and faults on demand under /_sim/."""

from bot.sim.server import SimVenue

__all__ = ["SimVenue"]

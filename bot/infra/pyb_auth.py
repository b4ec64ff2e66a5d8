"""Let pybotters sign for the simulated / paper venue exactly as it signs for bitFlyer (SPEC §13).

pybotters 1.x picks its signer from two process-global tables keyed by `yarl.URL.host` — the bare host name,
without scheme or port: `pybotters.auth.Hosts.items` (REST: ACCESS-KEY / ACCESS-TIMESTAMP / ACCESS-SIGN) and
`pybotters.ws.AuthHosts.items` (WebSocket: the JSON-RPC `auth` call sent before any subscription). Only
`api.bitflyer.com` and `ws.lightstream.bitflyer.com` are in them, so a venue on 127.0.0.1 would get unsigned
requests. Registering the venue's host with bitFlyer's own entries makes the real client behave identically.

Because the key is the host alone, registering 127.0.0.1 covers every port on 127.0.0.1 (and only that
spelling: `localhost` is a different key). The signing key is looked up by the entry's name ("bitflyer") in
the client's `apis`, so only clients created with bitFlyer credentials sign at all.
"""

from __future__ import annotations

from importlib.metadata import version

import pybotters.auth
import pybotters.ws
from yarl import URL

BITFLYER_REST_HOST = "api.bitflyer.com"
BITFLYER_WS_HOST = "ws.lightstream.bitflyer.com"
PINNED_MAJOR = "1."  # the tables below are internals of pybotters 1.x (pyproject pins <2.0)


def _host_of(url: str, what: str) -> str:
    host = URL(url).host
    if not host:
        raise ValueError(f"{what}: no host in {url!r}")
    return host


def _check_pybotters() -> None:
    v = version("pybotters")
    if not v.startswith(PINNED_MAJOR):
        raise RuntimeError(
            f"pybotters {v} is not supported: host registration relies on pybotters 1.x internals"
        )
    if (
        BITFLYER_REST_HOST not in pybotters.auth.Hosts.items
        or BITFLYER_WS_HOST not in pybotters.ws.AuthHosts.items
    ):
        raise RuntimeError("pybotters' bitFlyer host entries are missing; cannot register the venue host")


def _register(table: dict, host: str, template_host: str) -> None:
    entry = table[template_host]
    current = table.get(host)
    if current is entry:
        return  # already registered (or the real bitFlyer host itself)
    if current is not None:
        raise ValueError(
            f"host {host!r} is already registered in pybotters for {current.name!r}, not bitFlyer"
        )
    table[host] = entry


def register_bitflyer_hosts(rest_base_url: str, ws_url: str) -> None:
    """Make pybotters sign REST calls to `rest_base_url`'s host and send the WS `auth` to `ws_url`'s host
    exactly as it does for bitFlyer. Idempotent; a no-op for bitFlyer's own URLs; refuses a host that
    pybotters already signs for another exchange."""
    _check_pybotters()
    _register(pybotters.auth.Hosts.items, _host_of(rest_base_url, "rest_base_url"), BITFLYER_REST_HOST)
    _register(pybotters.ws.AuthHosts.items, _host_of(ws_url, "ws_url"), BITFLYER_WS_HOST)


def is_signed_as_bitflyer(url: str) -> tuple[bool, bool]:
    """(REST signed, WS authenticated) as bitFlyer for this URL's host — for start-up checks and the
    dashboard."""
    host = URL(url).host
    rest = pybotters.auth.Hosts.items.get(host)
    ws = pybotters.ws.AuthHosts.items.get(host)
    return (
        rest is pybotters.auth.Hosts.items[BITFLYER_REST_HOST],
        ws is pybotters.ws.AuthHosts.items[BITFLYER_WS_HOST],
    )

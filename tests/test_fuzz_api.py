"""The HTTP API under schemathesis: calls generated from the app's own /openapi.json (the config patch's
schema carries every hot field's type and range, so absurd and out-of-range numbers are among them), sent over
real sockets to the real uvicorn app with the bot trading against the simulated venue, with and without a
token.

Every answer is below 500 and comes within the timeout; a refused call changes nothing (config and run state
read before and after). The crowd is frozen so no fill (and so no kill switch) can change the state by itself.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.conftest_server import build_service, sim_config, uvicorn_server

pytestmark = pytest.mark.integration

TOKEN = "fuzz-token-0123456789abcdef"
# the streams never end by design; the rest is fuzzed
STREAMS = ("/events", "/stream")


@dataclass
class LiveServer:
    url: str
    headers: dict[str, str]

    def snapshot(self) -> tuple[Any, str]:
        """(config, run state) as the API shows them."""
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=10) as c:
            return c.get("/config").json(), c.get("/strategy").json()["state"]


@pytest.fixture(scope="module", params=[None, TOKEN], ids=["no-token", "token"])
def live_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The real app on a real uvicorn (the suite's `uvicorn_server`) on a loop in a thread of its own:
    schemathesis' client is synchronous."""
    from server.app import create_app

    token: str | None = request.param
    log_dir: Path = tmp_path_factory.mktemp("fuzz")
    cfg = sim_config(log_dir, strategy={"stall_T_ms": 300})
    service = build_service(cfg, log_dir)
    app = create_app(cfg, log_dir=log_dir, token=token, service=service)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ready = threading.Event()
    urls: list[str] = []

    async def serve() -> None:
        async with uvicorn_server(app) as url:
            service.venue.freeze_market()
            urls.append(url)
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(90) and urls, "uvicorn did not start"
    # the Host and Origin guards allow this server's own address; a real browser would send the same
    yield LiveServer(urls[0], {"Authorization": f"Bearer {token}"} if token else {})
    loop.call_soon_threadsafe(stop.set)
    thread.join(90)


@pytest.fixture(scope="module")
def api_schema(live_server: LiveServer) -> Any:
    raw = httpx.get(live_server.url + "/openapi.json", headers=live_server.headers, timeout=10).json()
    return schemathesis.openapi.from_dict(raw).exclude(path=list(STREAMS))


def operations(api_schema: Any) -> list[Any]:
    ops = [result.ok() for result in api_schema.get_all_operations()]
    assert len(ops) >= 10, [op.path for op in ops]
    return ops


def fuzz(
    live_server: LiveServer, api_schema: Any, headers: dict[str, str], examples: int = 40
) -> dict[int, int]:
    """Every operation, valid and invalid inputs (hypothesis drives schemathesis' strategies directly: its
    pytest plugin does not run under pytest 9). Returns how many answers of each status were seen."""
    calls: dict[int, int] = {}
    for op, mode in [(op, mode) for op in operations(api_schema) for mode in GenerationMode]:
        if mode is GenerationMode.NEGATIVE and not (op.body or op.query or op.path_parameters):
            continue  # nothing to get wrong

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=op.as_strategy(generation_mode=mode))
        def call(case: Any) -> None:
            before = live_server.snapshot()
            response = case.call(base_url=live_server.url, headers=headers, timeout=10)
            calls[response.status_code] = calls.get(response.status_code, 0) + 1
            case.validate_response(response, checks=[not_a_server_error])
            if response.status_code >= 300 or headers != live_server.headers:
                assert live_server.snapshot() == before, (
                    f"{case.method} {case.formatted_path} answered {response.status_code} but changed the bot"
                )

        try:
            call()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, (
                op.path
            )  # e.g. a free string path parameter: no wrong value
    return calls


def test_no_generated_call_answers_500_hangs_or_half_applies(
    live_server: LiveServer, api_schema: Any
) -> None:
    calls = fuzz(live_server, api_schema, live_server.headers)
    assert sum(calls.values()) >= 150 and calls.get(422, 0) >= 20, calls


@pytest.mark.parametrize("live_server", [TOKEN], ids=["token"], indirect=True)
def test_without_the_token_no_generated_call_changes_anything(
    live_server: LiveServer, api_schema: Any
) -> None:
    calls = fuzz(live_server, api_schema, {}, examples=15)
    refused = calls.get(401, 0) + calls.get(303, 0)
    assert refused >= 0.9 * sum(calls.values()), calls  # all but /healthz, /login, /logout

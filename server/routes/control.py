"""SPEC §7 life cycle: POST /strategy/{start,pause,resume,stop,kill,reset}, GET /strategy."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from loguru import logger

from bot.runner import BotRunner, PreflightRefused, TransitionRefused
from bot.types.snapshot import RunStatus
from server.routes.common import RunnerDep, peer_of, who_of
from server.schemas import ControlResult, Detail
from server.security import require_auth

ACTIONS: dict[str, str] = {
    "start": "STOPPED → RUNNING (live/paper: the first start runs the preflight; ?adopt=true after a human "
    "confirmed the position already on the account)",
    "pause": "RUNNING → PAUSED: no new entries, stall orders cancelled; protective exits stay active",
    "resume": "PAUSED → RUNNING",
    "stop": "→ STOPPED: block new orders, cancel all, confirm over REST none is open; the position is kept",
    "kill": "→ KILLED: block, cancel all, flatten at market, confirm; latched until reset",
    "reset": "KILLED → STOPPED (clears the kill latch)",
}

router = APIRouter(tags=["strategy"], dependencies=[Depends(require_auth)])


@router.get("/strategy", response_model=RunStatus)
async def get_strategy(runner: RunnerDep) -> RunStatus:
    return runner.status()


# a 409 from a first live start that only needs the human's confirmation of what is already on the account
ADOPT_HEADER = "X-Preflight-Adopt"


def _control_handler(action: str) -> Callable[..., Awaitable[ControlResult]]:
    async def run(request: Request, runner: BotRunner, adopt: bool) -> ControlResult:
        who = who_of(request)
        before = runner.state.value
        try:
            if action == "start":
                changed = await runner.start(who, adopt=adopt)
            else:
                changed = await getattr(runner, action)(who)
        except PreflightRefused as e:
            logger.warning(
                "control {} by {} ({}) refused by the preflight: {}", action, who, peer_of(request), e
            )
            headers = {ADOPT_HEADER: "needed"} if e.adoptable else None
            raise HTTPException(409, str(e), headers=headers) from None
        except TransitionRefused as e:
            logger.warning(
                "control {} by {} ({}) refused in {}: {}", action, who, peer_of(request), before, e
            )
            raise HTTPException(409, str(e)) from None
        status = runner.status()
        logger.info(
            "control {} by {} ({}): {} → {}{}",
            action,
            who,
            peer_of(request),
            before,
            status.state,
            "" if changed else " (no-op)",
        )
        return ControlResult(**status.model_dump(), changed=changed)

    async def start(
        request: Request,
        runner: RunnerDep,
        adopt: Annotated[
            bool,
            Query(description="a human confirmed the position / orders already on the account (live, paper)"),
        ] = False,
    ) -> ControlResult:
        return await run(request, runner, adopt)

    async def control(request: Request, runner: RunnerDep) -> ControlResult:
        return await run(request, runner, False)

    handler = start if action == "start" else control
    handler.__name__ = f"strategy_{action}"
    return handler


for _action, _doc in ACTIONS.items():
    router.add_api_route(
        f"/strategy/{_action}",
        _control_handler(_action),
        methods=["POST"],
        response_model=ControlResult,
        summary=_doc,
        responses={409: {"model": Detail, "description": "impossible in the current state, or not ready"}},
    )

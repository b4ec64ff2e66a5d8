"""SPEC §7 life cycle: POST /strategy/{start,pause,resume,stop,kill,reset}, GET /strategy."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends, HTTPException, Request
from loguru import logger

from bot.runner import TransitionRefused
from bot.types.snapshot import RunStatus
from server.routes.common import RunnerDep, peer_of, who_of
from server.schemas import ControlResult, Detail
from server.security import require_auth

ACTIONS: dict[str, str] = {
    "start": "STOPPED → RUNNING",
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


def _control_handler(action: str) -> Callable[..., Awaitable[ControlResult]]:
    async def control(request: Request, runner: RunnerDep) -> ControlResult:
        who = who_of(request)
        before = runner.state.value
        try:
            changed = await getattr(runner, action)(who)
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

    control.__name__ = f"strategy_{action}"
    return control


for _action, _doc in ACTIONS.items():
    router.add_api_route(
        f"/strategy/{_action}",
        _control_handler(_action),
        methods=["POST"],
        response_model=ControlResult,
        summary=_doc,
        responses={409: {"model": Detail, "description": "impossible in the current state"}},
    )

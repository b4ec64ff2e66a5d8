"""The preflight's verdict, typed: one `PreflightCheck` per thing checked and the `PreflightReport` that says
whether a live (or paper) session may start. The CLI prints it as a table and a last JSON line; GET /preflight
returns it (its response model); the start gate reads it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Level = Literal["error", "warning", "info"]

# the check whose failure a human may overrule by confirming (adopting what is already on the account)
ADOPTABLE_CHECK = "position"


class PreflightCheck(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    ok: bool
    level: Level  # what a failure means: error = not ready; warning = look at it; info = for the record
    detail: str


class PreflightReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    ready: bool  # no error-level check failed
    checks: list[PreflightCheck]

    @classmethod
    def of(cls, checks: list[PreflightCheck]) -> PreflightReport:
        return cls(ready=not any(c.level == "error" and not c.ok for c in checks), checks=checks)

    def failing(self, level: Level = "error") -> list[PreflightCheck]:
        return [c for c in self.checks if not c.ok and c.level == level]

    def check(self, name: str) -> PreflightCheck | None:
        return next((c for c in self.checks if c.name == name), None)

    def start_refusal(self, adopt: bool) -> str | None:
        """Why a start must be refused (None: it may go ahead). An open position or open orders alone are
        overruled by a human's confirmation (`adopt`); every other error is not."""
        blocking = [c for c in self.failing() if not (adopt and c.name == ADOPTABLE_CHECK)]
        if not blocking:
            return None
        text = "; ".join(f"{c.name}: {c.detail}" for c in blocking)
        return f"preflight not ready — {text}"

"""The Research page's data: replay and sweep results found under the configured folders, beside the live
session's own markouts, so a trader compares what replay promised with what the market gives.

A result is a folder holding `summary.json` (a replay: `python -m bot replay … --out DIR`) or `summary.csv`
(a sweep: its best grid point first). Only those names are read, and a report is handed out only as a
regular file inside its result folder (no links, no traversal). Folders are read in a worker thread, never on
the loop.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPORTS = {"replay": "report.html", "sweep": "sweep.html"}
MAX_RESULTS = 200
_FIGURES = (
    "total_pnl_jpy",
    "realized_pnl_jpy",
    "fills",
    "markout_1s_jpy",
    "markout_5s_jpy",
    "markout_30s_jpy",
)


@dataclass(frozen=True, slots=True)
class ResultRow:
    root: str  # the configured folder it was found in
    name: str  # its folder's name there
    kind: str  # replay | sweep
    label: str  # a sweep's best grid point ("strategy.stall_T_ms=150"); "" for a replay
    figures: dict[str, str]  # total_pnl_jpy, realized_pnl_jpy, fills, markout_{1,5,30}s_jpy (as written)
    modified: float  # unix seconds


def _replay_row(root: Path, folder: Path) -> ResultRow | None:
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict):
        return None
    figures = {k: str(summary[k]) for k in _FIGURES if summary.get(k) is not None}
    return ResultRow(str(root), folder.name, "replay", "", figures, folder.stat().st_mtime)


def _sweep_row(root: Path, folder: Path) -> ResultRow | None:
    try:
        with open(folder / "summary.csv", newline="") as f:
            best = next(csv.DictReader(f), None)
    except (OSError, csv.Error, UnicodeDecodeError):
        return None
    if not best:
        return None
    grid = [f"{k}={v}" for k, v in best.items() if k.startswith(("strategy.", "risk."))]
    figures = {k: best[f"{k}_mean"] for k in _FIGURES if best.get(f"{k}_mean")}
    return ResultRow(str(root), folder.name, "sweep", ", ".join(grid), figures, folder.stat().st_mtime)


def find_results(roots: list[Path]) -> list[ResultRow]:
    """Every replay and sweep result directly under each root, newest first."""
    rows: list[ResultRow] = []
    for root in roots:
        if not root.is_dir():
            continue
        for folder in root.iterdir():
            if folder.is_symlink() or not folder.is_dir():
                continue
            row = _sweep_row(root, folder) if (folder / "summary.csv").is_file() else None
            row = row or _replay_row(root, folder)
            if row is not None:
                rows.append(row)
    rows.sort(key=lambda r: r.modified, reverse=True)
    return rows[:MAX_RESULTS]


def report_path(roots: list[Path], root_index: int, name: str) -> Path | None:
    """A result's HTML report, if it is a regular file inside that result's folder."""
    if not 0 <= root_index < len(roots) or not name or "/" in name or name in (".", ".."):
        return None
    folder = roots[root_index] / name
    for kind_file in REPORTS.values():
        path = folder / kind_file
        try:
            if path.is_symlink() or folder.is_symlink() or not path.is_file():
                continue
            resolved = path.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if resolved.parent == folder.resolve() and folder.resolve().parent == roots[root_index].resolve():
            return resolved
    return None


def as_json(rows: list[ResultRow], roots: list[Path]) -> list[dict[str, Any]]:
    index = {str(r): i for i, r in enumerate(roots)}
    return [
        {
            "root": r.root,
            "name": r.name,
            "kind": r.kind,
            "label": r.label,
            "figures": r.figures,
            "report": f"/research/report/{index[r.root]}/{r.name}",
        }
        for r in rows
    ]

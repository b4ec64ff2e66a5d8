"""Replay and sweep over small simulated tapes (1–2 simulated minutes each): determinism, a self-consistent
ledger, fills the tape could make, the CLI's outputs and refusals, and Dask giving the process pool's rows."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.__main__ import main as bot_main
from bot.config.loader import load_app_config_with
from bot.engine.markouts import Markouts
from bot.infra.tape import TapeHeader, TapeWriter, read_tapes
from bot.research.replay import Replay, replay_tapes
from bot.research.sweep import WALL_FIELDS, SweepTask, run_sweep
from bot.sim.tape import write_sim_tape
from bot.types.dto import Side

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "configs" / "base.yml"


@pytest.fixture(scope="module")
def tapes(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("tapes")
    out = []
    for seed in (11, 12):
        p = d / f"sim-{seed}.jsonl.gz"
        write_sim_tape(p, seed=seed, minutes=2, activity=2)
        out.append(p)
    return out


def _deterministic(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in WALL_FIELDS}


def test_the_same_tape_and_config_give_the_same_summary_and_the_trades_csv_sums_to_it(
    tapes: list[Path], tmp_path: Path
) -> None:
    cfg = load_app_config_with(BASE, None, [])
    a, _ = replay_tapes([tapes[0]], cfg, out_dir=tmp_path / "a")
    b, _ = replay_tapes([tapes[0]], cfg, out_dir=tmp_path / "b")
    assert _deterministic(a) == _deterministic(b)
    assert a["fills"] > 0 and a["strikes"] > 0  # the tape exercises the whole path
    (trades,) = (tmp_path / "a" / "trades").glob("trades-*.csv")
    with open(trades, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == a["fills"]
    assert sum(Decimal(r["pnl_jpy"]) for r in rows) == Decimal(a["realized_pnl_jpy"])
    signed = sum(Decimal(r["size"]) * (1 if r["side"] == "BUY" else -1) for r in rows)
    assert signed == Decimal(a["position_btc"]) == Decimal(rows[-1]["inventory_after"])
    (orders,) = (tmp_path / "a" / "orders").glob("orders-*.csv")
    with open(orders, newline="") as f:
        sent = [r for r in csv.DictReader(f) if r["action"] in ("place", "close") and r["status"] == "ok"]
    assert len(sent) == a["orders"]
    assert {r["latency_ms"] for r in sent} == {"30.000"}  # the default latency model, as the CSV shows it


@pytest.mark.parametrize(
    "sets",
    [
        [],
        ["strategy.reverse_ref=mid", "strategy.stall_T_ms=100"],
        ["risk.daily_pnl_jpy=-20", "risk.max_dd_jpy=-15"],  # the kill switch fires mid-tape
        ["strategy.max_reverse_ticks=100000", "strategy.stall_T_ms=50", "strategy.ttl_ms=20000"],
    ],
)
def test_reusing_decisions_changes_no_result_and_no_log_row(
    tapes: list[Path], tmp_path: Path, sets: list[str]
) -> None:
    """The replay's shortcut (a board message that moved nothing the last decision read reuses it, and the
    strategy's own reuse) against deciding every time: the same summary, with and without logs, and the
    same CSV files byte for byte."""
    cfg = load_app_config_with(BASE, None, sets)

    def run(reuse: bool, logs: Path | None) -> dict[str, Any]:
        r = Replay(cfg, log_dir=logs, reuse_decisions=reuse)
        try:
            return _deterministic(r.run(read_tapes([tapes[1]])))
        finally:
            r.close()

    assert run(True, None) == run(False, None)
    with_logs = run(True, tmp_path / "reuse")
    assert with_logs == run(False, tmp_path / "fresh")
    assert with_logs["fills"] > 0
    files = sorted(p.relative_to(tmp_path / "reuse") for p in (tmp_path / "reuse").rglob("*.csv"))
    assert len(files) == 3
    for f in files:
        assert (tmp_path / "reuse" / f).read_bytes() == (tmp_path / "fresh" / f).read_bytes(), f


def test_a_resumed_tape_restarts_the_stall_clock_with_the_shortcut_as_without(tmp_path: Path) -> None:
    """A second tape file (the recorder restarted) opens with a snapshot whose bests are the same as before:
    the book's version and staleness end the frame unchanged, but the resync restarts the stall clock, so the
    decision cannot be reused (reusing it made one decision fewer); the stall after it strikes and fills."""
    ms, wall = 1_000_000, 1_795_000_000_000_000_000
    snap = {
        "mid_price": 105.0,
        "bids": [{"price": 100.0, "size": 0.5}],
        "asks": [{"price": 110.0, "size": 0.5}],
    }
    a, b = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    with TapeWriter(a, TapeHeader("sim", "FX_BTC_JPY", "x")) as w:
        w.write(wall, 5_000 * ms, "lightning_board_snapshot_FX_BTC_JPY", snap)
        for i in range(1, 5):  # sizes below the touch: nothing the strategy reads moves
            w.write(
                wall + i * 100 * ms, (5_000 + i * 100) * ms, "lightning_board_FX_BTC_JPY", _below(90.0, i)
            )
    with TapeWriter(b, TapeHeader("sim", "FX_BTC_JPY", "x")) as w:  # another monotonic clock
        w.write(wall + 500 * ms, 1_000 * ms, "lightning_board_snapshot_FX_BTC_JPY", snap)
        for i in range(1, 30):
            w.write(
                wall + (500 + i * 100) * ms,
                (1_000 + i * 100) * ms,
                "lightning_board_FX_BTC_JPY",
                _below(91.0, i),
            )
            if i == 13:
                print_ = {"id": 1, "side": "SELL", "price": 104.0, "size": 0.01, "exec_date": "x"}
                w.write(wall + 1_850 * ms, 2_350 * ms, "lightning_executions_FX_BTC_JPY", [print_])
    cfg = load_app_config_with(BASE, None, ["strategy.stall_T_ms=1000"])
    runs = []
    for reuse in (True, False):
        r = Replay(cfg, reuse_decisions=reuse)
        try:
            runs.append(_deterministic(r.run(read_tapes([a, b]))))
        finally:
            r.close()
    assert runs[0] == runs[1]
    assert runs[0]["strikes"] == 1 and runs[0]["fills"] > 0  # the resumed tape's stall struck and filled


def _below(price: float, i: int) -> dict[str, Any]:
    return {"mid_price": 105.0, "bids": [{"price": price, "size": 0.1 * i}], "asks": []}


def test_every_stall_fill_is_backed_by_the_tapes_own_trades_at_that_instant(tapes: list[Path]) -> None:
    cfg = load_app_config_with(BASE, None, ["strategy.reverse_ref=mid", "strategy.max_reverse_ticks=1000"])
    summary, trace = replay_tapes([tapes[1]], cfg)
    stall_fills = [f for f in trace.fills if f[4] == "stall"]
    assert stall_fills, summary
    prints: dict[int, list[dict[str, Any]]] = {}
    boards: set[int] = set()
    for fr in read_tapes([tapes[1]]):
        if fr.channel.startswith("lightning_executions_"):
            prints.setdefault(fr.t_wall_ns, []).extend(fr.message)
        elif fr.channel.startswith("lightning_board_"):
            boards.add(fr.t_wall_ns)
    ours: dict[tuple[int, str], Decimal] = {}
    for wall, side, _px, size, _ in stall_fills:
        assert wall in prints or wall in boards, "a fill at an instant the tape has no frame"
        ours[(wall, side)] = ours.get((wall, side), Decimal(0)) + size
    for (wall, side), size in ours.items():
        if wall not in prints:
            continue  # a board level moved through our resting price: we traded with it
        px = max(f[2] for f in stall_fills if f[0] == wall and f[1] == side)
        taker = "SELL" if side == "BUY" else "BUY"
        through = [
            Decimal(str(e["size"]))
            for e in prints[wall]
            if e["side"] == taker and (e["price"] <= px if side == "BUY" else e["price"] >= px)
        ]
        assert size <= sum(through, Decimal(0)), (wall, side, size, through)


def test_a_strategy_that_never_stalls_long_enough_sends_no_order(tapes: list[Path]) -> None:
    cfg = load_app_config_with(BASE, None, ["strategy.stall_T_ms=3600000"])
    summary, trace = replay_tapes([tapes[0]], cfg)
    assert summary["board_messages"] > 500
    assert (summary["strikes"], summary["orders"], summary["fills"]) == (0, 0, 0)
    assert summary["realized_pnl_jpy"] == "0" and trace.fills == []


def test_markouts_are_signed_for_us_and_in_jpy_for_the_fill_size() -> None:
    m = Markouts()
    m.on_fill(0, Side.BUY, Decimal(1000), Decimal("0.01"))
    m.on_fill(0, Side.SELL, Decimal(1000), Decimal("0.01"))
    m.settle_before(2_000_000_000, Decimal(1010))  # the mid rose 10 JPY before the 1 s horizon
    assert m.mean(1) == Decimal(0)  # +0.1 for the buy, -0.1 for the sell
    m2 = Markouts()
    m2.on_fill(0, Side.BUY, Decimal(1000), Decimal("0.01"))
    m2.settle_before(2_000_000_000, Decimal(1010))
    assert m2.mean(1) == Decimal("0.1")
    m2.settle_before(10**15, None)  # the tape ended before 5 s and 30 s: no markout there
    assert m2.mean(5) is None and m2.mean(30) is None


def test_the_replay_command_writes_its_summary_report_and_csv_logs(tapes: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "replay", str(tapes[0]), "--out", str(out), "--latency-ms", "40,20"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in (
        "board_messages",
        "market_seconds",
        "wall_s",
        "strikes",
        "orders",
        "fills",
        "fill_ratio",
        "realized_pnl_jpy",
        "position_btc",
        "max_drawdown_jpy",
        "markout_1s_jpy",
        "markout_5s_jpy",
        "markout_30s_jpy",
        "rate_budget_blocks",
        "replay_msgs_per_s",
    ):
        assert key in last
    assert last["latency_ms"] == [40.0, 20.0]
    assert json.loads((out / "summary.json").read_text()) == last
    html = (out / "report.html").read_text()
    assert "<svg" in html and "Markout curve" in html and "Stall lengths" in html
    assert "src=" not in html and "href=" not in html  # self-contained: nothing fetched from anywhere
    for kind in ("trades", "orders", "decisions"):
        assert list((out / kind).glob(f"{kind}-*.csv")), kind


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--set", "strategy.stall_T=400"], "strategy.stall_T: unknown key"),
        (["--set", "strategy.stall_T_ms"], "expected section.key=value"),
        (["--set", "strategy.stall_T_ms=-5"], "strategy.stall_T_ms"),
        (["--latency-ms", "30"], "ORDER,CANCEL"),
    ],
)
def test_replay_refuses_bad_arguments_with_a_sentence_and_status_2(
    tapes: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    rc = bot_main(["replay", str(tapes[0]), "--out", str(tmp_path / "x"), *args])
    assert rc == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # refused before any work


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--grid", "strategy.stall_T_ms"], "expected section.key=v1,v2"),
        (["--grid", "strategy.stall_T_ms=100,,250"], "expected section.key=v1,v2"),
        (["--grid", "strategy.stall_T_ms=100,100"], "repeated"),
        (["--grid", "strategy.stall_T_ms=100,0"], "strategy.stall_T_ms"),  # one point is not a valid config
        (["--grid", "strategy.nope=1,2"], "strategy.nope: unknown key"),
        ([], "--grid is required"),
    ],
)
def test_sweep_refuses_a_bad_grid_with_a_sentence_and_status_2(
    tapes: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    rc = bot_main(["sweep", str(tapes[0]), "--out", str(tmp_path / "x"), *args])
    assert rc == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_missing_or_foreign_file_is_refused_as_a_tape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.jsonl.gz"
    junk.write_bytes(b"not gzip")
    assert bot_main(["replay", str(tmp_path / "nope.jsonl.gz"), "--out", str(tmp_path / "o")]) == 2
    assert "no such tape file" in capsys.readouterr().err
    assert bot_main(["replay", str(junk), "--out", str(tmp_path / "o")]) == 2
    assert "junk.jsonl.gz" in capsys.readouterr().err


def _tasks(tapes: list[Path]) -> list[SweepTask]:
    points = [(("strategy.reverse_ref", "best"),), (("strategy.reverse_ref", "mid"),)]
    return [
        SweepTask(
            point=i,
            assignments=tuple(f"{k}={v}" for k, v in point),
            grid=point,
            tape=str(t),
            config=str(BASE),
            override=None,
            latency=(30.0, 30.0),
        )
        for i, point in enumerate(points)
        for t in tapes
    ]


def test_dask_on_a_local_cluster_of_two_workers_and_through_a_scheduler_gives_the_process_pools_rows(
    tapes: list[Path],
) -> None:
    from dask.distributed import LocalCluster

    tasks = _tasks(tapes)
    by_pool = run_sweep(tasks, engine="process", workers=2)
    by_dask = run_sweep(tasks, engine="dask", workers=2)  # a LocalCluster of its own
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        by_scheduler = run_sweep(tasks, engine="dask", scheduler=cluster.scheduler_address)  # "the user's"
    strip = [{k: v for k, v in r.items() if k not in WALL_FIELDS} for r in by_pool]
    assert strip == [{k: v for k, v in r.items() if k not in WALL_FIELDS} for r in by_dask]
    assert strip == [{k: v for k, v in r.items() if k not in WALL_FIELDS} for r in by_scheduler]
    assert [(r["strategy.reverse_ref"], r["tape"]) for r in by_pool] == [
        ("best", "sim-11.jsonl.gz"),
        ("best", "sim-12.jsonl.gz"),
        ("mid", "sim-11.jsonl.gz"),
        ("mid", "sim-12.jsonl.gz"),
    ]


def test_the_sweep_command_writes_results_summary_and_a_heat_map(tapes: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    rc = bot_main(
        [
            "sweep",
            *map(str, tapes),
            "--grid",
            "strategy.reverse_ref=best,mid",
            "--grid",
            "strategy.max_reverse_ticks=2,500",
            "--workers",
            "1",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    with open(out / "results.csv", newline="") as f:
        results = list(csv.DictReader(f))
    assert len(results) == 2 * 2 * 2
    assert list(results[0])[:3] == ["strategy.reverse_ref", "strategy.max_reverse_ticks", "tape"]
    with open(out / "summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    assert len(summary) == 4 and all(r["tapes"] == "2" for r in summary)
    means = [Decimal(r["total_pnl_jpy_mean"]) for r in summary]
    assert means == sorted(means, reverse=True)  # best mean PnL first
    for r in summary:  # the mean is the mean of the rows behind it
        mine = [
            Decimal(x["total_pnl_jpy"])
            for x in results
            if (x["strategy.reverse_ref"], x["strategy.max_reverse_ticks"])
            == (r["strategy.reverse_ref"], r["strategy.max_reverse_ticks"])
        ]
        assert abs(sum(mine) / 2 - Decimal(r["total_pnl_jpy_mean"])) < Decimal("0.0001")
    html = (out / "sweep.html").read_text()
    assert "Heat map" in html


def test_our_own_orders_marked_on_a_live_tape_are_not_replayed_as_someone_elses_liquidity(
    tmp_path: Path,
) -> None:
    tape = tmp_path / "live.jsonl.gz"
    wall, mono = 1_795_000_000_000_000_000, 5_000_000_000
    snapshot = {
        "mid_price": 150.0,
        "bids": [{"price": 100.0, "size": 0.03}],
        "asks": [{"price": 200.0, "size": 0.01}, {"price": 210.0, "size": 0.05}],
    }
    own = {"bids": [[100.0, 0.01]], "asks": [[200.0, 0.01]]}  # the ask at 200 was all ours
    with TapeWriter(tape, TapeHeader("live", "FX_BTC_JPY", "x", own_orders_marked=True)) as w:
        w.write(wall, mono, "lightning_board_snapshot_FX_BTC_JPY", snapshot, own)
    r = Replay(load_app_config_with(BASE, None, ["strategy.stall_T_ms=3600000"]))
    r.run(read_tapes([tape]))
    bid, bid_size, ask, ask_size = r.store.best()
    assert (bid, bid_size, ask, ask_size) == (Decimal(100), Decimal("0.02"), Decimal(210), Decimal("0.05"))


def test_the_recommended_profile_is_a_valid_override_of_strategy_keys_only() -> None:
    import yaml

    data = yaml.safe_load((ROOT / "configs" / "recommended.yml").read_text())
    assert set(data) == {"strategy"}
    cfg = load_app_config_with(BASE, ROOT / "configs" / "recommended.yml", [])
    assert cfg.env == "sim" and cfg.strategy.reverse_ref in ("best", "mid")


def test_strikes_fire_at_the_stall_deadline_between_frames_not_at_the_next_frame(
    tapes: list[Path], tmp_path: Path
) -> None:
    cfg = load_app_config_with(BASE, None, ["strategy.stall_T_ms=1000"])
    summary, _ = replay_tapes([tapes[0]], cfg, out_dir=tmp_path)
    (decisions,) = (tmp_path / "decisions").glob("decisions-*.csv")
    with open(decisions, newline="") as f:
        ages = [int(r["best_age_ms"]) for r in csv.DictReader(f) if r["reason"] == "strike"]
    assert len(ages) == summary["strikes"] > 5
    assert min(ages) >= 1000
    on_time = sum(a == 1000 for a in ages)  # frames land at arbitrary instants: only the deadline is on time
    assert on_time >= len(ages) * 0.8, ages

"""Tapes: the format (bot/infra/tape.py) and the simulated market in virtual time (bot/sim/tape.py)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from bot.infra.board_store import BoardStore
from bot.infra.tape import (
    HourlyTapeWriter,
    TapeError,
    TapeHeader,
    TapeWriter,
    read_header,
    read_tapes,
    tape_name,
)
from bot.sim.__main__ import main as sim_main
from bot.sim.tape import write_sim_tape

HOUR_NS = 3600 * 1_000_000_000


def test_a_sim_tape_is_the_same_bytes_for_the_same_seed_and_different_for_another(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz", tmp_path / "c.jsonl.gz"
    write_sim_tape(a, seed=3, minutes=1)
    write_sim_tape(b, seed=3, minutes=1)
    write_sim_tape(c, seed=4, minutes=1)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_a_sim_tape_parses_into_a_live_book_with_every_public_channel(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.gz"
    assert sim_main(["tape", "--seed", "5", "--minutes", "1", "--out", str(path)]) == 0
    h = read_header(path)
    assert (h.mode, h.product_code, h.seed, h.own_orders_marked) == ("sim", "FX_BTC_JPY", 5, False)
    frames = list(read_tapes([path]))
    channels = {f.channel for f in frames}
    assert channels == {
        "lightning_board_snapshot_FX_BTC_JPY",
        "lightning_board_FX_BTC_JPY",
        "lightning_executions_FX_BTC_JPY",
        "lightning_ticker_FX_BTC_JPY",
    }
    monos = [f.t_mono_ns for f in frames]
    assert monos == sorted(monos)
    span_s = (monos[-1] - monos[0]) / 1e9
    assert 55 < span_s <= 60  # one simulated minute
    store = BoardStore()
    for f in frames:
        if f.channel.startswith("lightning_board_"):
            store.onmessage({"params": {"channel": f.channel, "message": f.message}})
    bid, _, ask, _ = store.best()
    assert bid is not None and ask is not None and bid < ask and not store.stale


def test_the_reader_orders_files_by_time_and_flags_a_gap_between_sessions(tmp_path: Path) -> None:
    wall0 = 1_795_000_000_000_000_000
    header = TapeHeader("paper", "FX_BTC_JPY", "x")
    with TapeWriter(tmp_path / "late.jsonl.gz", header) as w:  # another process: its own monotonic clock
        w.write(wall0 + 10 * 10**9, 5 * 10**9, "lightning_ticker_FX_BTC_JPY", {"n": 3})
        w.write(wall0 + 11 * 10**9, 6 * 10**9, "lightning_ticker_FX_BTC_JPY", {"n": 4})
    with TapeWriter(tmp_path / "early.jsonl.gz", header) as w:
        w.write(wall0, 100 * 10**9, "lightning_ticker_FX_BTC_JPY", {"n": 1})
        w.write(wall0 + 10**9, 101 * 10**9, "lightning_ticker_FX_BTC_JPY", {"n": 2})
    frames = list(read_tapes([tmp_path / "late.jsonl.gz", tmp_path / "early.jsonl.gz"]))
    assert [f.message["n"] for f in frames] == [1, 2, 3, 4]
    assert [f.resumed for f in frames] == [False, False, True, False]
    # virtual time keeps running by the wall-clock gap (9 s), then by the file's own clock
    assert [f.t_mono_ns // 10**9 for f in frames] == [100, 101, 110, 111]


def test_hourly_files_are_named_in_utc_and_a_torn_tail_still_reads(tmp_path: Path) -> None:
    wall0 = 1_795_000_000_000_000_000  # 2026-11-18T11:06:40Z
    assert tape_name(wall0) == "20261118-11.jsonl.gz"
    w = HourlyTapeWriter(tmp_path, TapeHeader("paper", "FX_BTC_JPY", "x"))
    w.write(wall0, 1, "lightning_ticker_FX_BTC_JPY", {"n": 1})
    w.write(wall0 + HOUR_NS, 2, "lightning_ticker_FX_BTC_JPY", {"n": 2})
    w.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["20261118-11.jsonl.gz", "20261118-12.jsonl.gz"]
    data = (tmp_path / "20261118-12.jsonl.gz").read_bytes()
    (tmp_path / "20261118-12.jsonl.gz").write_bytes(data[:-6])  # killed before the gzip trailer
    assert [f.message["n"] for f in read_tapes(sorted(tmp_path.iterdir()))] == [1, 2]


def test_gzip_members_in_a_row_read_as_one_tape_and_a_corrupt_one_is_refused(tmp_path: Path) -> None:
    """gzip members concatenate (a recorder appending after a restart), with zero padding allowed after them;
    a member whose bytes are damaged stops the replay with the file's name rather than feeding it junk."""
    one = tmp_path / "one.jsonl.gz"
    with TapeWriter(one, TapeHeader("paper", "FX_BTC_JPY", "x")) as w:
        w.write(1, 1, "lightning_ticker_FX_BTC_JPY", {"n": 1})
    lines = [
        b'{"t_wall_ns":%d,"t_mono_ns":%d,"channel":"c","message":{"n":%d}}\n' % (n, n, n) for n in (2, 3)
    ]
    joined = tmp_path / "joined.jsonl.gz"
    joined.write_bytes(
        one.read_bytes() + gzip.compress(lines[0]) + b"\0" * 7 + gzip.compress(lines[1]) + b"\0"
    )
    assert [f.message["n"] for f in read_tapes([joined])] == [1, 2, 3]
    member = bytearray(gzip.compress(lines[0] * 50))
    member[len(member) // 2] ^= 0xFF
    damaged = tmp_path / "damaged.jsonl.gz"
    damaged.write_bytes(one.read_bytes() + bytes(member))
    with pytest.raises(TapeError, match="damaged.jsonl.gz"):
        list(read_tapes([damaged]))


def test_a_file_that_is_not_a_tape_is_refused_with_its_name(tmp_path: Path) -> None:
    bad = tmp_path / "notes.jsonl.gz"
    with gzip.open(bad, "wb") as f:
        f.write(b'{"hello": 1}\n')
    with pytest.raises(TapeError, match="notes.jsonl.gz: not a tape"):
        list(read_tapes([bad]))

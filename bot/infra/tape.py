"""Tapes: the public bitFlyer feed as received, for replay (the one definition of the format).

A tape file is gzip'd JSON lines (`*.jsonl.gz`), UTF-8:

- line 1, the header: `{"tape": 1, "mode": "sim" | "paper" | "live", "product_code": "FX_BTC_JPY",
  "started_at": "2026-11-18T10:00:00.000000Z", "seed": 7 | null, "own_orders_marked": false, ...}` —
  `mode` says who recorded it (`sim`: the simulated venue's market model; `paper`: bitFlyer's real feed with
  no orders of ours in it; `live`: the real feed while the bot was quoting). `own_orders_marked`: frames of a
  session in which the bot itself quoted carry its own orders; a recorder that can tell them apart marks them
  (see below) and says so here. Extra keys (`activity`, `minutes`, `recorder`, ...) are allowed and kept.
- every further line, one public frame exactly as bitFlyer sends the JSON-RPC `params`, with its receive time:
  `{"t_wall_ns": int, "t_mono_ns": int, "channel": "lightning_board_FX_BTC_JPY", "message": {...}}`. Channels:
  `lightning_board_snapshot_<P>`, `lightning_board_<P>`, `lightning_executions_<P>`, `lightning_ticker_<P>`.
  `t_mono_ns` is the recorder's monotonic clock (replay runs on it); `t_wall_ns` is UTC epoch ns (names, days,
  reports). A frame may carry `"own": {"bids": [[price, size], ...], "asks": [...]}` — our own resting size
  inside that frame's levels — when `own_orders_marked` is true; replay then takes it out of the crowd.

Files are named by the UTC hour of their first frame, `YYYYMMDD-HH.jsonl.gz` (`tape_name`); a recorder
rotates hourly (`HourlyTapeWriter`). A reader takes several files and yields their frames in time order
(`read_tapes`): files are ordered by their first frame's wall time; a file whose monotonic clock does not
continue the previous one (another process, a reboot) is shifted so that virtual time keeps running by the
wall-clock gap, and its first frame is flagged `resumed` (a gap in the feed: what happened meanwhile is
unknown).

Why gz JSON lines and not Parquet: frames are nested, ragged JSON (diffs of 0..n levels, execution lists) that
replay hands to the same parsers the live bot uses; JSON lines keep them byte-for-byte as received, append
frame by frame (a killed recorder loses at most the unflushed tail, and gzip members concatenate), are read
back with ISA-L (`isal`, twice zlib's speed), and compress ≈10× on this feed. Parquet would pay off for
columnar analytics over months, not for sequential replay.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

import orjson
from isal import isal_zlib

TAPE_VERSION = 1
TapeMode = Literal["sim", "paper", "live"]
MODES: tuple[str, ...] = ("sim", "paper", "live")
_RESUME_TOLERANCE_NS = 1_000_000_000  # monotonic and wall gaps further apart than this: another clock


class TapeError(ValueError):
    """A file that is not a tape (bad header, bad line): the message names the file and the line."""


@dataclass(frozen=True, slots=True)
class TapeHeader:
    mode: str
    product_code: str
    started_at: str  # ISO-8601 UTC
    seed: int | None = None
    own_orders_marked: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "tape": TAPE_VERSION,
            "mode": self.mode,
            "product_code": self.product_code,
            "started_at": self.started_at,
            "seed": self.seed,
            "own_orders_marked": self.own_orders_marked,
            **self.extra,
        }

    @classmethod
    def from_json(cls, d: Any, where: str) -> TapeHeader:
        if not isinstance(d, dict) or d.get("tape") != TAPE_VERSION:
            raise TapeError(f'{where}: not a tape (the first line must be a header with "tape": 1)')
        mode, product = d.get("mode"), d.get("product_code")
        if mode not in MODES or not isinstance(product, str):
            raise TapeError(f"{where}: header needs mode in {MODES} and a product_code")
        seed = d.get("seed")
        known = {"tape", "mode", "product_code", "started_at", "seed", "own_orders_marked"}
        return cls(
            mode=mode,
            product_code=product,
            started_at=str(d.get("started_at", "")),
            seed=seed if isinstance(seed, int) else None,
            own_orders_marked=bool(d.get("own_orders_marked", False)),
            extra={k: v for k, v in d.items() if k not in known},
        )


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs a replay ≈1 µs a frame
class Frame:
    t_wall_ns: int
    t_mono_ns: int
    channel: str
    message: Any
    own: dict[str, Any] | None = None  # our own resting size in this frame's levels (marked tapes)
    resumed: bool = False  # first frame after a gap between files (the feed was down meanwhile)


def iso_utc(wall_ns: int) -> str:
    return datetime.fromtimestamp(wall_ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def tape_name(wall_ns: int) -> str:
    """The file a frame received at `wall_ns` belongs to: its UTC hour."""
    return datetime.fromtimestamp(wall_ns // 1_000_000_000, UTC).strftime("%Y%m%d-%H") + ".jsonl.gz"


def encode_frame(t_wall_ns: int, t_mono_ns: int, channel: str, message: Any, own: Any = None) -> bytes:
    d: dict[str, Any] = {"t_wall_ns": t_wall_ns, "t_mono_ns": t_mono_ns, "channel": channel}
    d["message"] = message
    if own is not None:
        d["own"] = own
    return orjson.dumps(d) + b"\n"


class TapeWriter:
    """One tape file. Deterministic bytes for the same frames (gzip mtime 0). Append frames with `write`."""

    def __init__(self, path: str | Path, header: TapeHeader, *, compresslevel: int = 6) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._raw = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._gz = gzip.GzipFile(
            filename="", fileobj=self._raw, mode="wb", compresslevel=compresslevel, mtime=0
        )
        self._buf = io.BufferedWriter(self._gz, buffer_size=1 << 16)
        self._buf.write(orjson.dumps(header.to_json()) + b"\n")
        self.frames = 0

    def write(self, t_wall_ns: int, t_mono_ns: int, channel: str, message: Any, own: Any = None) -> None:
        self._buf.write(encode_frame(t_wall_ns, t_mono_ns, channel, message, own))
        self.frames += 1

    def flush(self) -> None:
        self._buf.flush()
        self._gz.flush()

    def close(self) -> None:
        self._buf.close()  # closes the gzip stream (writes its trailer)
        self._raw.close()

    def __enter__(self) -> TapeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HourlyTapeWriter:
    """A folder of hourly tapes (`YYYYMMDD-HH.jsonl.gz`, UTC), each with the same header (its `started_at` the
    hour's first frame). An hour that already has a file gets `-1`, `-2`, … (a restarted recorder never
    appends to a file it did not write)."""

    def __init__(self, folder: str | Path, header: TapeHeader) -> None:
        self.folder = Path(folder)
        self.header = header
        self._hour: str | None = None
        self._writer: TapeWriter | None = None

    def write(self, t_wall_ns: int, t_mono_ns: int, channel: str, message: Any, own: Any = None) -> None:
        name = tape_name(t_wall_ns)
        if name != self._hour or self._writer is None:
            self.close()
            path = self.folder / name
            n = 0
            while path.exists():
                n += 1
                path = self.folder / name.replace(".jsonl.gz", f"-{n}.jsonl.gz")
            h = self.header
            header = TapeHeader(
                h.mode, h.product_code, iso_utc(t_wall_ns), h.seed, h.own_orders_marked, dict(h.extra)
            )
            self._writer = TapeWriter(path, header)
            self._hour = name
        self._writer.write(t_wall_ns, t_mono_ns, channel, message, own)

    @property
    def path(self) -> Path | None:
        return None if self._writer is None else self._writer.path

    def flush(self) -> None:
        """What was written so far reaches the file (a killed recorder loses only what came after)."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# ---- reading ---------------------------------------------------------------------------------------------
def read_header(path: str | Path) -> TapeHeader:
    try:
        with gzip.open(path, "rb") as f:  # zlib's reader: one line, never the torn tail's EOF
            first = f.readline()
    except (gzip.BadGzipFile, EOFError) as e:
        raise TapeError(f"{path}: not a tape ({e})") from None
    try:
        return TapeHeader.from_json(orjson.loads(first), str(path))
    except orjson.JSONDecodeError:
        raise TapeError(f"{path}: not a tape (the first line is not JSON)") from None


_CHUNK = 1 << 16  # compressed bytes read at a time
_GZIP = 31  # zlib's wbits for a gzip stream (header and trailer)
_NOT_GZIP = cast(type[Exception], isal_zlib.error)  # the class (its stub declares an instance)


class _TornTail(Exception):
    """The file ended inside a gzip member: a recorder killed mid-write."""


def _chunks_of(f: BinaryIO) -> Iterator[bytes]:
    """The decompressed bytes of a gzip file, member after member (members concatenate), in big chunks,
    decompressed with ISA-L (half zlib's time). Ends with `_TornTail` after what a torn tail holds; bytes
    that are not gzip raise `_NOT_GZIP`."""
    d = isal_zlib.decompressobj(wbits=_GZIP)
    started = False  # the current member has begun
    while raw := f.read(_CHUNK):
        while raw:
            if not started:
                raw = raw.lstrip(b"\0")  # zero padding between or after members (a member starts 1f 8b)
                if not raw:
                    break
                started = True
            out = d.decompress(raw)
            if out:
                yield out
            if not d.eof:
                break  # the member goes on in the next read
            raw = d.unused_data
            d = isal_zlib.decompressobj(wbits=_GZIP)
            started = False
    if started:
        raise _TornTail


def _lines_of(f: BinaryIO) -> Iterator[bytes]:
    """The lines of a gzip file, split in big decompressed chunks (a readline per line costs a replay ≈1 µs a
    frame). A torn tail ends the lines: its partial line is dropped."""
    pending: list[bytes] = []  # a line longer than a chunk, in pieces (joined once, not once a chunk)
    try:
        for chunk in _chunks_of(f):
            pending.append(chunk)
            if b"\n" not in chunk:
                continue
            lines = b"".join(pending).split(b"\n")
            pending = [lines.pop()]
            yield from lines
    except _TornTail:
        return  # the complete lines before it were yielded
    rest = b"".join(pending)
    if rest:
        yield rest


def _frames_of(path: Path) -> Iterator[Frame]:
    try:
        with open(path, "rb") as f:
            lines = _lines_of(f)
            next(lines, None)  # header, checked by read_header
            for n, line in enumerate(lines, 2):
                if not line.strip():
                    continue
                try:
                    d = orjson.loads(line)
                    wall, mono = int(d["t_wall_ns"]), int(d["t_mono_ns"])
                    yield Frame(wall, mono, str(d["channel"]), d["message"], d.get("own"))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    raise TapeError(f"{path}:{n}: not a frame line") from None
    except _NOT_GZIP as e:
        raise TapeError(f"{path}: not gzip ({e})") from None


def _first_wall(path: Path) -> int:
    for fr in _frames_of(path):
        return fr.t_wall_ns
    return 0


def read_tapes(paths: Iterable[str | Path]) -> Iterator[Frame]:
    """The frames of several tape files, in time order, on one continuous virtual monotonic clock."""
    files = [Path(p) for p in paths]
    for p in files:
        read_header(p)  # refuse a non-tape before yielding anything
    files.sort(key=_first_wall)
    shift = 0
    last_mono: int | None = None
    last_wall = 0
    for p in files:
        first = True
        for fr in _frames_of(p):
            if first and last_mono is not None:
                first = False
                gap_wall = fr.t_wall_ns - last_wall
                gap_mono = fr.t_mono_ns + shift - last_mono
                if gap_mono < 0 or abs(gap_mono - gap_wall) > _RESUME_TOLERANCE_NS:
                    shift = last_mono + max(1, gap_wall) - fr.t_mono_ns
                    mono = fr.t_mono_ns + shift
                    last_mono, last_wall = mono, fr.t_wall_ns
                    yield Frame(fr.t_wall_ns, mono, fr.channel, fr.message, fr.own, resumed=True)
                    continue
            first = False
            mono = fr.t_mono_ns + shift
            last_mono, last_wall = mono, fr.t_wall_ns
            yield fr if shift == 0 else Frame(fr.t_wall_ns, mono, fr.channel, fr.message, fr.own)

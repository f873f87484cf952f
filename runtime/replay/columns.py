"""A source's market events as columns: a derived read model that lets a repeated backtest skip the Avro decode.

The log stays the truth. A backtest, and every run of a sweep, reads its source's market events through
`market_rows`: from a columns file when one matches the source exactly — its name, the committed horizon the run
reads and the hash chain there, the instruments the run reads, today's reader schemas and this file format — and
from the log otherwise, building the file on the way for the next run. The file is rebuilt, never trusted: another
key, a bad checksum or a short file sends the reader to the log (and the file is replaced); a value the columns
cannot hold exactly (a decimal with another exponent, an integer past 64 bits, a field of a kind they do not know)
leaves the source without a file. Either way the rows are the same: (seq, ts_event, type name, the decoded payload
without its envelope), built with the same Decimal exponents (tests/runtime/replay/test_columns.py compares the two
on random sources).

Layout, little-endian: b"TAPECOLS", u64 header length, the header (JSON, padded to 8 bytes), the columns (each
8-aligned), then a u32 CRC-32C of everything before it and b"TCOL". The file is read through mmap, so the workers
of a sweep share one copy in the page cache.
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any, Callable, Iterator

import crc32c

from eventstore.store import Log, file_store_path
from runtime.replay.merge import SourceMarket
from schemas.decimals import EXACT
from schemas.errors import TapeError
from schemas.names import PRICES

FORMAT = 1
MAGIC = b"TAPECOLS"
TRAILER = b"TCOL"
NULL = -(1 << 63)  # the null of an int or decimal column (a value equal to it is not cacheable)
INT_MIN, INT_MAX = NULL + 1, (1 << 63) - 1
MAX_DICT = 1 << 12  # a string column with more distinct values is kept as text (offsets + bytes)
CHUNK = 4096  # rows turned into Python objects at a time: memory stays flat however long the slice
KEEP = 3  # columns files kept per namespace (the newest); older horizons are removed when a new one is written

Row = tuple[int, int, str, dict[str, Any]]


class NotCacheable(Exception):
    """A value the columns cannot hold exactly: the source is read from the log."""


@dataclass(frozen=True)
class ColumnsKey:
    """What a columns file must match to be read: everything that decides the rows it gives."""

    source: str
    to_seq: int
    source_hash: str
    readers: str  # fingerprints of today's reader schemas of the market types

    def text(self) -> str:
        return json.dumps({"format": FORMAT, "source": self.source, "to_seq": self.to_seq, "hash": self.source_hash,
                           "readers": self.readers}, sort_keys=True)

    def file_name(self) -> str:
        return f"market-{self.to_seq}-{hashlib.sha256(self.text().encode()).hexdigest()[:16]}.cols"


def columns_key(log: Log, started: dict[str, Any]) -> ColumnsKey:
    """The key of the columns a run reads (its source pinned: source_to_seq and source_hash set)."""
    readers = ",".join(f"{log.catalog.get(t).fingerprint:016x}" for t in ("InstrumentDefined", *PRICES))
    return ColumnsKey(started["source_namespace"], started["source_to_seq"], started["source_hash"], readers)


def cache_dir(log: Log, namespace: str) -> Path:
    """Where a namespace's columns live: beside its segments in a file store (deleted with it); for another store,
    under $TAPE_CACHE or ~/.cache/tape, by store URL."""
    root = file_store_path(log.url)
    if root is not None:
        return Path(root) / namespace / "_cache"
    base = Path(os.environ.get("TAPE_CACHE") or Path.home() / ".cache" / "tape")
    return base / hashlib.sha256(log.url.encode()).hexdigest()[:16] / namespace


# ---- building -------------------------------------------------------------------------------------------------


class _Field:
    """One payload field of one type while building: its column so far, 8 bytes a value (memory stays flat)."""

    def __init__(self, name: str):
        self.name = name
        self.kind: str | None = None  # decided by the first value that is not None
        self.nullable = False
        self.leading = 0  # Nones before the kind was known
        self.col = array("q")
        self.table: dict[str, int] = {}  # str: value → code
        self.offsets, self.blob = array("q", [0]), bytearray()  # text
        self.scale = self.places = 0  # dec
        self.unit = Decimal(0)

    def add(self, v: Any) -> None:
        kind = self.kind
        if v is None:
            self.nullable = True
            if kind is None:
                self.leading += 1
            elif kind == "text":
                self.offsets.append(-1 - len(self.blob))
            else:
                self.col.append(NULL)
            return
        if kind is None:
            kind = self._start(v)
        if kind == "dec":
            self._decimal(v)
        elif kind == "str":
            if type(v) is not str:
                raise NotCacheable(f"{self.name}: values of several kinds")
            code = self.table.get(v)
            if code is None:
                if len(self.table) == MAX_DICT:
                    self._to_text()
                    return self.add(v)
                code = self.table[v] = len(self.table)
            self.col.append(code)
        elif kind == "text":
            if type(v) is not str:
                raise NotCacheable(f"{self.name}: values of several kinds")
            self.blob += v.encode()
            self.offsets.append(len(self.blob))
        elif kind == "bool":
            if type(v) is not bool:
                raise NotCacheable(f"{self.name}: values of several kinds")
            self.col.append(int(v))
        else:
            if type(v) is not int:
                raise NotCacheable(f"{self.name}: values of several kinds")
            if v < INT_MIN or v > INT_MAX:
                raise NotCacheable(f"{self.name}: an integer past 64 bits")
            self.col.append(v)

    def _start(self, v: Any) -> str:
        kinds = {str: "str", bool: "bool", int: "int", Decimal: "dec"}
        kind = kinds.get(type(v))
        if kind is None:
            raise NotCacheable(f"{self.name}: values of kind {type(v).__name__}")
        self.kind = kind
        if kind == "dec":
            exp = v.as_tuple().exponent
            if not isinstance(exp, int):
                raise NotCacheable(f"{self.name}: {v}")
            self.scale = -exp
            self.unit = _unit(self.scale, 0)
        self.col.extend([NULL] * self.leading)
        return kind

    def _decimal(self, v: Any) -> None:
        if type(v) is not Decimal:
            raise NotCacheable(f"{self.name}: values of several kinds")
        u = v.scaleb(self.places, EXACT)
        i = int(u)
        if i != u:  # more places than the column had: widen it (at most `scale` times in a column's life)
            places = max(0, -v.normalize(EXACT).as_tuple().exponent)  # type: ignore[operator]
            if places > self.scale:
                raise NotCacheable(f"{self.name}: {v} has more places than its exponent")
            f = 10 ** (places - self.places)
            self.col = array("q", [x if x == NULL else _fits(self.name, x * f) for x in self.col])
            self.places, self.unit = places, _unit(self.scale, places)
            i = int(v.scaleb(places, EXACT))
        if EXACT.multiply(_fits(self.name, i), self.unit).as_tuple() != v.as_tuple():
            raise NotCacheable(f"{self.name}: {v} is not held exactly in units of 1e-{self.places}")
        self.col.append(i)

    def _to_text(self) -> None:
        values = sorted(self.table, key=self.table.__getitem__)
        for code in self.col:
            if code == NULL:
                self.offsets.append(-1 - len(self.blob))
            else:
                self.blob += values[code].encode()
                self.offsets.append(len(self.blob))
        self.kind, self.col, self.table = "text", array("q"), {}

    def encode(self) -> tuple[dict[str, Any], list[bytes]]:
        """(the field's header entry, its column blobs)."""
        kind = self.kind or "str"
        if self.kind is None:
            self.kind = "str"
            self.col.extend([NULL] * self.leading)
        entry: dict[str, Any] = {"name": self.name, "kind": kind, "nullable": self.nullable}
        if kind == "str":
            entry["values"] = sorted(self.table, key=self.table.__getitem__)
        if kind == "dec":
            entry.update(scale=self.scale, places=self.places)
        if kind == "text":
            entry["bytes"] = len(self.blob)
            return entry, [self.offsets.tobytes(), bytes(self.blob)]
        return entry, [self.col.tobytes()]


def _fits(name: str, i: int) -> int:
    if i < INT_MIN or i > INT_MAX:
        raise NotCacheable(f"{name}: a value past 64-bit units")
    return i


def _unit(scale: int, places: int) -> Decimal:
    """The decimal whose product with an integer of units gives the decoder's value: coefficient 10^(scale-places),
    exponent -scale (so a product keeps the decoder's exponent, and its trailing zeros)."""
    return Decimal((0, (1,) + (0,) * (scale - places), -scale))


def _table(rows: Iterator[Row]) -> tuple[dict[str, Any], list[bytes]]:
    """(layout, blobs) of one table of rows, kept in their order; NotCacheable when a value does not fit."""
    seqs, tss, kinds, kpos = array("q"), array("q"), array("q"), array("q")
    types: dict[str, tuple[tuple[str, ...], list[_Field]]] = {}
    order: list[str] = []
    counts: dict[str, int] = {}
    for seq, ts, name, data in rows:
        seqs.append(seq)
        tss.append(ts)
        hit = types.get(name)
        if hit is None:
            names = tuple(data)
            hit = types[name] = (names, [_Field(n) for n in names])
            order.append(name)
            counts[name] = 0
        names, fields = hit
        if tuple(data) != names:
            raise NotCacheable(f"{name}: payloads with different fields")
        for f, v in zip(fields, data.values()):
            f.add(v)
        kinds.append(order.index(name) if len(order) > 1 else 0)
        kpos.append(counts[name])
        counts[name] += 1
    blobs: list[bytes] = [seqs.tobytes(), tss.tobytes()]
    layout: dict[str, Any] = {"rows": len(seqs), "types": []}
    if len(order) > 1:
        blobs += [kinds.tobytes(), kpos.tobytes()]
    for name in order:
        entries = []
        for f in types[name][1]:
            entry, parts = f.encode()
            entries.append(entry)
            blobs += parts
        layout["types"].append({"name": name, "rows": counts[name], "fields": entries})
    return layout, blobs


def build(defs: list[tuple[Row, str]], market: Iterator[Row], key: ColumnsKey, instruments: tuple[str, ...]) -> bytes:
    """The columns file of a source: its instrument definitions (with their record keys) and the market rows of
    `instruments` in the order a run processes them; NotCacheable when a value does not fit."""
    tables = {"defs": _table(iter([r for r, _ in defs])), "market": _table(market)}
    header = json.dumps({"format": FORMAT, "key": json.loads(key.text()), "instruments": list(instruments),
                         "def_keys": [k for _, k in defs], "tables": {n: t[0] for n, t in tables.items()}},
                        sort_keys=True).encode()
    header += b" " * (-len(header) % 8)
    out = bytearray(MAGIC + struct.pack("<Q", len(header)) + header)
    for name in ("defs", "market"):
        for b in tables[name][1]:
            out += b + b"\0" * (-len(b) % 8)
    out += struct.pack("<I", crc32c.crc32c(bytes(out))) + TRAILER
    return bytes(out)


# ---- reading --------------------------------------------------------------------------------------------------


class Table:
    """One table of a columns file: the rows of a ts slice, made into Python objects a chunk at a time."""

    def __init__(self, header: dict[str, Any], take: Callable[[int], tuple[int, memoryview]],
                 drop: Callable[[int, int], None] | None = None):
        self.rows_total = n = header["rows"]
        self._drop = drop  # gives a consumed byte range of an mmap'd file back (it stays in the page cache)
        self._starts: list[int] = []  # where each 8-byte column of a one-type table begins, for drop

        def col(nbytes: int) -> memoryview:
            at, m = take(nbytes)
            self._starts.append(at)
            return m.cast("q")

        self.seq = col(8 * n)
        self.ts = col(8 * n)
        self.kinds = self.kpos = None
        if len(header["types"]) > 1:
            self.kinds, self.kpos = col(8 * n), col(8 * n)
            self._drop = None  # several types: the columns are read at several speeds
        self.types: list[tuple[str, Callable[..., Iterator[tuple[int, int, str, dict[str, Any]]]], list[Any]]] = []
        for t in header["types"]:
            cols: list[Any] = []
            for f in t["fields"]:
                m = t["rows"]
                if f["kind"] == "text":
                    cols.append((take(8 * (m + 1))[1].cast("q"), take(f["bytes"])[1]))
                    self._drop = None
                else:
                    cols.append(col(8 * m))
            self.types.append((t["name"], _row_maker(t["name"], t["fields"]), cols))

    def rows(self, from_ts: int | None = None, to_ts: int | None = None) -> Iterator[Row]:
        """The rows with from_ts <= ts_event < to_ts, in processing order."""
        a = 0 if from_ts is None else bisect_left(self.ts, from_ts)
        b = self.rows_total if to_ts is None else bisect_left(self.ts, to_ts)
        if len(self.types) == 1:
            make, cols = self.types[0][1], self.types[0][2]
            drop, starts = self._drop, self._starts
            for i in range(a, b, CHUNK):
                j = min(b, i + CHUNK)
                yield from make(self.seq[i:j].tolist(), self.ts[i:j].tolist(), *[_part(c, i, j) for c in cols])
                if drop is not None:  # what was read is not held: a long slice costs no more memory than a short
                    for at in starts:
                        drop(at + 8 * a, at + 8 * j)
            return
        for i in range(a, b, CHUNK):  # several types: each row from its own type's columns
            j = min(b, i + CHUNK)
            kinds, kpos = self.kinds[i:j].tolist(), self.kpos[i:j].tolist()  # type: ignore[index]
            seqs, tss = self.seq[i:j].tolist(), self.ts[i:j].tolist()
            for k, p, s, t in zip(kinds, kpos, seqs, tss):
                _, make, cols = self.types[k]
                yield from make([s], [t], *[_part(c, p, p + 1) for c in cols])

    def release(self) -> None:
        for c in (self.seq, self.ts, self.kinds, self.kpos):
            if c is not None:
                c.release()
        for _, _, cols in self.types:
            for c in cols:
                for m in c if isinstance(c, tuple) else (c,):
                    m.release()
        self.types = []


class SourceColumns:
    """A columns file, open: its instrument definitions (with keys) and the market rows of its instruments."""

    def __init__(self, buf: Any, header: dict[str, Any], start: int):
        self._buf, self.header = buf, header
        self.instruments = tuple(header["instruments"])
        self._view = view = memoryview(buf)
        pos = start

        def take(nbytes: int) -> tuple[int, memoryview]:
            nonlocal pos
            at, m = pos, view[pos:pos + nbytes]
            pos += nbytes + (-nbytes % 8)
            return at, m

        defs = Table(header["tables"]["defs"], take)
        self.defs = list(zip(defs.rows(), header["def_keys"]))
        defs.release()
        self.market = Table(header["tables"]["market"], take, self._drop if isinstance(buf, mmap.mmap) else None)

    def _drop(self, start: int, end: int) -> None:
        """Give the whole pages of [start, end) back: a file-backed page is read again from the page cache if ever
        touched again, so this only lowers what the process holds."""
        page = mmap.PAGESIZE
        lo, hi = -(-start // page) * page, end // page * page
        if hi > lo:
            self._buf.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    def close(self) -> None:
        self.market.release()
        self._view.release()
        if isinstance(self._buf, mmap.mmap):
            self._buf.close()


def _part(col: Any, i: int, j: int) -> list[Any]:
    if isinstance(col, tuple):  # text: offsets and bytes
        offsets, blob = col
        out: list[Any] = []
        ends = offsets[i:j + 1].tolist()
        for a, b in pairwise(ends):  # a null's end is stored as -1 - end
            out.append(None if b < 0 else bytes(blob[a if a >= 0 else -1 - a:b]).decode())
        return out
    return col[i:j].tolist()


def _row_maker(type_name: str, fields: list[dict[str, Any]]) -> Callable[..., Iterator[Row]]:
    """A generated loop that turns a chunk of a type's columns into the decoder's dicts (one expression per field,
    in the decoder's field order): the per-row work of every backtest, so nothing generic is left in it."""
    env: dict[str, Any] = {"MUL": EXACT.multiply, "NULL": NULL, "NAME": type_name}
    args, items = [], []
    for n, f in enumerate(fields):
        a = f"c{n}"
        args.append(a)
        kind = f["kind"]
        if kind == "str":
            env[f"S{n}"] = f["values"]
            expr, null = f"S{n}[{a}]", f"{a} == NULL"
        elif kind == "text":
            expr, null = a, None
        elif kind == "bool":
            expr, null = f"{a} == 1", f"{a} == NULL"
        elif kind == "int":
            expr, null = a, f"{a} == NULL"
        else:
            env[f"U{n}"] = _unit(f["scale"], f["places"])
            expr, null = f"MUL({a}, U{n})", f"{a} == NULL"
        if f["nullable"] and null is not None:
            expr = f"(None if {null} else {expr})"
        items.append(f"{f['name']!r}: {expr}")
    src = (f"def make(seqs, tss, {', '.join(args)}):\n"
           f"    for s, t, {', '.join(args)}, in zip(seqs, tss, {', '.join(args)}):\n"
           f"        yield s, t, NAME, {{{', '.join(items)}}}\n")
    exec(compile(src, f"<columns of {type_name}>", "exec"), env)
    return env["make"]


def read(path: Path, key: ColumnsKey) -> SourceColumns | None:
    """The columns at `path` when they are whole and of `key`; None otherwise (missing, damaged, stale)."""
    try:
        with open(path, "rb") as f:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None
    try:
        return _parse(buf, key, len(buf))
    except (ValueError, KeyError, TypeError, IndexError, struct.error):
        buf.close()
        return None


def _parse(buf: Any, key: ColumnsKey, size: int) -> SourceColumns | None:
    if size < 24 or buf[:8] != MAGIC or buf[size - 4:size] != TRAILER:
        return None
    (crc,) = struct.unpack_from("<I", buf, size - 8)
    if crc32c.crc32c(memoryview(buf)[:size - 8]) != crc:
        return None
    (hlen,) = struct.unpack_from("<Q", buf, 8)
    header = json.loads(bytes(buf[16:16 + hlen]))
    if header.get("format") != FORMAT or header.get("key") != json.loads(key.text()):
        return None
    return SourceColumns(buf, header, 16 + hlen)


def save(directory: Path, key: ColumnsKey, data: bytes) -> None:
    """Write a columns file atomically (a reader sees the old set or the new file whole), then drop all but the
    newest KEEP of the namespace's files."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{key.file_name()}.{os.getpid()}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, directory / key.file_name())
    files = sorted(directory.glob("market-*.cols"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for old in files[KEEP:]:
        old.unlink(missing_ok=True)


# ---- the rows a run reads -------------------------------------------------------------------------------------


def log_rows(log: Log, started: dict[str, Any], *, from_ts: int | None = None, to_ts: int | None = None,
             instruments: list[str] | None = None) -> Iterator[Row]:
    """A run's market rows read from the log: decoded, the envelope dropped (a market callback gets the payload;
    its times are the step's), sliced to from_ts <= ts_event < to_ts."""
    market = SourceMarket(log, {**started, "source_from_ts": from_ts, "source_to_ts": to_ts}, instruments=instruments)
    return _decoded(market.records(), market.codec)


def log_definitions(log: Log, started: dict[str, Any]) -> list[tuple[Row, str]]:
    """Every instrument definition of the source up to the run's horizon (whatever its time), with its record key."""
    replay = log.replay(started["source_namespace"], types=["InstrumentDefined"], to_seq=started.get("source_to_seq"))
    records = list(replay.records())
    return list(zip(_decoded(iter(records), replay.codec), (r.key.decode() for r in records)))


def _decoded(records: Iterator[Any], codec: Any) -> Iterator[Row]:
    decode = codec.decode_data
    names: dict[bytes, str] = {}
    for seq, ts, _key, type_b, value in records:
        name = names.get(type_b)
        if name is None:
            name = names[type_b] = type_b.rpartition(b".")[2].decode()
        data = decode(value)
        del data["envelope"]
        yield seq, ts, name, data


def instruments_of(defs: list[tuple[Row, str]], to_ts: int | None) -> list[str]:
    """The instruments a run reads: those defined before its slice's end (source_instruments' rule)."""
    return sorted({k for (_, ts, _, _), k in defs if to_ts is None or ts < to_ts})


@dataclass
class Cached:
    """How the source was read: from its columns file, from a file built now, or from the log (off, or why)."""

    state: str  # "read" | "built" | "uncacheable" | "off"
    detail: str = ""


@dataclass
class SourceRows:
    """What a run reads of its source: the instrument definitions it starts with and its market rows."""

    definitions: list[Row]
    market: Iterator[Row]
    cached: Cached


def source_rows(log: Log, started: dict[str, Any], *, cache: bool = True,
                progress: Callable[[int], None] | None = None) -> SourceRows:
    """A run's source (its started record: source, slice, pinned horizon) from the columns file when one matches,
    else from the log — building the file for the next run when the source allows."""
    from_ts, to_ts = started.get("source_from_ts"), started.get("source_to_ts")

    def starting(defs: list[tuple[Row, str]]) -> list[Row]:
        return [r for r, _ in defs if to_ts is None or r[1] < to_ts]

    if not cache or started.get("source_to_seq") is None:
        defs = log_definitions(log, started)
        return SourceRows(starting(defs), log_rows(log, started, from_ts=from_ts, to_ts=to_ts,
                                                   instruments=instruments_of(defs, to_ts)), Cached("off"))
    key = columns_key(log, started)
    directory = cache_dir(log, key.source)
    path = directory / key.file_name()
    found = read(path, key)
    if found is not None:
        wanted = instruments_of(found.defs, to_ts)
        if tuple(wanted) == found.instruments:
            return SourceRows(starting(found.defs), _closing(found, found.market.rows(from_ts, to_ts)),
                              Cached("read"))
        found.close()  # a slice that ends before some instrument is defined: its merge is the log's to make
        return SourceRows(starting(found.defs), log_rows(log, started, from_ts=from_ts, to_ts=to_ts,
                                                         instruments=wanted),
                          Cached("uncacheable", "the file holds other instruments than the slice reads"))
    stale = path.exists()
    defs = log_definitions(log, started)
    wanted = instruments_of(defs, to_ts)

    def from_log(why: str) -> SourceRows:
        return SourceRows(starting(defs), log_rows(log, started, from_ts=from_ts, to_ts=to_ts, instruments=wanted),
                          Cached("uncacheable", why))

    whole = {**started, "source_from_ts": None, "source_to_ts": None}
    try:
        data = build(defs, _counted(log_rows(log, whole, instruments=wanted), progress), key, tuple(wanted))
    except NotCacheable as e:
        return from_log(str(e))
    except TapeError:  # the log path raises what it raises (an instrument out of time order, damage) in slice
        return from_log("the log decides")
    try:
        save(directory, key, data)
    except OSError as e:  # a read-only store: the columns serve this run from memory
        state = Cached("built", f"not saved: {e.strerror}")
    else:
        state = Cached("built", "replaced a damaged or stale file" if stale else "")
    found = _parse(data, key, len(data))
    assert found is not None
    return SourceRows(starting(found.defs), _closing(found, found.market.rows(from_ts, to_ts)), state)


class RowEvent:
    """A market row in the shape of a replayed Event (seq, ts_event, name, data): what merged() and the folds
    read of a source event."""

    __slots__ = ("seq", "ts_event", "name", "data")

    def __init__(self, row: Row):
        self.seq, self.ts_event, self.name, self.data = row


def source_events(log: Log, started: dict[str, Any]) -> tuple[list[Row], Iterator[RowEvent]]:
    """A run's instrument definitions and market events, read as source_rows reads them (its columns when they
    match): for the folds that rebuild a run (`tape runs show`)."""
    got = source_rows(log, started)
    return got.definitions, (RowEvent(r) for r in got.market)


def _counted(rows: Iterator[Row], progress: Callable[[int], None] | None) -> Iterator[Row]:
    for n, r in enumerate(rows, 1):
        yield r
        if progress is not None and n % 5000 == 0:
            progress(n)


def _closing(columns: SourceColumns, rows: Iterator[Row]) -> Iterator[Row]:
    try:
        yield from rows
    finally:
        columns.close()

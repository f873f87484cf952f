"""The proof that a log was not altered (`tape audit verify`).

First the files of the store itself (on a file store: every segment, index, the journal, the registry and
namespace.json — eventstore/storecheck.py), each finding with its file and byte; then `verify` walks the committed
events in seq order and checks the hash chain of the envelope (prev_hash = sha256 of the previous COMMITTED event's
stored value), every commit record's last_hash, the completeness of every committed range and the frame fields (seq,
type, ts_event) against the envelope; a break names the file and byte of the batch it is in. Seqs in a gap between
committed ranges belong to a step torn by a crash: they were never delivered, the writer chains the next step from
the last committed event, so they are reported as information, not as breaks. The first break stops the walk.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from eventstore.errors import CorruptLog, TapeError
from eventstore.replay import merge_by_seq
from eventstore.store import Log

# every event type that carries an order's client order id

def short_hex(b: bytes | None, n: int = 16) -> str:
    if b is None:
        return "-"
    if not b:
        return "(empty)"
    h = bytes(b).hex()
    return h if len(h) <= n else h[:n] + "…"






@dataclass
class Break:
    """The first place where the log is not what its writer wrote."""

    kind: str
    seq: int | None
    message: str
    expected: bytes | int | str | None = None
    found: bytes | int | str | None = None
    commit: tuple[int, int] | None = None  # the committed range a missing event belongs to

    def text(self, namespace: str = "") -> str:
        where = f" at seq {self.seq}" if self.seq is not None else ""
        out = f"BROKEN{' ' + namespace if namespace else ''}{where}: {self.kind}: {self.message}"
        if self.expected is not None or self.found is not None:
            out += f" (expected {_shown(self.expected)}, found {_shown(self.found)})"
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "seq": self.seq, "message": self.message,
                "expected": _json_value(self.expected), "found": _json_value(self.found)}


def _shown(v: Any) -> str:
    return short_hex(v) if isinstance(v, (bytes, bytearray)) else ("-" if v is None else str(v))


def _json_value(v: Any) -> Any:
    return bytes(v).hex() if isinstance(v, (bytes, bytearray)) else v


@dataclass
class Torn:
    """A gap between committed ranges: a step torn by a crash, never delivered."""

    first: int
    last: int
    records: int = 0


@dataclass
class VerifyResult:
    namespace: str
    events: int = 0
    commits: int = 0
    last_seq: int = 0
    head: bytes = b""
    torn: list[Torn] = field(default_factory=list)
    brk: Break | None = None
    findings: list[Any] = field(default_factory=list)  # storecheck.Finding: damage, or notes

    @property
    def damage(self) -> list[Any]:
        """The findings that are damage (the others are notes: torn writes of a crash, older formats)."""
        return [f for f in self.findings if f.damage]

    @property
    def ok(self) -> bool:
        return self.brk is None and not self.damage

    @property
    def torn_records(self) -> int:
        return sum(t.records for t in self.torn)

    def as_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "ok": self.ok, "events": self.events, "commits": self.commits,
                "last_seq": self.last_seq, "head": self.head.hex(),
                "torn_steps": [{"first": t.first, "last": t.last, "records": t.records} for t in self.torn],
                "break": self.brk.as_dict() if self.brk else None,
                "findings": [f.as_dict() for f in self.findings]}


class _Stop(Exception):
    pass


def verify(log: Log, namespace: str) -> VerifyResult:
    """Check the store's files of a namespace (every finding), then walk its committed events and check every
    link (stops at the first break, which names where the record is)."""
    res = VerifyResult(namespace)
    res.findings = log.backend.check_files(namespace, log.catalog)
    try:
        reader = log.backend.open_reader(namespace)
    except TapeError as e:  # namespace.json damaged: the findings name it
        res.brk = Break("unreadable namespace", None, str(e))
        return res
    try:
        try:
            codec = log.codec(namespace)
        except TapeError as e:  # a registry file that no longer hashes to its name
            res.brk = Break("schema registry", None, str(e))
            return res
        _Walk(reader, codec, res).run()
    except CorruptLog as e:
        res.brk = Break("corrupt batch", None, f"{e} (after seq {res.last_seq})")
    except _Stop:
        if res.brk is not None and res.brk.seq is not None:
            try:
                span = res.brk.commit
                where = reader.describe_missing(*span) if span else reader.describe_seq(res.brk.seq)
            except TapeError:
                where = ""
            if where:
                res.brk.message += f" ({where})"
    finally:
        reader.close()
    return res


class _Walk:
    """The verification state machine; `fail` records the break and stops."""

    def __init__(self, reader: Any, codec: Any, res: VerifyResult):
        self.reader = reader
        self.codec = codec
        self.res = res
        self.horizon = reader.horizon()
        self.commits = reader.commits(1)
        self.commit: Any = None
        self.expect = 1  # next seq the current commit still owes
        self.prev_commit_last = 0
        self.chain = b""  # sha256 of the last committed event (what the next one must carry)
        self.chain_seq: int | None = None
        # a link that failed: (seq before, seq after, recorded prev_hash, recomputed hash). Which of the two
        # records was altered is decided by the next link of the later one (it fails too only if it changed).
        self.pending: tuple[int | None, int, bytes, bytes] | None = None

    def fail(self, kind: str, seq: int | None, message: str, expected: Any = None, found: Any = None,
             commit: Any = None) -> None:
        if self.pending is not None and kind != "prev_hash mismatch":
            self._blame_earlier()  # an unresolved link broke first
        span = (commit.first, commit.last) if commit is not None else None
        self.res.brk = Break(kind, seq, message, expected, found, span)
        raise _Stop()

    def next_commit(self) -> Any:
        c = next(self.commits, None)
        if c is None or c.last > self.horizon:
            return None
        if c.first > c.last or c.first <= self.prev_commit_last:
            self.fail("commit journal", c.last, f"commit record {c.first}..{c.last} does not follow the previous "
                      f"commit (last seq {self.prev_commit_last})")
        if c.first > self.prev_commit_last + 1:
            self.res.torn.append(Torn(self.prev_commit_last + 1, c.first - 1))
        self.prev_commit_last = c.last
        self.res.commits += 1
        return c

    def link(self, seq: int, recorded: bytes, what: str) -> None:
        """Check the link from the last committed event to `seq` (whose envelope recorded `recorded`)."""
        ok = recorded == self.chain
        if self.pending is not None:
            before, after, rec, comp = self.pending
            if ok:  # the later record still chains on: the earlier one was altered
                self._blame_earlier()
            # the later record's own hash changed too: it is the altered one (its prev_hash field)
            self.fail("prev_hash mismatch", after,
                      f"the record of seq {after} was altered: its prev_hash no longer names seq {before} "
                      f"and its own hash no longer matches {what}", comp, rec)
        if not ok:
            if self.chain_seq is None:
                self.fail("prev_hash mismatch", seq, "the first committed event must carry an empty prev_hash",
                          self.chain, recorded)
            self.pending = (self.chain_seq, seq, recorded, self.chain)

    def _blame_earlier(self) -> None:
        before, after, rec, comp = self.pending  # type: ignore[misc]
        self.fail("prev_hash mismatch", before,
                  f"the record of seq {before} was altered: its sha256 no longer matches the prev_hash recorded by "
                  f"seq {after}", rec, comp)

    def run(self) -> None:
        reader, res, codec = self.reader, self.res, self.codec
        if self.horizon == 0:
            return
        cursors = [reader.cursor(t, i) for t, n in reader.partitions.items() for i in range(n)]
        records = merge_by_seq([c.read_until(self.horizon) for c in cursors])
        sha = hashlib.sha256
        last_seen = 0
        for r in records:
            s = r.seq
            if s <= last_seen:
                self.fail("seq out of order", s, f"seq {s} follows seq {last_seen}: seqs must strictly increase",
                          last_seen + 1, s)
            last_seen = s
            while self.commit is None or self.commit.last < s:
                self._close_commit()
                self.commit = self.next_commit()
                if self.commit is None:
                    break
                self.expect = self.commit.first
            c = self.commit
            if c is None or s < c.first:  # in a gap between committed ranges: a torn step
                if res.torn and res.torn[-1].first <= s <= res.torn[-1].last:
                    res.torn[-1].records += 1
                continue
            if s != self.expect:
                self.fail("missing event", self.expect, f"seq {self.expect} of committed range {c.first}..{c.last} "
                          f"is missing from the partitions (next present: seq {s})", commit=c)
            self.expect = s + 1
            value = r.value if isinstance(r.value, bytes) else bytes(r.value)
            try:
                name, data = codec.decode(value)
                env = data["envelope"]
                recorded = env["prev_hash"]
            except Exception as e:  # fastavro raises many kinds on garbage
                self.fail("undecodable record", s, f"the value of seq {s} does not decode ({type(e).__name__}: "
                          f"{' '.join(str(e).split())[:120]})")
            if env["seq"] != s:
                self.fail("frame mismatch", s, "the record frame's seq differs from the envelope's", s, env["seq"])
            if name.encode() != bytes(r.type):
                self.fail("frame mismatch", s, "the record frame's type differs from the value's schema",
                          name, bytes(r.type).decode(errors="replace"))
            if env["ts_event"] != r.ts:
                self.fail("frame mismatch", s, "the record frame's ts_event differs from the envelope's",
                          env["ts_event"], r.ts)
            self.link(s, recorded, "the prev_hash recorded by the next event")
            h = sha(value).digest()
            self.chain, self.chain_seq = h, s
            res.events += 1
            res.last_seq = s
            res.head = h
            if s == c.last:
                if h != c.last_hash:
                    if self.pending is not None and self.pending[1] == s:
                        before = self.pending[0]
                        self.fail("prev_hash mismatch", s, f"the record of seq {s} was altered: its prev_hash no "
                                  f"longer names seq {before} and its hash no longer matches its commit record",
                                  self.pending[3], self.pending[2])
                    self.fail("commit hash mismatch", s, f"the record of seq {s} was altered: its sha256 differs "
                              f"from the last_hash of commit {c.first}..{c.last}", c.last_hash, h)
                if self.pending is not None:
                    self._blame_earlier()
        self._close_commit()
        if self.pending is not None:
            self._blame_earlier()
        # commits with no record at all left
        c = self.next_commit()
        if c is not None:
            self.fail("missing event", c.first, f"committed range {c.first}..{c.last} has no event in the partitions",
                      commit=c)

    def _close_commit(self) -> None:
        c = self.commit
        if c is not None and self.expect <= c.last:
            self.fail("missing event", self.expect,
                      f"seq {self.expect} of committed range {c.first}..{c.last} is missing from the partitions",
                      commit=c)

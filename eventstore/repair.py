"""`tape log repair`: put back what a file store's namespace can be given back, and say exactly what it cannot.

What is repaired: what is derived — every segment index the check finds bad or missing is rebuilt from its segment
and written atomically — and what the code knows exactly — a registry file whose content no longer matches its
name is written again from today's catalog when the catalog has a schema of that fingerprint (the name is the
fingerprint of what the file must hold) — and a torn tail the journal never committed is cut (by opening a writer,
whose tail recovery does it). Everything runs under the namespace's writer lock.

What is not: committed events lost (a segment cut short, a batch destroyed). Those are named — which seqs, where
they would be — and the namespace stays refused to writers, until the user chooses to cut it after a commit
(`truncate_after`): every partition and the journal end at the last batch of that commit, later segments go, and a
note left in the namespace makes its next writer record a LogTruncated event (the last seq kept, the range removed,
what was lost) as its first step, so the cut is part of the history it leaves.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventstore.batch import iter_records
from eventstore.catalog import Catalog
from eventstore.durable import replace_file
from eventstore.errors import StoreError
from eventstore.filelog import namespace_lock
from eventstore.nsmeta import read_meta
from eventstore.partition import Partition, cut_partition_after, readable_batches
from eventstore.registryfile import registry_text
from eventstore.storecheck import COMMITS, DERIVED, Finding, check_namespace

NOTE = "_truncated.json"  # what the next writer records as LogTruncated (then removes)


class RepairError(StoreError):
    """A repair that cannot be made as asked."""


@dataclass
class Repair:
    """What a repair did and what it left."""

    fixed: list[str] = field(default_factory=list)  # one line per file repaired
    left: list[Finding] = field(default_factory=list)  # damage still there (empty: the namespace checks clean)
    truncated: dict[str, Any] | None = None  # the note of a cut made (after_seq, removed_first, removed_last)
    whole: int = 0  # with damage left: the end of the last whole commit (where a cut loses nothing still there)


def commits(ns_dir: Path) -> list[tuple[int, int, int]]:
    """(first, last, ts) of every commit record the journal holds, in order (reading stops at a torn or bad
    batch)."""
    return [(int.from_bytes(r.value[:8], "big"), r.seq, r.ts) for seg in sorted((ns_dir / COMMITS).glob("*.log"))
            for _, info, data in readable_batches(seg) for r in iter_records(data, info)]


def _rebuild_index(index_path: Path) -> None:
    part = Partition(index_path.parent)
    base = int(index_path.stem)
    for seg in part.segments:
        if seg.base == base:
            part.replace_index(seg)
            return


def _registry(path: Path, catalog: Catalog) -> bool:
    """Write a registry file again from today's catalog when it has the schema the file's name is the fingerprint
    of; False when it does not (the file's schema is not the code's: restore it from a copy)."""
    try:
        fp = int(path.stem, 16)
    except ValueError:
        return False
    known = {t.fingerprint: t for t in [*catalog.types, *catalog.records.values()]}.get(fp)
    if known is None:
        return False
    replace_file(path, registry_text(known.schema).encode())
    return True


def truncate_after(ns_dir: Path, after_seq: int, lost: str) -> dict[str, Any]:
    """Cut the namespace after the commit ending at `after_seq` and leave the note its next writer records."""
    ranges = commits(ns_dir)
    ends = [last for _, last, _ in ranges]
    if after_seq != 0 and after_seq not in ends:
        before = max((e for e in ends if e < after_seq), default=0)
        later = min((e for e in ends if e > after_seq), default=None)
        raise RepairError(f"--truncate-after {after_seq}: not the end of a commit; the nearest are {before:,}"
                          + (f" and {later:,}" if later is not None else ""))
    last = max(ends, default=0)
    if after_seq >= last:
        raise RepairError(f"--truncate-after {after_seq}: nothing is committed after it (the last commit ends at "
                          f"seq {last:,})")
    counts = read_meta(ns_dir)
    for topic, n in counts.items():
        for i in range(n):
            path = ns_dir / f"{topic}-{i}"
            if path.is_dir():
                cut_partition_after(path, after_seq, through_damage=True)
    cut_partition_after(ns_dir / COMMITS, after_seq, through_damage=True)
    kept_ts = next((ts for _, end, ts in ranges if end == after_seq), 0)
    note = {"after_seq": after_seq, "removed_first": after_seq + 1, "removed_last": last, "lost": lost,
            "repaired_ts": time.time_ns(), "ts_event": kept_ts}
    replace_file(ns_dir / NOTE, json.dumps(note, sort_keys=True).encode())
    return note


def _fix(ns_dir: Path, catalog: Catalog, out: Repair, *, quiet: bool = False) -> None:
    """Rebuild the indexes and rewrite the registry files the check finds bad (under the lock)."""
    for f in check_namespace(ns_dir, catalog):
        if not f.damage:
            continue
        if f.fix == DERIVED and f.path.suffix == ".index":
            if f.path.with_suffix(".log").exists():
                _rebuild_index(f.path)
                line = f"rebuilt {f.path} from its segment ({f.what})"
                if line not in out.fixed and not quiet:
                    out.fixed.append(line)
        elif f.path.parent.name == "_schemas" and _registry(f.path, catalog):
            out.fixed.append(f"wrote {f.path} again from today's schema of its fingerprint ({f.what})")


def repair(ns_dir: Path, catalog: Catalog, *, cut_after: int | None = None,
           open_writer: Callable[[], Any] | None = None) -> Repair:
    """Repair what can be repaired (see the module doc); `cut_after`: also cut after that commit. `open_writer`
    opens and closes the namespace's writer (its tail recovery), once the lock taken here is released."""
    out = Repair()
    fd = namespace_lock(ns_dir)
    try:
        _fix(ns_dir, catalog, out)
        if cut_after is not None:
            lost = "; ".join(f.text() for f in check_namespace(ns_dir, catalog) if f.damage)
            out.truncated = truncate_after(ns_dir, cut_after, lost or "nothing found lost: cut as asked")
            out.fixed.append(f"cut after seq {cut_after:,}: seqs {out.truncated['removed_first']:,}.."
                             f"{out.truncated['removed_last']:,} removed")
            _fix(ns_dir, catalog, out, quiet=True)  # the indexes of the segments cut
    finally:
        os.close(fd)
    if open_writer is not None and not [f for f in check_namespace(ns_dir, catalog) if f.damage]:
        open_writer()  # cuts a torn tail nothing committed, rewrites the active segment's index
    out.left = [f for f in check_namespace(ns_dir, catalog) if f.damage]
    if out.left:
        out.whole = last_whole_commit(ns_dir)
    return out


def pending_note(ns_dir: Path) -> dict[str, Any] | None:
    """The note a cut left for the next writer (None: none)."""
    try:
        return dict(json.loads((ns_dir / NOTE).read_bytes()))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        raise StoreError(f"{ns_dir / NOTE}: not the note `tape log repair` writes; remove it if you did not "
                         "cut the namespace") from None


def clear_note(ns_dir: Path) -> None:
    (ns_dir / NOTE).unlink(missing_ok=True)


def last_whole_commit(ns_dir: Path) -> int:
    """The end of the last commit whose every seq, and every seq before it, a partition still holds readably: where
    `--truncate-after` can cut without losing anything that is still there."""
    present: set[int] = set()
    for part in sorted(p for p in ns_dir.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for seg in sorted(part.glob("*.log")):
            for _, info, data in readable_batches(seg):
                present.update(r.seq for r in iter_records(data, info))
    whole = 0
    for first, last, _ in commits(ns_dir):
        if any(s not in present for s in range(first, last + 1)):
            break
        whole = last
    return whole

"""`tape ingest csv`: read a history file, consult the namespace's import state, append batches as steps.

The pure parts (layouts, rows, checks, planning, drafts) live in runtime.ingest; this module does the I/O around
them, in two passes over the file:
  1. check: every row is parsed and checked (cells, time order, duplicates, the bars' spacing against the
     timeframe, the rows the namespace already holds against what it holds) and nothing is written; any bad row,
     a timeframe that does not match, or a conflict with the namespace refuses the whole file in one line;
  2. write: the same rows are appended as steps (kept from pass 1 for files of up to CACHE_ROWS rows, about 1 kB
     each, else parsed again). Each batch is one atomic step ending with a HistoryImported event, so an import
     killed during this pass leaves whole batches and a re-run resumes after them (see runtime.ingest.csvrows).
A file read twice must not change between the passes (its size and modification time are compared).
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventstore.errors import StoreError, TapeError
from eventstore.store import Log
from runtime.ingest.checks import HistoryCheck, Spacing
from runtime.ingest.csvrows import (
    CsvSpec,
    IngestError,
    InstrumentOptions,
    Planner,
    Row,
    SeriesState,
    fold_history,
    history_draft,
    instrument_draft,
    instrument_identity,
    market_drafts,
    plan_batches,
    series_key,
)
from runtime.ingest.layouts import DEFAULT_LAYOUT, Layout, LayoutOptions, read_rows
from runtime.ingest.sources import Source, file_sha256, open_source, source_lines

BATCH_ROWS = 5000
CACHE_ROWS = 50_000  # rows kept between the passes instead of parsing the file again
Progress = Callable[[str, int, int], None]  # (phase: "checking" | "importing", bytes done, bytes in all)


@dataclass
class ImportResult:
    """What one import read, wrote, skipped and found, for the command's output."""

    file: str
    layout: Layout | None = None
    rows_read: int = 0
    imported: int = 0
    skipped: int = 0  # rows the namespace already held, with the same values
    duplicates: int = 0
    first_duplicate: tuple[int, int] | None = None  # (line, the line it repeats)
    conflicts: int = 0  # rows left out with --skip-conflicts
    first_conflict: str | None = None
    gaps: str = ""  # the gaps between bars, one line (empty: none)
    events_written: int = 0
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        return self.rows_read / self.elapsed if self.elapsed > 0 else 0.0


def existing_namespaces(log: Log) -> list[str]:
    """Namespaces of the store; none when the store does not exist yet (ingest creates it)."""
    try:
        return log.namespaces()
    except StoreError:
        return []


@dataclass
class NamespaceState:
    horizon: int = 0
    series: SeriesState | None = None
    instrument_known: bool = False


def read_state(log: Log, namespace: str, spec: CsvSpec) -> NamespaceState:
    """What the namespace already holds for this file's series, from HistoryImported events only."""
    if namespace not in existing_namespaces(log):
        return NamespaceState(series=SeriesState())
    horizon = log.horizon(namespace)
    history = [ev.data for ev in log.replay(namespace, types=["HistoryImported"], to_seq=horizon)]
    series = fold_history(history).get(series_key(spec.instrument, spec.kind, spec.timeframe)) or SeriesState()
    known = any(d["instrument_id"] == spec.instrument for d in history) or any(
        ev.key == spec.instrument for ev in log.replay(namespace, types=["InstrumentDefined"], to_seq=horizon)
    )
    if series.last_ts is not None:
        series.tail = sum(1 for _ in held_events(log, namespace, spec, series.last_ts, series.last_ts, horizon))
    return NamespaceState(horizon, series, known)


def held_events(log: Log, namespace: str, spec: CsvSpec, from_ts: int, to_ts: int,
                horizon: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """(ts_event, data) of the series' market events in [from_ts, to_ts], in log order: what a re-import meets."""
    for ev in log.replay(namespace, types=[spec.event_type], from_ts=from_ts, to_ts=to_ts + 1, to_seq=horizon):
        if ev.key == spec.instrument and (spec.kind != "bars" or ev.data["timeframe"] == spec.timeframe):
            yield ev.ts_event, ev.data


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError as e:
        raise IngestError(f"{path}: cannot read ({e.strerror}); nothing was imported") from None
    return st.st_size, st.st_mtime_ns


def check_file(log: Log, namespace: str, source: Source, spec: CsvSpec, options: LayoutOptions,
               state: NamespaceState, *, skip_conflicts: bool = False,
               progress: Progress | None = None) -> tuple[ImportResult, int, list[Row] | None]:
    """Pass 1: parse and check every row, write nothing; the counts, the number of rows to import, the rows kept."""
    assert state.series is not None
    planner = Planner(spec, state.series)
    last = state.series.last_ts
    history = HistoryCheck(spec, lambda ts: held_events(log, namespace, spec, ts, last or ts, state.horizon))
    spacing = Spacing(spec) if spec.kind == "bars" else None
    kept: list[Row] | None = []
    with source_lines(source, (lambda done: progress("checking", done, source.size)) if progress else None) as lines:
        layout, stream = read_rows(lines, spec, options)
        for row in stream:
            if kept is not None:
                kept.append(row)
                if len(kept) > CACHE_ROWS:
                    kept = None
            if spacing is not None:
                spacing.observe(row)
            if not planner.admit(row):
                history.check(row)
    if spacing is not None:
        spacing.verdict()
    if not skip_conflicts:
        history.verdict(namespace)
    result = ImportResult(
        source.label, layout, rows_read=stream.read, skipped=planner.skipped - history.count,
        duplicates=stream.duplicates, first_duplicate=stream.first_duplicate, conflicts=history.count,
        first_conflict=history.first, gaps=spacing.summary() if spacing is not None else "",
    )
    return result, planner.read - planner.skipped, kept


def import_csv(
    log: Log,
    path: Path,
    namespace: str,
    spec: CsvSpec,
    instrument: InstrumentOptions,
    *,
    layout: LayoutOptions = DEFAULT_LAYOUT,
    skip_conflicts: bool = False,
    batch_rows: int = BATCH_ROWS,
    progress: Progress | None = None,
) -> ImportResult:
    """Import one history file into a namespace, all of it or nothing; resumable and idempotent."""
    started = time.monotonic()
    source = open_source(path)
    spec = dataclasses.replace(spec, label=source.label)
    sha256 = file_sha256(path)
    stamp = _stamp(path)
    state = read_state(log, namespace, spec)
    assert state.series is not None
    if not state.instrument_known:
        instrument_identity(spec, instrument)  # fail before reading the file
    result, to_import, kept = check_file(log, namespace, source, spec, layout, state,
                                         skip_conflicts=skip_conflicts, progress=progress)
    if to_import:
        if kept is None and _stamp(path) != stamp:
            raise IngestError(f"{source.label}: the file changed while it was checked; nothing was imported: run again")
        result.imported, result.events_written = _write(log, path.name, namespace, source, spec, layout, instrument,
                                                        state, sha256, batch_rows, progress, kept)
    result.elapsed = time.monotonic() - started
    return result


def _write(log: Log, file_name: str, namespace: str, source: Source, spec: CsvSpec, options: LayoutOptions,
           instrument: InstrumentOptions, state: NamespaceState, sha256: str, batch_rows: int,
           progress: Progress | None, kept: list[Row] | None) -> tuple[int, int]:
    """Pass 2: the rows the check admitted, appended in batches (one step each); (rows imported, events written)."""
    assert state.series is not None
    planner = Planner(spec, state.series)
    imported = written = 0
    writer = None
    try:
        with contextlib.ExitStack() as stack:
            rows: Iterable[Row] = kept if kept is not None else _reread(stack, source, spec, options, progress)
            for batch in plan_batches(rows, planner, batch_rows):
                step = []
                if not state.instrument_known:
                    step.append(instrument_draft(spec, instrument, batch))
                    state.instrument_known = True
                step += market_drafts(spec, batch)
                step.append(history_draft(spec, file_name, sha256, batch))
                if writer is None:  # opened only now: a file with nothing to import leaves no empty namespace
                    writer = log.writer(namespace)
                    if log.horizon(namespace) != state.horizon:
                        raise TapeError(f"namespace {namespace!r} was written while the import started: re-run it")
                writer.append(step)
                imported += len(batch)
                written += len(step)
    finally:
        if writer is not None:
            writer.close()
    return imported, written


def _reread(stack: contextlib.ExitStack, source: Source, spec: CsvSpec, options: LayoutOptions,
            progress: Progress | None) -> Iterable[Row]:
    on_read = (lambda done: progress("importing", done, source.size)) if progress else None
    lines = stack.enter_context(source_lines(source, on_read))
    return read_rows(lines, spec, options)[1]

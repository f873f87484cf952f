"""`tape ingest csv`: read a history file, consult the namespace's import state, append batches as steps.

The pure parts (rows, planning, drafts) live in runtime.ingest; this module does the I/O around them.
Each batch is one atomic step ending with a HistoryImported event, so a killed import leaves whole batches
and a re-run resumes after them (see runtime.ingest.csvrows for the rules).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from eventstore.errors import StoreError, TapeError
from eventstore.store import Log
from runtime.ingest.csvrows import (
    CsvSpec,
    IngestError,
    InstrumentOptions,
    Planner,
    SeriesState,
    fold_history,
    history_draft,
    instrument_draft,
    instrument_identity,
    iter_rows,
    market_drafts,
    plan_batches,
    series_key,
)

BATCH_ROWS = 5000
PROGRESS_EVERY = 1 << 18  # bytes between progress callbacks


@dataclass
class ImportResult:
    file: str
    rows_read: int = 0
    imported: int = 0
    skipped: int = 0
    events_written: int = 0
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        return self.rows_read / self.elapsed if self.elapsed > 0 else 0.0


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


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
        series.tail = sum(
            1
            for ev in log.replay(namespace, types=[spec.event_type], from_ts=series.last_ts,
                                 to_ts=series.last_ts + 1, to_seq=horizon)
            if ev.key == spec.instrument and (spec.kind != "bars" or ev.data["timeframe"] == spec.timeframe)
        )
    return NamespaceState(horizon, series, known)


def _lines(f: BinaryIO, label: str, progress: Callable[[int], None] | None) -> Iterator[str]:
    done = mark = 0
    for n, raw in enumerate(f, 1):
        done += len(raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise IngestError(f"{label} line {n}: not UTF-8 text") from None
        if n == 1:
            text = text.lstrip("\ufeff")
        if progress is not None and done - mark >= PROGRESS_EVERY:
            progress(done)
            mark = done
        yield text
    if progress is not None:
        progress(done)


def import_csv(
    log: Log,
    path: Path,
    namespace: str,
    spec: CsvSpec,
    instrument: InstrumentOptions,
    *,
    batch_rows: int = BATCH_ROWS,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Import one CSV file into a namespace; resumable and idempotent."""
    started = time.monotonic()
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    try:
        sha256 = file_sha256(path)
    except OSError as e:
        raise IngestError(f"{path}: cannot read ({e.strerror})") from None
    state = read_state(log, namespace, spec)
    assert state.series is not None
    if not state.instrument_known:
        instrument_identity(spec, instrument)  # fail before reading the file
    planner = Planner(spec, state.series)
    result = ImportResult(path.name)
    writer = None
    try:
        with open(path, "rb") as f:
            for batch in plan_batches(iter_rows(_lines(f, spec.label, progress), spec), planner, batch_rows):
                step = []
                if not state.instrument_known:
                    step.append(instrument_draft(spec, instrument, batch))
                    state.instrument_known = True
                step += market_drafts(spec, batch)
                step.append(history_draft(spec, path.name, sha256, batch))
                if writer is None:  # opened only now: a file that fails early leaves no empty namespace
                    writer = log.writer(namespace)
                    if log.horizon(namespace) != state.horizon:
                        raise TapeError(f"namespace {namespace!r} was written while the import started: re-run it")
                writer.append(step)
                result.imported += len(batch)
                result.events_written += len(step)
    finally:
        if writer is not None:
            writer.close()
    result.rows_read, result.skipped = planner.read, planner.skipped
    result.elapsed = time.monotonic() - started
    return result

"""A run folded once for its report: the summary `tape runs show` prints and the time series the charts draw."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from eventstore.store import Log
from runtime import figures
from runtime.backtest.runs import fold_run, run_report
from runtime.report.timeline import Timeline


@dataclass(frozen=True)
class RunReport:
    run_id: str
    report: dict[str, Any]  # runs.run_report: statistics, benchmark, interventions, round trips, positions
    timeline: Timeline
    curve_ts: list[int]
    curve_equity: list[float]
    mode: str  # BACKTEST, LIVE or PAPER

    @property
    def currency(self) -> str:
        return str(self.report["currency"])

    @property
    def end_ts(self) -> int:
        return self.curve_ts[-1] if self.curve_ts else 0


def build_report(log: Log, run: str) -> RunReport:
    """Fold the run (a backtest, or a live or paper namespace up to now) with a Timeline watching."""
    timeline = Timeline()
    result = fold_run(log, run, observer=timeline)
    samples = result.curve.samples
    started = result.started or {}
    return RunReport(run, run_report(result, result.started), timeline, [t for t, _ in samples],
                     [float(e) for _, e in samples], str(started.get("mode") or "BACKTEST"))


def source_text(rep: dict[str, Any], r: RunReport) -> str:
    """What the run read: its source up to the seq it pinned, or a session's own recorded events."""
    if rep["source"] is None:
        return f"{r.mode.lower()} session: the namespace's own recorded market events, up to now"
    return f"{rep['source']} up to seq {rep['source_to_seq']:,}" if rep.get("source_to_seq") else str(rep["source"])


def compare_rows(reports: Sequence[RunReport]) -> tuple[list[str], list[list[str]]]:
    """The summary figures of several runs side by side: (header, rows), a row per figure in the first run's order
    (a figure one run lacks is blank there)."""
    keyed: list[dict[tuple[str, int], tuple[str, str]]] = []
    order: list[tuple[str, int]] = []
    for r in reports:
        seen: dict[str, int] = {}
        got = {}
        for label, value, detail in figures.summary_rows(r.report):
            key = (label, seen.get(label, 0))
            seen[label] = key[1] + 1
            got[key] = (value, detail)
            if key not in order:
                order.append(key)
        keyed.append(got)
    header = ["figure"] + [r.run_id for r in reports]
    rows = [["strategy"] + [f"{r.report['strategy']} {figures.params_text(r.report['params']) or '(defaults)'}"
                            for r in reports],
            ["source"] + [source_text(r.report, r) for r in reports]]
    rows += [[label] + [k.get((label, i), ("", ""))[0] for k in keyed] for label, i in order]
    return header, rows

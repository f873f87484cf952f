"""What every command group shares to talk to people: consoles, tables, time cells, money and ratios, TIME and
KEY=VALUE options."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from rich import box
from rich.console import Console
from rich.table import Table

from runtime.figures import money, pct, ratio  # noqa: F401  (the commands' formatting, shared with the report)
from runtime.times import TIME_FORMATS, TimeOutOfRange, format_ns, parse_time
from schemas.errors import TapeError


def console(stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr); a fixed wide width when not a terminal, so pipes get whole lines."""
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    return Console(file=stream, highlight=False, width=None if tty else 200, soft_wrap=False)


def table(*columns: str, right: tuple[str, ...] = ()) -> Table:
    """A borderless table with a header rule; the columns named in `right` are right-aligned."""
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for c in columns:
        t.add_column(c, justify="right" if c in right else "left", no_wrap=True)
    return t


def time_cell(ns: Optional[int]) -> str:
    """An event time as ISO-8601 UTC, or empty."""
    return "" if ns is None else format_ns(ns)


def time_option(value: Optional[str], option: str) -> Optional[int]:
    """A TIME option (--from, --to, --at) as epoch ns; a bad one is a one-line error naming the option."""
    if value is None:
        return None
    try:
        return parse_time(value)
    except TimeOutOfRange as e:
        raise TapeError(f"{option}: {e}") from None
    except TapeError:
        raise TapeError(f"{option}: bad time {value!r}; use {TIME_FORMATS}") from None


def params_option(items: list[str]) -> dict[str, str]:
    """Repeated --param KEY=VALUE options as a dict (the strategy parses the values)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise TapeError(f"--param {item!r}: use KEY=VALUE, e.g. --param fast=10")
        out[key.strip()] = value.strip()
    return out


def writable(path: Path) -> Path:
    """An --html target checked before any work is done."""
    if path.is_dir():
        raise TapeError(f"--html {path}: is a directory; give a file name, e.g. {path / 'report.html'}")
    if not path.parent.exists():
        raise TapeError(f"--html {path}: no directory {path.parent}; create it or choose another path")
    return path


def written(path: Path, text: str) -> None:
    """Write the page whole or not at all (a temporary file renamed over the target)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)

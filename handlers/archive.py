"""The archive of finished orders: what a handler must still answer about orders long over, packed small.

A handler that must answer exactly for every order it ever saw (the paper venue: a cancel of an order filled long
ago, a client order id used again; the outbound queue: a duplicate id) keeps the recent ones as objects and puts
the older ones here: one row per client order id with a few cells (text or None), added once, never changed.

Rows are packed as they come, each cell as a token against the cell above it in its column: the same text as
above, an empty token; the same stem with another number (the id 't1a2b3c-907' under 't1a2b3c-880', 'SIM-O12'
under 'SIM-O11'), the difference of the numbers ('27'); None, NONE; else '=' and the text. CELL joins the tokens,
ROW the rows: about 3 bytes an id for the queue, 7 for the venue. Every CHUNK rows are sealed into one text that
is packed from its own first row, so a snapshot copies texts already made and a restore keeps them as they are —
neither reads a row — and one chunk can be read alone. Each chunk keeps, per id stem, the span of the numbers it
holds: a question about an id reads only the chunks whose span covers it (once; they are kept read), and an id
beyond every span — each new order of the engine, whose id carries its intent's seq — is answered at once.
"""
from __future__ import annotations

from typing import Any

from projections.snapshot import CELL, NONE, ROW

CHUNK = 4096  # rows per sealed text
MAX_STEMS = 16  # id stems whose spans a chunk keeps; ids of further stems (or without a number) make it loose
_DIGITS = "0123456789"
_NOTHING: tuple[str | None, str | None, int] = (None, None, 0)

Cell = str | None


def _split(text: str) -> tuple[str | None, int]:
    """(stem, number) of a text ending in digits — number without leading zeros, below 10**18, stem + str(number)
    == text — else (None, 0)."""
    head = text.rstrip(_DIGITS)
    if len(head) == len(text):
        return None, 0
    body = text[len(head):][-18:].lstrip("0") or "0"
    return text[:len(text) - len(body)], int(body)


def _widen(spans: dict[str, list[int]], stem: str | None, number: int) -> bool:
    """Take an id's number into its stem's span; False when it has none (no number, or MAX_STEMS stems taken)."""
    if stem is None:
        return False
    span = spans.get(stem)
    if span is None:
        if len(spans) >= MAX_STEMS:
            return False
        spans[stem] = [number, number]
    elif number < span[0]:
        span[0] = number
    elif number > span[1]:
        span[1] = number
    return True


def _may_hold(spans: dict[str, list[int]], loose: bool, stem: str | None, number: int) -> bool:
    """False when ids of these spans (loose: and others) cannot include one of this stem and number."""
    span = spans.get(stem) if stem is not None else None
    if span is not None:
        return span[0] <= number <= span[1]
    return loose


class OrderArchive:
    """Rows of (client order id, *cells), each id added once; answers which ids it holds and with what cells."""

    def __init__(self, cells: int):
        self.cells = cells  # cells per id
        self._chunks: list[str] = []  # sealed texts of CHUNK rows
        self._rows: list[str] = []  # the open chunk's rows
        self._reach: list[dict[str, list[int]]] = [{}]  # per chunk (the open one last): id stem → [lowest, highest]
        self._loose = [False]  # per chunk: it holds ids its reach does not cover
        self._spans: dict[str, list[int]] = {}  # the same over every chunk
        self._any_loose = False
        self._last = [_NOTHING] * (cells + 1)  # per column: (text, stem, number) of the open chunk's last cell
        self._index: dict[int, dict[str, tuple[Cell, ...]]] = {}  # chunk → its rows, once a question read it

    def __len__(self) -> int:
        return len(self._chunks) * CHUNK + len(self._rows)

    def __contains__(self, cid: str) -> bool:
        return self.get(cid) is not None

    def get(self, cid: str) -> tuple[Cell, ...] | None:
        """The cells archived with `cid`, or None when it never was."""
        if not self._spans and not self._any_loose:  # nothing archived yet
            return None
        stem, number = _split(cid)
        if not _may_hold(self._spans, self._any_loose, stem, number):
            return None
        for k, reach in enumerate(self._reach):
            if _may_hold(reach, self._loose[k], stem, number):
                rows = self._index.get(k)
                if rows is None:
                    rows = self._index[k] = self._read(k)
                found = rows.get(cid)
                if found is not None:
                    return found
        return None

    def add(self, cid: str, *cells: Cell) -> None:
        """Archive an id (never archived before) with its cells."""
        last = self._last
        tokens = []
        for i, text in enumerate((cid, *cells)):
            if text is None:
                tokens.append(NONE)
                continue
            prev, prev_stem, prev_number = last[i]
            if i and text == prev:
                tokens.append("")
                continue
            stem, number = _split(text)
            last[i] = (text, stem, number)
            tokens.append(str(number - prev_number) if stem is not None and stem == prev_stem else "=" + text)
        k = len(self._chunks)
        self._rows.append(CELL.join(tokens))
        _, stem, number = last[0]
        if not _widen(self._reach[k], stem, number):
            self._loose[k] = True
        if not _widen(self._spans, stem, number):
            self._any_loose = True
        rows = self._index.get(k)
        if rows is not None:
            rows[cid] = cells
        if len(self._rows) == CHUNK:
            self._chunks.append(ROW.join(self._rows))
            self._rows = []
            self._reach.append({})
            self._loose.append(False)
            self._last = [_NOTHING] * (self.cells + 1)

    def snapshot(self) -> dict[str, Any]:
        """As plain data: the sealed texts as they are, the open chunk's rows, the spans, the last cells packed."""
        return {"chunks": list(self._chunks), "rows": ROW.join(self._rows),
                "reach": [{stem: list(span) for stem, span in r.items()} for r in self._reach],
                "loose": list(self._loose), "spans": {stem: list(span) for stem, span in self._spans.items()},
                "any_loose": self._any_loose, "last": [text for text, _, _ in self._last]}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from what snapshot() gave (no row is read)."""
        self._chunks = list(state["chunks"])
        self._rows = state["rows"].split(ROW) if state["rows"] else []
        self._reach = [{stem: list(span) for stem, span in r.items()} for r in state["reach"]]
        self._loose = list(state["loose"])
        self._spans = {stem: list(span) for stem, span in state["spans"].items()}
        self._any_loose = state["any_loose"]
        self._last = [_NOTHING if text is None else (text, *_split(text)) for text in state["last"]]
        self._index = {}

    def _read(self, k: int) -> dict[str, tuple[Cell, ...]]:
        """The rows of chunk k, unpacked: id → cells."""
        rows = self._chunks[k].split(ROW) if k < len(self._chunks) else self._rows
        last = [_NOTHING] * (self.cells + 1)
        out: dict[str, tuple[Cell, ...]] = {}
        for row in rows:
            values: list[Cell] = []
            for i, token in enumerate(row.split(CELL)):
                if token == NONE:
                    values.append(None)
                    continue
                if token == "":
                    text = last[i][0]
                elif token[0] == "=":
                    text = token[1:]
                    last[i] = (text, *_split(text))
                else:
                    _, stem, number = last[i]
                    number += int(token)
                    text = f"{stem}{number}"
                    last[i] = (text, stem, number)
                values.append(text)
            out[values[0]] = tuple(values[1:])  # type: ignore[index]
        return out

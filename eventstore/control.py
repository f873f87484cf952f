"""A namespace's control channel: how commands reach the session that writes it, on either backend.

The running session is a namespace's only writer, so an operator's command cannot be appended to the log by the
CLI: it is put in the namespace's control channel, which the session reads between steps and records each command
from as an event of its own before acting on it. The channel is an inbox, not the truth — a command counts once
the log holds it. Records are JSON objects, each at a position that only grows (a byte offset in the file
`NS/control.jsonl` of a file store, an offset in the one-partition topic `NS._control` on Kafka), so a restarted
session reads on after the position of the last command it recorded.
"""
from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventstore.errors import StoreError


@dataclass(frozen=True)
class ControlRecord:
    """One record of a control channel: its position and the command, or what is wrong with it."""

    position: int
    data: dict[str, Any] | None
    problem: str | None = None


class ControlChannel(ABC):
    """Commands for one namespace's session, in the order they were sent."""

    @abstractmethod
    def send(self, data: dict[str, Any]) -> int:
        """Put a command in the channel, durably; returns its position."""

    @abstractmethod
    def read(self, start: int) -> tuple[list[ControlRecord], int]:
        """The records from position `start` on, and the position to read from next time."""

    def close(self) -> None:
        return None


def parse_record(raw: bytes, position: int, where: str) -> ControlRecord:
    """A record's bytes as a command, or a problem naming where it is (`where`: file and byte, topic and offset)."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return ControlRecord(position, None, f"{where}: not a JSON command (damaged); it is skipped — send the "
                                             "command again")
    if not isinstance(data, dict) or not isinstance(data.get("command"), str):
        return ControlRecord(position, None, f"{where}: a record without a command; it is skipped — send the "
                                             "command again")
    return ControlRecord(position, data)


def encode_record(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


class FileControl(ControlChannel):
    """The control channel of a file store's namespace: NS/control.jsonl, one command per line."""

    NAME = "control.jsonl"

    def __init__(self, ns_dir: Path):
        self.path = ns_dir / self.NAME

    def send(self, data: dict[str, Any]) -> int:
        line = encode_record(data) + b"\n"
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(f"cannot open {self.path} ({e.strerror}): the namespace's directory must be writable "
                             "to send it commands") from None
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            os.write(fd, line)  # O_APPEND: one write, at the end, whatever else appends
            os.fsync(fd)
        finally:
            os.close(fd)
        return start

    def read(self, start: int) -> tuple[list[ControlRecord], int]:
        try:
            with open(self.path, "rb") as f:
                f.seek(start)
                chunk = f.read()
        except FileNotFoundError:
            return [], start
        out, pos = [], start
        while True:
            end = chunk.find(b"\n", pos - start)
            if end < 0:  # a line still being written (or torn by a crash of the sender): read it when complete
                return out, pos
            raw = chunk[pos - start:end]
            if raw.strip():
                out.append(parse_record(raw, pos, f"{self.path} at byte {pos}"))
            pos = start + end + 1

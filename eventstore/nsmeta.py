"""A file namespace's metadata, `namespace.json`: the partition count of each topic, written once, checked on open.

The counts decide which partition directories a reader reads and where a writer puts each key, so a damaged file
is refused — one line naming the file, the byte where the damage shows and the fix — before anything is read or
written. The file is the writer's exact text (`{"format": 1, "partitions": {...}}`, sorted keys, one line).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from eventstore.catalog import TOPICS
from eventstore.errors import CorruptLog

NAME = "namespace.json"
FORMAT = 1
_PARTITION_DIR = re.compile(r"^([a-z]+)-(\d+)$")


def meta_text(partitions: dict[str, int]) -> str:
    """The file's text for these partition counts, byte for byte as the writer writes it."""
    return json.dumps({"format": FORMAT, "partitions": dict(partitions)}, sort_keys=True) + "\n"


def write_meta(ns_dir: Path, partitions: dict[str, int]) -> None:
    """Create the file atomically (a crash leaves it whole or absent)."""
    path = ns_dir / NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(meta_text(partitions))
    os.replace(tmp, path)


def _byte(text: str, char_pos: int) -> int:
    return len(text[:char_pos].encode())


def meta_problem(ns_dir: Path, data: bytes) -> tuple[int, str] | None:
    """(byte, what is wrong) with the bytes of a namespace.json, or None when they are what a writer wrote."""
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        return e.start, "not UTF-8 text"
    try:
        meta = json.loads(text)
    except ValueError as e:
        return _byte(text, getattr(e, "pos", 0)), f"not JSON ({getattr(e, 'msg', e)})"
    if not isinstance(meta, dict) or set(meta) != {"format", "partitions"}:
        return 0, 'not {"format": …, "partitions": …}'
    if meta["format"] != FORMAT:
        return _byte(text, text.find('"format"')), f"unknown format {meta['format']!r}"
    parts = meta["partitions"]
    if not isinstance(parts, dict) or set(parts) != set(TOPICS):
        return _byte(text, text.find('"partitions"')), f"partitions must name the topics {', '.join(TOPICS)}"
    for topic, n in parts.items():
        if type(n) is not int or not 1 <= n <= 10_000:
            return _byte(text, text.find(f'"{topic}"')), f"partition count {n!r} of {topic} is not a count"
    written = meta_text(parts)
    if text != written:
        at = next((i for i, (a, b) in enumerate(zip(text, written)) if a != b), min(len(text), len(written)))
        return _byte(text, at), "not the text a writer writes (altered)"
    for d in _partition_dirs(ns_dir):
        topic, n = d
        if topic in parts and n >= parts[topic]:
            return (_byte(text, text.find(f'"{topic}"')),
                    f"{topic} has {parts[topic]} partition(s) but the directory {topic}-{n} exists")
    return None


def _partition_dirs(ns_dir: Path) -> list[tuple[str, int]]:
    out = []
    try:
        names = os.listdir(ns_dir)
    except FileNotFoundError:
        return out
    for name in names:
        m = _PARTITION_DIR.match(name)
        if m and m.group(1) in TOPICS and (ns_dir / name).is_dir():
            out.append((m.group(1), int(m.group(2))))
    return out


def counts_on_disk(ns_dir: Path) -> dict[str, int]:
    """The partition counts the partition directories suggest (at least 1 per topic): the fix to propose."""
    counts = dict.fromkeys(TOPICS, 1)
    for topic, n in _partition_dirs(ns_dir):
        counts[topic] = max(counts[topic], n + 1)
    return counts


def read_meta(ns_dir: Path) -> dict[str, int]:
    """The partition counts of a namespace, refused in one line when namespace.json is damaged."""
    path = ns_dir / NAME
    data = path.read_bytes()
    problem = meta_problem(ns_dir, data)
    if problem is not None:
        byte, what = problem
        raise CorruptLog(f"{path}: {what} at byte {byte}; restore it from a copy of the namespace, or write it "
                         f"as {meta_text(counts_on_disk(ns_dir)).strip()} (what the partition directories hold)")
    return dict(json.loads(data)["partitions"])

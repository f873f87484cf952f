"""Where a history file's text comes from: a plain file, a gzip file or a zip archive of one CSV, told by content.

The compression is read from the file's first bytes (gzip `1f 8b`, zip `PK 03 04`), not from its name, so a
renamed file still opens. A zip must hold one data file (or one `.csv` among others). Messages name the file as
the user gave it, and the member of a zip after it: `BTCUSDT-1m-2024-01.zip (BTCUSDT-1m-2024-01.csv)`.
Progress counts the bytes of the file on disk (gzip) or of the member as stored (zip, uncompressed size).
"""
from __future__ import annotations

import gzip
import hashlib
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from runtime.ingest.csvrows import IngestError

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
PROGRESS_EVERY = 1 << 18  # bytes between progress callbacks


@dataclass(frozen=True)
class Source:
    """One history file as opened: its path, how it is compressed, the zip member read, and its name in messages."""

    path: Path
    compression: str  # none | gzip | zip
    member: str | None = None
    size: int = 0  # what progress counts up to

    @property
    def label(self) -> str:
        return f"{self.path.name} ({self.member})" if self.member else self.path.name


def open_source(path: Path) -> Source:
    """The source a path names, its compression read from its first bytes; IngestError if unreadable."""
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
        size = path.stat().st_size
    except OSError as e:
        raise IngestError(f"{path}: cannot read ({e.strerror})") from None
    if magic.startswith(GZIP_MAGIC):
        return Source(path, "gzip", None, size)
    if magic == ZIP_MAGIC:
        member = _zip_member(path)
        return Source(path, "zip", member.filename, member.file_size)
    return Source(path, "none", None, size)


def _zip_member(path: Path) -> zipfile.ZipInfo:
    try:
        with zipfile.ZipFile(path) as archive:
            files = [i for i in archive.infolist() if not i.is_dir()]
    except zipfile.BadZipFile as e:
        raise IngestError(f"{path.name}: not a readable zip archive ({e})") from None
    if len(files) == 1:
        return files[0]
    csvs = [i for i in files if i.filename.lower().endswith(".csv")]
    if len(csvs) == 1:
        return csvs[0]
    names = ", ".join(i.filename for i in files) or "nothing"
    raise IngestError(f"{path.name}: the zip holds {names}; import an archive of one CSV file, or unzip it first")


def file_sha256(path: Path) -> str:
    """SHA-256 of the file's bytes as stored (compressed or not): what HistoryImported records of it."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError as e:
        raise IngestError(f"{path}: cannot read ({e.strerror})") from None
    return h.hexdigest()


@contextmanager
def source_lines(source: Source, progress: Callable[[int], None] | None = None) -> Iterator[Iterator[str]]:
    """The source's text lines, decoded as UTF-8 (a leading BOM dropped); errors name the file and line."""
    with open(source.path, "rb") as raw:
        if source.compression == "gzip":
            with gzip.GzipFile(fileobj=raw) as stream:
                yield _lines(stream, source, progress, raw.tell)
        elif source.compression == "zip":
            with zipfile.ZipFile(raw) as archive, archive.open(source.member or "") as stream:
                yield _lines(stream, source, progress, None)
        else:
            yield _lines(raw, source, progress, raw.tell)


def _lines(stream: IO[bytes], source: Source, progress: Callable[[int], None] | None,
           position: Callable[[], int] | None) -> Iterator[str]:
    done = mark = 0
    n = 0
    try:
        for n, data in enumerate(stream, 1):
            done = position() if position is not None else done + len(data)
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise IngestError(f"{source.label} line {n}: not UTF-8 text; save the file as UTF-8") from None
            if n == 1:
                text = text.lstrip("\ufeff")
            if progress is not None and done - mark >= PROGRESS_EVERY:
                progress(done)
                mark = done
            yield text
    except (EOFError, OSError, zlib.error, zipfile.BadZipFile) as e:
        what = {"gzip": "gzip file", "zip": "zip member"}.get(source.compression, "file")
        raise IngestError(f"{source.label} line {n + 1}: the {what} is damaged or cut short ({e})") from None
    if progress is not None:
        progress(done)

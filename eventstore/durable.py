"""Replacing a small file of a store whole and durably: the one way its metadata files are written."""
from __future__ import annotations

import os
from pathlib import Path


def replace_file(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file, fsync it, rename it over `path`, fsync the directory: a reader or a crash
    sees the old file or the new one, never a mix, and the new one survives a power loss once this returns."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Shared fixtures. Append new fixtures at the end; several test packages use this file."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# ---- eventstore (file log) ---------------------------------------------------------------------------------


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """A fresh, empty directory for a file: store."""
    d = tmp_path / "store"
    d.mkdir()
    return d


@pytest.fixture
def file_log(store_dir: Path):
    """A Log on a fresh file: store with today's catalog."""
    from eventstore.store import Log

    log = Log.open(f"file:{store_dir}")
    yield log
    log.close()


@pytest.fixture
def py_env() -> dict[str, str]:
    """Environment for subprocesses that import the project (the venv's python, project root on the path)."""
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests" / "eventstore"), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def python() -> str:
    """The interpreter running the tests, for subprocesses."""
    return sys.executable

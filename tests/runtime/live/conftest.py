"""Live-runtime tests: no `tape live` session a test started outlives it."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from killkit import reap  # noqa: E402


@pytest.fixture(autouse=True)
def _reap_sessions():
    yield
    reap()

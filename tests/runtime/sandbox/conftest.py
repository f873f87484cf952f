"""Fixtures of the sandbox tests: one history and one sandbox process per test module (speed 0: tests step it)."""
from __future__ import annotations

import pytest
from sandboxkit import Sandbox, write_history


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A store with namespace `hist`: BTCUSDT (tick 0.01, lot 0.00001, min notional 10) and 400 1m bars."""
    store = tmp_path_factory.mktemp("sandbox") / "store"
    write_history(store, "hist", bars=400)
    return store


@pytest.fixture(scope="module")
def sandbox(history):
    with Sandbox(history, "hist", speed="0", extra=("--seed", "3")) as sb:
        yield sb
        assert sb.errors() == ""  # no traceback, no warning: dropped connections and slow answers included


@pytest.fixture
def sb(sandbox):
    """The module's sandbox with no fault and no clock offset left over from the test before."""
    sandbox.clear_faults()
    sandbox.post("/sandbox/faults", {"clock_offset_ms": 0})
    yield sandbox
    sandbox.clear_faults()
    sandbox.post("/sandbox/faults", {"clock_offset_ms": 0})

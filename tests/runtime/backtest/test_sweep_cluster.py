"""`tape sweep --cluster`: the same points as tasks of a real Dask cluster (a scheduler and two worker processes the
test starts), each run byte for byte the run the local sweep makes; an unreachable scheduler is one line, exit 2."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_sweep import ingested, tape  # noqa: E402


@pytest.fixture
def cluster(tmp_path: Path, unavailable):
    """tcp://… of a Dask scheduler with two single-threaded worker processes, all on loopback."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        unavailable("Dask's distributed is not installed (the test extra installs it)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    file = tmp_path / "scheduler.json"
    dask = [sys.executable, "-m", "distributed.cli"]
    procs = [subprocess.Popen([*dask[:2], "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--scheduler-file", str(file), "--no-dashboard"], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(file.read_text())["address"]
        for _ in range(2):
            procs.append(subprocess.Popen([*dask[:2], "distributed.cli.dask_worker", address, "--nworkers", "1",
                                           "--nthreads", "1", "--no-dashboard"], env=env, cwd=tmp_path,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for p in procs[::-1]:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def run_files(store: Path, run: str) -> dict[str, bytes]:
    """Every file of a run's namespace in a file store, by path within it (but the writer's lock: its last pid)."""
    base = store / run
    return {str(f.relative_to(base)): f.read_bytes() for f in sorted(base.rglob("*"))
            if f.is_file() and f.name != ".lock"}


def test_a_sweep_on_a_dask_cluster_makes_the_local_sweeps_runs_byte_for_byte(tmp_path: Path, cluster: str) -> None:
    local = ingested(tmp_path, 1500)
    remote = tmp_path / "remote"
    shutil.copytree(local, remote / "store")  # the same source, byte for byte, in a store of its own
    remote = remote / "store"
    args = ("sweep", "--source", "src", "--strategy", "sma_cross", "--param", "fast=3,5", "--param", "slow=20,30",
            "--param", "quantity=0.5", "--json")
    here = tape(local, *args, "--workers", "2")
    there = tape(remote, *args, "--cluster", cluster)
    assert here.returncode == 0, here.stderr
    assert there.returncode == 0, there.stderr
    a, b = json.loads(here.stdout)["points"], json.loads(there.stdout)["points"]
    assert len(a) == 4 and {p["status"] for p in b} == {"ran"}
    assert a == b  # the same run ids, statistics and ranking
    from distributed import Client

    with Client(cluster, timeout=30) as client:  # the points ran as the cluster's tasks
        tasks = client.run_on_scheduler(lambda dask_scheduler: {
            k: sum(v.state_counts.values()) for k, v in dask_scheduler.task_prefixes.items()})
    assert tasks.get("run_point", 0) >= 4, tasks  # dask names the prefix without the leading underscore
    for p in a:
        files = run_files(local, p["run_id"])
        assert files and files == run_files(remote, p["run_id"]), p["run_id"]
    again = tape(remote, *args, "--cluster", cluster)
    assert {p["status"] for p in json.loads(again.stdout)["points"]} == {"reused"}


def test_an_unreachable_cluster_is_one_line_exit_2(tmp_path: Path) -> None:
    store = ingested(tmp_path, 200)
    for address, message in (("tcp://127.0.0.1:9", "no Dask scheduler answered"),
                             ("127.0.0.1:9", "give the Dask scheduler's address")):
        p = tape(store, "sweep", "--source", "src", "--strategy", "sma_cross", "--param", "fast=3,5", "--cluster",
                 address)
        err = p.stderr.strip()
        assert p.returncode == 2 and err.startswith("error: ") and message in err and "\n" not in err, err

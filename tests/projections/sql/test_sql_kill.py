"""A projector process killed with SIGKILL at random points mid-projection, then restarted: nothing lost or doubled.

After every kill the database must hold exactly the rows of a projection of the log up to its checkpoint
(computed in-process into a SQLite reference), and the final rows those of a one-shot projection.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import time

import sqlalchemy as sa
from sqlkit import dump, generate

from migrations import upgrade
from projections.sql import models as m
from projections.sql.projector import project

NS = "big"
BATCH = 100


def _checkpoint(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        v = conn.execute(sa.select(m.checkpoint.c.last_seq).where(m.checkpoint.c.namespace == NS)).scalar()
    return v or 0


def test_sigkill_mid_batch_then_restart(db, sql_log, engines, tmp_path, python, py_env):
    last = generate(sql_log, NS, orders=2500, seed=9, ticks_every=4)
    url = db.url.render_as_string(hide_password=False)
    ref = engines(f"sqlite:///{tmp_path / 'reference.sqlite'}")
    upgrade(ref)
    cmd = [python, "-m", "runtime.cli", f"--store={sql_log.url}", "project", NS, "--db", url,
           "--batch-events", str(BATCH)]
    rng = random.Random(20240607)
    kills: list[int] = []
    finished = False
    while len(kills) < 5:
        start = _checkpoint(db)
        p = subprocess.Popen(cmd, env=py_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # wait until this process has committed at least one batch, then kill it at a random moment after
        deadline = time.monotonic() + 60
        while p.poll() is None and _checkpoint(db) == start and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.08))
        if p.poll() is not None:
            out, err = p.communicate()
            assert p.returncode == 0, err.decode()
            finished = True
            break
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        p.stdout.close()
        p.stderr.close()
        # rows and checkpoint from one snapshot (the killed process's last COMMIT may land just after it)
        seen = dump(db, NS)
        cp = seen["projection_checkpoint"][0][1] if seen["projection_checkpoint"] else 0
        if cp == last:  # killed after its last commit, while exiting: not a mid-projection kill
            finished = True
            break
        kills.append(cp)
        # exactly the rows of the log's prefix up to the checkpoint: none lost, none doubled, none ahead
        project(sql_log, ref, NS, to_seq=cp, batch_events=5000)  # the reference moves forward to cp
        assert seen == dump(ref, NS), f"rows differ from the projection of seq 1..{cp}"
    if not finished:
        done = subprocess.run(cmd, env=py_env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    print(f"kills at checkpoints {kills} of {last}")
    assert len(kills) >= 3, f"only {len(kills)} kills landed mid-projection"
    assert all(0 < cp < last for cp in kills) and kills == sorted(kills)
    project(sql_log, ref, NS, rebuild=True, batch_events=5000)
    final = dump(db, NS)
    assert final == dump(ref, NS)
    assert final["projection_checkpoint"][0][1] == last

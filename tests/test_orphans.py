"""No orphans: pool workers (and the multiprocessing resource tracker) exit within seconds of a
parent killed with SIGKILL — which no handler can catch, so only the workers can notice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from procs import ENV, alive, pool_workers, start_cli, wait_for

GONE_WITHIN = 10.0  # seconds; the parent-death signal takes milliseconds, the watcher thread 0.5 s


def _kill_and_check(parent: subprocess.Popen, expected_workers: int) -> None:
    workers = wait_for(lambda: (w := pool_workers(parent.pid)) and
                       sum("resource_tracker" not in c for c in w.values()) >= expected_workers and w,
                       120, f"{expected_workers} pool workers of pid {parent.pid}")
    assert parent.poll() is None, "the parent ended before it could be killed"
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    wait_for(lambda: not any(alive(p) for p in workers), GONE_WITHIN,
             f"the children {sorted(workers)} of the killed parent to exit: {workers}")


def test_phantom_workers_die_with_their_killed_parent(tmp_path):
    parent = start_cli("data", "phantom", str(tmp_path / "ph"), "--cases", "400", "--shape", "64", "64", "64",
                       "--workers", "2")
    try:
        _kill_and_check(parent, 2)
    finally:
        parent.kill()


SCRIPT = textwrap.dedent("""
    import sys, time, types

    def init(parent):
        import synthmed.parallel as parallel
        if sys.argv[1] == "watcher":  # as on a platform without PR_SET_PDEATHSIG
            parallel.sys = types.SimpleNamespace(platform="darwin")
        parallel.worker_init(parent, None)

    if __name__ == "__main__":
        import os
        from concurrent.futures import ProcessPoolExecutor
        import multiprocessing
        from synthmed.parallel import process_pool
        if sys.argv[1] == "watcher":
            pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"), initializer=init,
                                       initargs=(os.getpid(),))
        else:
            pool = process_pool(2, threads=None)  # what the study's LocalExecutor uses
        futures = [pool.submit(time.sleep, 600) for _ in range(2)]
        time.sleep(600)
""")


def test_study_pool_workers_die_with_their_killed_parent(tmp_path):
    script = tmp_path / "pool.py"
    script.write_text(SCRIPT)
    for mode in ("pdeathsig", "watcher"):
        parent = subprocess.Popen([sys.executable, str(script), mode], env=ENV)
        try:
            _kill_and_check(parent, 2)
        finally:
            parent.kill()

"""Many threads, few connections: no connection is ever held by two threads,
the server never sees more than maxsize, and every borrow is given back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from server_helpers import ServerView, raw_connect

from pymysqlpool import ConnectionPool

pytestmark = pytest.mark.server

THREADS = 64
BORROWS = 1000
# Behind the blocking facade every call hops from the worker's thread to the
# pool's loop thread and back: the asyncio run took 87-99 s for 1000 borrows a
# thread (thread pool: 18-20 s), too close to BUDGET on a slower machine.
BORROWS_BY_SHELL = {"thread": BORROWS, "asyncio": BORROWS // 4}
MAXSIZE = 8
BUDGET = 240.0  # seconds for the whole run; far above the normal ~15 s, only stops a hang
SAMPLE_EVERY = 0.01


def test_hammer(make_pool: Callable[..., ConnectionPool], server_view: ServerView, admin: Any, shell: str) -> None:
    borrows = BORROWS_BY_SHELL[shell]
    pool = make_pool(maxsize=MAXSIZE, timeout=BUDGET, pool_name="hammer")
    deadline = time.monotonic() + BUDGET

    owners_lock = threading.Lock()
    in_use: set[int] = set()  # server thread ids currently held by some worker
    errors: list[str] = []
    done = [0] * THREADS
    start = threading.Barrier(THREADS + 1)

    def worker(index: int) -> None:
        try:
            start.wait(timeout=60)
        except threading.BrokenBarrierError:
            errors.append(f"worker {index}: never started")
            return
        for _ in range(borrows):
            if time.monotonic() > deadline:
                errors.append(f"worker {index}: out of time after {done[index]} borrows")
                return
            try:
                conn = pool.get_conn()
            except Exception as exc:
                errors.append(f"worker {index}: borrow failed: {exc!r}")
                return
            try:
                mine = conn.thread_id()
                with owners_lock:
                    if mine in in_use:
                        errors.append(f"worker {index}: connection {mine} lent to two threads at once")
                    in_use.add(mine)
                with conn.cursor() as cur:
                    cur.execute("SELECT CONNECTION_ID()")
                    (server_side,) = cur.fetchone()
                if server_side != mine:
                    errors.append(f"worker {index}: talked to session {server_side}, expected {mine}")
                with owners_lock:  # before the release: afterwards someone else may hold it
                    in_use.discard(mine)
            except Exception as exc:
                errors.append(f"worker {index}: query failed: {exc!r}")
            finally:
                pool.release(conn)
            done[index] += 1

    samples: list[int] = []
    sampling = threading.Event()
    stop_sampling = threading.Event()

    def sampler() -> None:
        watcher = raw_connect()
        try:
            sampling.set()
            for _ in range(int(BUDGET / SAMPLE_EVERY)):
                if stop_sampling.is_set():
                    return
                samples.append(server_view.count(watcher))
                time.sleep(SAMPLE_EVERY)
        except Exception as exc:
            errors.append(f"sampler: {exc!r}")
        finally:
            watcher.close()

    watcher_thread = threading.Thread(target=sampler, name="hammer-sampler", daemon=True)
    watcher_thread.start()
    assert sampling.wait(10)
    workers = [threading.Thread(target=worker, args=(i,), name=f"hammer-{i}", daemon=True) for i in range(THREADS)]
    for thread in workers:
        thread.start()
    start.wait(timeout=60)
    for thread in workers:
        thread.join(timeout=max(deadline - time.monotonic(), 0.1) + 5)
    stop_sampling.set()
    watcher_thread.join(timeout=10)

    assert not [t.name for t in workers if t.is_alive()], "workers still running after the time budget"
    assert not errors, f"{len(errors)} errors, first: {errors[:5]}"
    assert sum(done) == THREADS * borrows
    assert len(samples) >= 10, "the sampler hardly ran"
    assert max(samples) <= MAXSIZE, f"the server saw {max(samples)} connections of a pool with maxsize={MAXSIZE}"

    stats = pool.get_stats()
    assert 1 <= pool.total_num <= MAXSIZE
    assert pool.available_num == pool.total_num
    assert stats["borrows"] == stats["returns"] == THREADS * borrows
    assert stats["borrow_timeouts"] == stats["borrow_errors"] == 0
    assert stats["connect_errors"] == stats["closed_broken"] == 0
    assert stats["connections_made"] == pool.total_num  # nothing was dropped and replaced
    assert (stats["borrowed"], stats["waiting"], stats["connecting"]) == (0, 0, 0)
    assert server_view.count(admin) == pool.total_num

"""The asyncio pool's one-frame borrow (``lend_or_wait``) and clean return
(``release``), which run without the core's no-op lock: an interrupt at any
call on them leaves the books exact, and the forms of a return the docs
promise (``await pool.release``, ``await conn.close()``, a task of it) each
give the connection back once."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import pytest

from pymysqlpool.errors import ReturnConnectionToPoolError

from .fakes import FakeServer
from .test_lifecycle import conserved

pytest.importorskip("aiomysql")


class Interrupt(BaseException):
    """Stands for KeyboardInterrupt without upsetting pytest."""


@pytest.fixture
def async_pool_class(async_pool_class: Any, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    """conftest's, with connections in autocommit mode as the pool's: clean
    returns take the one-frame path (the fake's reset is not aiomysql's);
    a connection the pool drops is closed on the fake server."""

    async def connect(self: Any, limit: float) -> Any:
        raw = server(autocommit=True)
        raw._reader = None  # no stream: nothing for the loop's hang-up probe to read
        return raw, 0.0

    monkeypatch.setattr(async_pool_class, "_connect", connect)
    # aiomysql's force close drops a stream writer the fake has not: close the fake.
    monkeypatch.setattr("pymysqlpool._adriver.force_close", lambda raw: raw.close())
    return async_pool_class


def _books_exact(pool: Any, server: FakeServer) -> None:
    stats = pool.get_stats()
    assert stats["connecting"] == 0 and stats["waiting"] == 0
    assert stats["open"] == stats["idle"] + stats["borrowed"] == len(pool._slots) == server.open_count
    assert stats["borrows"] == stats["returns"] + stats["borrowed"]
    assert conserved(pool)
    pool._books.check_invariants(lending=not pool.closed)


def _raise_once(real: Callable[..., Any]) -> Callable[..., Any]:
    calls = {"n": 0}

    def once(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise Interrupt
        return real(*args, **kwargs)

    return once


# (what breaks, the name in pymysqlpool.aio that raises once, the step it interrupts)
STEPS = [
    ("proxy creation on the borrow", "lend", "borrow"),
    ("clock read on the borrow", "clock", "borrow"),
    ("clock read on the return", "clock", "return"),
    ("reset test on the return", "_needs_reset", "return"),
    ("hang-up probe on the borrow", "probe", "borrow"),
    ("hang-up probe on the return", "probe", "return"),
]


@pytest.mark.parametrize(("step", "target", "when"), STEPS, ids=[s[0] for s in STEPS])
def test_an_interrupt_on_the_one_frame_paths_keeps_the_books_exact(
    async_pool_class: Any, server: FakeServer, step: str, target: str, when: str
) -> None:
    import pymysqlpool.aio as aio

    async def main() -> None:
        pool = async_pool_class(maxsize=2, pre_create_num=1, host="127.0.0.1", validation_interval=60)
        async with pool:
            await pool.release(await pool.get_conn())  # the idle slot: the one-frame paths take it
            conn = await pool.get_conn() if when == "return" else None
            slot = pool._idle[-1] if conn is None else conn.lent_slot
            with pytest.MonkeyPatch.context() as patch, pytest.raises(Interrupt):
                if target == "clock":
                    pool._use_clock(_raise_once(pool._clock))
                elif target == "probe":
                    slot.probe = _raise_once(lambda timeout: [])
                else:
                    patch.setattr(aio, target, _raise_once(getattr(aio, target)))
                if conn is None:
                    await pool.get_conn()
                else:
                    await pool.release(conn)
            if conn is not None:
                # Every call of the return comes before its first store: still lent.
                assert not conn.returned and pool.get_stats()["borrowed"] == 1
                await pool.release(conn)
            # A slot the borrow gave up is closed by a task of the loop.
            for _ in range(500):  # bounded: 5 s
                if server.open_count == len(pool._slots):
                    break
                await asyncio.sleep(0.01)
            _books_exact(pool, server)
            assert pool.get_stats()["borrowed"] == 0
            conns = [await pool.get_conn(timeout=1) for _ in range(pool.maxsize)]
            for c in conns:
                await pool.release(c)
            _books_exact(pool, server)

    asyncio.run(main())


def test_every_form_of_a_return_gives_the_connection_back_once(async_pool_class: Any, server: FakeServer) -> None:
    async def main() -> None:
        async with async_pool_class(maxsize=1, pre_create_num=1, host="127.0.0.1") as pool:
            forms = [
                lambda c: pool.release(c),
                lambda c: c.close(),
                lambda c: asyncio.create_task(c.close()),
                lambda c: asyncio.ensure_future(pool.release(c)),
            ]
            for give_back in forms:
                conn = await pool.get_conn()
                await give_back(conn)
                assert conn.returned and pool.available_num == 1
                with pytest.raises(ReturnConnectionToPoolError, match="already returned"):
                    await conn.close()
                async with pool.connection() as again:  # the one connection, lent again
                    assert again.raw is not None
            stats = pool.get_stats()
            assert stats["borrows"] == stats["returns"] == 2 * len(forms)
            _books_exact(pool, server)

    asyncio.run(main())


def test_the_cluster_seam_lends_at_once_or_gives_what_to_await(async_pool_class: Any, server: FakeServer) -> None:
    async def main() -> None:
        async with async_pool_class(maxsize=1, pre_create_num=1, host="127.0.0.1") as pool:
            first = pool.lend_or_wait()
            assert type(first).__name__ == "AsyncPooledConnection" and not first.returned
            pending = pool.lend_or_wait()  # none idle, maxsize reached: what to await
            assert asyncio.iscoroutine(pending)
            waiter = asyncio.ensure_future(pending)
            await asyncio.sleep(0)
            assert pool.get_stats()["waiting"] == 1
            await pool.release(first)
            second = await asyncio.wait_for(waiter, 5)
            assert second.raw is not None and first.returned
            await pool.release(second)
            _books_exact(pool, server)

    asyncio.run(main())

"""The asyncio driver's packet reader: a packet already whole in the stream's
buffer is served without going through aiomysql's reader; every other case
(a packet still arriving, an error packet, a wrong sequence number, a stream
error, a 16 MiB packet) is aiomysql's, with its errors.

The real driver class on a real ``asyncio.StreamReader`` fed by hand: no
server, every byte placed deliberately.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest

pytest.importorskip("aiomysql")

import pymysql.err

from pymysqlpool import _adriver

LONG = 0xFFFFFF  # a packet of this length continues in the next one


def packet(seq: int, payload: bytes, length: int | None = None) -> bytes:
    n = len(payload) if length is None else length
    return struct.pack("<HBB", n & 0xFFFF, n >> 16, seq) + payload


def error_packet(seq: int, code: int, message: str) -> bytes:
    return packet(seq, b"\xff" + struct.pack("<H", code) + b"#HY000" + message.encode())


class Transport(asyncio.Transport):
    """Records the reader's flow control (a full buffer pauses reading)."""

    def __init__(self) -> None:
        super().__init__()
        self.paused = 0
        self.resumed = 0

    def pause_reading(self) -> None:
        self.paused += 1

    def resume_reading(self) -> None:
        self.resumed += 1


class NoSlowPath(AssertionError):
    pass


def make_conn(limit: int = 2**16) -> Any:
    raw = _adriver.Connection(host="127.0.0.1")
    reader = asyncio.StreamReader(limit=limit)
    reader.set_transport(Transport())
    raw._reader = reader
    raw._next_seq_id = 1
    return raw, reader


def forbid_slow_path(reader: asyncio.StreamReader) -> None:
    async def readexactly(n: int) -> bytes:
        raise NoSlowPath(f"readexactly({n}) called for a buffered packet")

    reader.readexactly = readexactly  # type: ignore[method-assign]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_whole_packets_are_served_in_order_without_the_streams_reader() -> None:
    async def main() -> None:
        raw, reader = make_conn()
        forbid_slow_path(reader)
        reader.feed_data(packet(1, b"\x01first") + packet(2, b"\x02second") + packet(3, b"\x03third")[:5])
        first = await raw._read_packet()
        second = await raw._read_packet()
        assert (first.get_all_data(), second.get_all_data()) == (b"\x01first", b"\x02second")
        assert raw._next_seq_id == 3
        assert bytes(reader._buffer) == packet(3, b"\x03third")[:5]  # the next packet's part stays

    run(main())


def test_the_sequence_number_wraps_at_256() -> None:
    async def main() -> None:
        raw, reader = make_conn()
        forbid_slow_path(reader)
        raw._next_seq_id = 255
        reader.feed_data(packet(255, b"\x00a") + packet(0, b"\x00b"))
        assert (await raw._read_packet()).get_all_data() == b"\x00a"
        assert raw._next_seq_id == 0
        assert (await raw._read_packet()).get_all_data() == b"\x00b"
        assert raw._next_seq_id == 1

    run(main())


def test_a_packet_still_arriving_is_awaited_then_read_whole() -> None:
    async def main() -> None:
        raw, reader = make_conn()
        whole = packet(1, b"\x00" + b"x" * 100)
        reader.feed_data(whole[:3])  # not even the header
        read = asyncio.ensure_future(raw._read_packet())
        await asyncio.sleep(0)
        reader.feed_data(whole[3:50])  # the header and part of the body
        await asyncio.sleep(0)
        assert not read.done()
        reader.feed_data(whole[50:] + packet(2, b"\x00next"))
        assert (await read).get_all_data() == whole[4:]
        assert (await raw._read_packet()).get_all_data() == b"\x00next"
        assert raw._next_seq_id == 3

    run(main())


def test_a_cancelled_wait_for_a_packet_still_arriving_closes_the_connection() -> None:
    async def main() -> None:
        raw, reader = make_conn()
        closed = []
        raw.close = lambda: closed.append(True)
        reader.feed_data(packet(1, b"\x00abc")[:6])
        read = asyncio.ensure_future(raw._read_packet())
        await asyncio.sleep(0)
        read.cancel()
        with pytest.raises(asyncio.CancelledError):
            await read
        assert closed == [True]  # aiomysql's reader: a cut answer is never reused

    run(main())


def test_reading_resumes_the_transport_once_the_buffer_drained() -> None:
    async def main() -> None:
        raw, reader = make_conn(limit=64)
        forbid_slow_path(reader)
        rows = [packet(1 + i, b"\x00" + bytes([i]) * 40) for i in range(6)]
        reader.feed_data(b"".join(rows))  # 270 bytes > 2 * limit: reading paused
        transport = reader._transport
        assert transport.paused == 1 and transport.resumed == 0
        for i in range(6):
            assert (await raw._read_packet()).get_all_data() == b"\x00" + bytes([i]) * 40
        assert transport.resumed == 1 and not reader._paused

    run(main())


def test_an_error_packet_raises_the_servers_error_and_ends_an_unbuffered_result() -> None:
    async def main() -> None:
        raw, reader = make_conn()

        class Result:
            unbuffered_active = True

        raw._result = Result()
        reader.feed_data(error_packet(1, 1064, "You have an error") + packet(2, b"\x00after"))
        with pytest.raises(pymysql.err.ProgrammingError) as caught:
            await raw._read_packet()
        assert caught.value.args[0] == 1064
        assert raw._result.unbuffered_active is False
        assert raw._next_seq_id == 2
        assert (await raw._read_packet()).get_all_data() == b"\x00after"

    run(main())


def test_a_wrong_sequence_number_is_aiomysqls_error() -> None:
    async def main() -> None:
        raw, reader = make_conn()
        reader.feed_data(packet(7, b"\x00abc"))
        with pytest.raises(pymysql.err.InternalError, match="Packet sequence number wrong - got 7 expected 1"):
            await raw._read_packet()

    run(main())


def test_a_stream_error_is_raised_even_with_a_whole_packet_buffered() -> None:
    async def main() -> None:
        raw, reader = make_conn()
        reader.feed_data(packet(1, b"\x00abc"))
        reader.set_exception(ConnectionResetError("reset by peer"))
        with pytest.raises(pymysql.err.OperationalError) as caught:
            await raw._read_packet()
        assert caught.value.args[0] == 2013

    run(main())


def test_a_whole_packet_before_the_end_of_stream_is_served_then_the_end_is_lost_connection() -> None:
    async def main() -> None:
        raw, reader = make_conn()
        reader.feed_data(packet(1, b"\x00last") + packet(2, b"\x00cut")[:5])
        reader.feed_eof()
        assert (await raw._read_packet()).get_all_data() == b"\x00last"
        with pytest.raises(pymysql.err.OperationalError) as caught:
            await raw._read_packet()
        assert caught.value.args[0] == 2013

    run(main())


def test_a_16_mib_packet_is_joined_with_its_continuation() -> None:
    async def main() -> None:
        raw, reader = make_conn(limit=2**25)
        body = b"\x00" + b"y" * (LONG - 1)
        reader.feed_data(packet(1, body) + packet(2, b"tail") + packet(3, b"\x00next"))
        assert (await raw._read_packet()).get_all_data() == body + b"tail"
        assert (await raw._read_packet()).get_all_data() == b"\x00next"

    run(main())

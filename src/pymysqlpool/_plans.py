"""What a plan is and what it may ask of its shell.

A plan (see ``_core.py``) is a generator that yields requests: ``(op,
argument, argument)`` with ``op`` one of :class:`Op`. This module names the
requests, the verdicts on an idle slot granted to a borrow, and the timings
the plans share. Constants only: it touches no state.
"""

from __future__ import annotations

from typing import Any, Generator, Tuple

# Timings shared by the plans of several concerns (borrowing, disposal, upkeep).
BACKOFF_FIRST = 0.05  # first pause after a failed connect (or kill), doubled up to BACKOFF_CAP
BACKOFF_CAP = 2.0
MIN_ATTEMPT = 0.005  # a ping or connect with less time than this left is not started
TICK = 1.0  # longest pause between maintenance rounds


class Op:
    """What a plan asks its shell to do: the first item of each request it
    yields. Each group of constants (these, :class:`Verdict`, the slot states
    of :class:`~pymysqlpool._slot.SlotState`) has values of its own, so one
    compared with another's is never equal."""

    DIAL = 0  # open a connection within budget seconds -> (raw, keepalive seconds)
    CHECK = 1  # validate an idle connection (check= or a ping) within budget -> None, raises if dead
    PING = 2  # keep-alive ping -> None, raises if dead
    CLOSE = 3  # close politely (COM_QUIT), never raises
    RESET = 4  # clean a returned connection (see _reset_plan); full: the session reset -> True if a ROLLBACK was sent
    WAIT = 5  # wait on a waiter up to timeout -> True if woken
    SLEEP = 6  # pause -> None
    KILL = 7  # end a session ((id, age s)) from a side connection within budget -> True once gone; raises if not sent


class Verdict:
    """What becomes of an idle slot granted to a borrow (``PoolCore._verdict``)."""

    LEND = 10  # lent as it is
    VALIDATE = 11  # checked first
    EXPIRED = 12  # closed: past its lifetime


# Read once into module constants: the code reads globals, never the classes'
# attributes (CPython 3.11 does not specialize those reads).
DIAL, CHECK, PING, CLOSE, RESET, WAIT, SLEEP, KILL = (
    Op.DIAL,
    Op.CHECK,
    Op.PING,
    Op.CLOSE,
    Op.RESET,
    Op.WAIT,
    Op.SLEEP,
    Op.KILL,
)
LEND, VALIDATE, EXPIRED = Verdict.LEND, Verdict.VALIDATE, Verdict.EXPIRED

Request = Tuple[int, Any, Any]
Plan = Generator[Request, Any, Any]

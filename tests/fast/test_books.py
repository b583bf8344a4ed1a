"""The books alone (``_books.Books``): each verb moves a slot and the counts
together, and ``check_invariants`` names every rule a wrong count breaks.

The state machine tests (test_core_machine.py, test_state_machine.py) call
``check_invariants`` after every step; these tests pin each verb's effect and
show that each rule can fail."""

from __future__ import annotations

from typing import Any, List

import pytest

from pymysqlpool._books import Books
from pymysqlpool._slot import GONE, HELD, IDLE, KILLING, NEW, OUT, Slot
from pymysqlpool._waiting import DialToken, Waiter
from pymysqlpool.stats import Counters


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_books(maxsize: int = 3) -> Books:
    return Books(maxsize, Counters(), Clock())


def new_slot(name: str = "raw") -> Slot:
    return Slot(name, 100.0, float("inf"), 0, 0.0)


def waiter(books: Books, backoff: bool = False) -> Waiter:
    woken: List[int] = []
    w = Waiter(books.clock(), lambda: woken.append(1))
    w.backoff = backoff
    books.queue(w)
    return w


def idle_slots(books: Books, count: int) -> List[Slot]:
    slots = []
    for i in range(count):
        slot = new_slot(f"raw{i}")
        assert books.book_idle(slot, books.new_token(), float(i))
        slots.append(slot)
    return slots


def broken(books: Books, match: str) -> None:
    with pytest.raises(AssertionError, match=match):
        books.check_invariants()


def test_booking_counts_open_and_made() -> None:
    books = make_books()
    token = books.new_token()
    assert books.connecting == 1 and books.has_room()
    slot = new_slot()
    assert books.book_lent(slot, token)
    assert slot.state == OUT and slot in books.slots
    assert books.open == 1 and books.connecting == 0 and books.borrowed == 1
    assert books.stats.connections_made == 1
    assert not token.live
    books.check_invariants()


def test_booking_with_a_revoked_token_needs_room() -> None:
    books = make_books(maxsize=1)
    token = books.new_token()
    assert books.spend(token)  # revoked as orphaned
    assert not books.spend(token)
    other = books.new_token()  # its place taken
    assert not books.book_lent(new_slot(), token)
    assert books.open == 0 and books.stats.connections_made == 0
    assert books.book_lent(new_slot(), other)
    books.check_invariants()
    # With room left, a revoked token still books.
    roomy = make_books(maxsize=2)
    late = roomy.new_token()
    roomy.spend(late)
    assert roomy.book_idle(new_slot(), late, 1.0) and roomy.open == 1
    roomy.check_invariants()


def test_book_idle_parks_or_serves_the_oldest_waiter() -> None:
    books = make_books()
    slot = new_slot()
    assert books.book_idle(slot, None, 5.0)
    assert slot.state == IDLE and list(books.idle) == [slot] and books.held == 0 and slot.last_used == 5.0
    books.check_invariants()
    lent = books.lend_newest()
    assert lent is slot and slot.state == OUT and books.stats.borrows == 1
    assert books.lend_newest() is None
    w = waiter(books)
    fresh = new_slot("fresh")
    assert books.book_idle(fresh, books.new_token(), 6.0)
    assert w.grant is fresh and fresh.state == OUT and not w.queued and not books.waiters
    assert books.held == 0 and books.stats.borrows == 2
    books.check_invariants()


def test_lend_newest_takes_the_most_recently_used() -> None:
    books = make_books()
    first, second = idle_slots(books, 2)
    assert books.lend_newest() is second
    assert list(books.idle) == [first]
    books.check_invariants()


def test_hand_over_counts_the_wait_and_the_borrow() -> None:
    books = make_books(maxsize=1)
    (slot,) = idle_slots(books, 1)
    assert books.lend_newest() is slot
    w = waiter(books)
    books.clock.now += 2.0  # type: ignore[attr-defined]
    books.hold(slot)
    books.park(slot, 7.0)
    assert w.grant is slot and slot.state == OUT and slot.last_used == 7.0
    assert books.stats.borrows == 2 and books.stats.borrow_wait_ms == pytest.approx(2000.0)
    assert books.held == 0
    books.check_invariants()


def test_serve_waiter_with_room_gives_a_right_to_dial() -> None:
    books = make_books(maxsize=1)
    assert books.serve_waiter_with_room() is False  # nobody waits
    backing_off = waiter(books, backoff=True)
    assert books.serve_waiter_with_room() is False  # it waits for a returned slot only
    assert books.withdraw(backing_off) and not books.withdraw(backing_off)
    w = waiter(books)
    assert books.serve_waiter_with_room()
    assert isinstance(w.grant, DialToken) and books.connecting == 1 and books.stats.borrows == 1
    w2 = waiter(books)
    assert not books.serve_waiter_with_room()  # no room: one is being dialed
    assert books.fail_waiters(RuntimeError("closed")) == 1
    assert isinstance(w2.error, RuntimeError) and not books.waiters
    books.check_invariants()


def test_hold_unlend_and_park_keep_held_exact() -> None:
    books = make_books()
    a, b, c = idle_slots(books, 3)
    assert books.hold_idle_end(newest=False) is a and a.state == HELD
    assert books.hold_idle_end(newest=True) is c and c.state == HELD
    assert books.held == 2 and list(books.idle) == [b]
    books.check_invariants()
    books.park(a, 9.0)
    books.park(c, 9.0)
    assert books.held == 0 and list(books.idle) == [b, a, c]
    books.check_invariants()
    lent = books.lend_newest()
    assert lent is c
    assert books.unlend(c) and c.state == HELD and books.stats.borrows == 0 and books.held == 1
    assert not books.unlend(c)
    books.check_invariants()
    lent = books.lend_newest()
    assert lent is a
    books.hold(a)
    assert books.held == 2 and books.borrowed == 0
    books.check_invariants()
    empty = make_books()
    assert empty.hold_idle_end(newest=False) is None and empty.hold_idle_end(newest=True) is None


def test_park_of_a_held_slot_goes_idle_and_uncounts_it() -> None:
    books = make_books()
    (slot,) = idle_slots(books, 1)
    books.lend_newest()
    books.hold(slot)
    books.park(slot, 3.0)
    assert slot.state == IDLE and books.held == 0 and list(books.idle) == [slot] and slot.last_used == 3.0
    books.check_invariants()


def test_hold_idle_takes_the_picked_oldest_first() -> None:
    books = make_books()
    slots = idle_slots(books, 3)
    taken = books.hold_idle(lambda slot, position: position != 1)
    assert taken == [slots[0], slots[2]] and list(books.idle) == [slots[1]]
    assert all(s.state == HELD for s in taken) and books.held == 2
    assert books.hold_idle(lambda slot, position: False) == [] and books.held == 2
    books.check_invariants()


def test_unbook_each_state() -> None:
    books = make_books()
    a, b, c = idle_slots(books, 3)
    assert books.unbook(a, "closed_idle")  # IDLE: leaves the deque
    assert a.state == GONE and a not in books.slots and list(books.idle) == [b, c]
    assert not books.unbook(a, "closed_idle")
    books.hold_idle_end(newest=True)
    assert books.unbook(c, "closed_broken")  # HELD
    assert books.held == 0 and books.open == 1
    books.lend_newest()
    assert books.unbook(b, "closed_broken")  # OUT
    assert books.open == 0 and books.held == 0
    fresh = new_slot()
    assert fresh.state == NEW
    assert books.unbook(fresh, "closed_on_pool_close")  # NEW: counted made and closed
    assert books.stats.connections_made == 4
    assert books.stats.closes["closed_idle"] == 1
    assert books.stats.closes["closed_broken"] == 2
    assert books.stats.closes["closed_on_pool_close"] == 1
    books.check_invariants()


def test_unbook_of_an_interrupted_park() -> None:
    books = make_books()
    (slot,) = idle_slots(books, 1)
    books.idle.clear()  # IDLE, never queued
    broken(books, "IDLE but 0 in the idle deque")
    assert books.unbook(slot, "closed_orphaned")
    books.check_invariants()


def test_a_killing_slot_stays_counted_until_its_kill_ends() -> None:
    books = make_books(maxsize=1)
    (slot,) = idle_slots(books, 1)
    books.hold_idle_end(newest=True)
    books.await_kill(slot, "closed_unread", 42.0)
    assert slot.state == KILLING and slot.retire == "closed_unread" and slot.kill_by == 42.0
    assert books.killing == 1 and books.held == 1 and books.open == 1
    assert books.stats.closes["closed_unread"] == 1
    books.check_invariants()
    assert not books.unbook(slot, "closed_unread")  # not by a close: by the kill's end
    assert not books.has_room()
    assert books.unbook(slot, "closed_unread", killed=True)
    assert books.killing == 0 and books.held == 0 and books.open == 0
    assert books.stats.closes["closed_unread"] == 1  # counted once
    assert not books.unbook(slot, "closed_unread", killed=True)
    assert books.has_room()
    books.check_invariants()


def test_swap_counts_one_closed_one_made() -> None:
    books = make_books()
    token = books.new_token()
    slot = new_slot("dead")
    books.book_lent(slot, token)
    slot.session = 41
    fresh = Slot("fresh", 120.0, 500.0, 0, 3.0)
    fresh.probe = lambda timeout: []
    fresh.session = 42  # a kill of the slot's session must reach the new one
    books.swap(slot, fresh)
    assert fresh.state == GONE and slot.raw == "fresh" and slot.created == 120.0
    assert slot.expires == 500.0 and slot.keepalive == 3.0
    assert slot.probe is fresh.probe and slot.session == 42
    assert books.stats.connections_made == 2 and books.stats.closes["closed_broken"] == 1
    books.check_invariants()


def test_reset_stats_and_forget_all_keep_made_balanced() -> None:
    books = make_books()
    idle_slots(books, 2)
    books.lend_newest()
    books.reset_stats(Counters())
    books.check_invariants()
    assert books.base == 2
    forgotten = books.forget_all()
    assert len(forgotten) == 2 and books.open == books.held == books.killing == 0
    assert not books.idle and not books.slots and not books.waiters and not books.dialing
    books.check_invariants()
    idle_slots(books, 1)
    books.check_invariants()


def test_forget_all_forgets_the_parent_s_waiters_and_dials() -> None:
    """After a fork the parent's borrowers and dials are not the child's: a
    waiter left queued would be handed the child's next return, a right to
    dial left counted would take a place for ever."""
    books = make_books(maxsize=3)
    slot = new_slot()
    books.book_lent(slot, books.new_token())
    books.new_token()  # a dial in flight
    idle_slots(books, 1)
    assert books.lend_newest() is not None
    queued = waiter(books)  # full: 2 open + 1 dialing
    books.check_invariants()
    books.forget_all()
    assert not books.waiters and not books.dialing and books.connecting == 0 and books.has_room()
    books.check_invariants()
    child = new_slot("child's")
    assert books.book_idle(child, books.new_token(), 1.0)
    assert child.state == IDLE and queued.grant is None  # parked, not handed to the parent's borrower
    books.check_invariants()


def test_in_state() -> None:
    books = make_books()
    a, b = idle_slots(books, 2)
    books.lend_newest()
    assert books.in_state(OUT) == [b] and books.in_state(IDLE) == [a]


# -- every rule can fail -------------------------------------------------------


def mutilated(change: Any) -> Books:
    books = make_books(maxsize=2)
    idle_slots(books, 2)
    change(books)
    return books


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: setattr(next(iter(b.slots)), "state", NEW), "NEW or GONE"),
        (lambda b: setattr(b, "open", 3), "open=3 but 2 slots"),
        (lambda b: b.idle.append(b.idle[0]), "queued idle twice"),
        (lambda b: setattr(b.idle[0], "state", OUT), "not IDLE or not open"),
        (lambda b: b.slots.discard(b.idle[0]), "open=2 but 1 slots"),
        (lambda b: setattr(b, "killing", 1), "killing=1 but 0 slots KILLING"),
        (lambda b: setattr(b, "held", 1), "held=1"),
        (lambda b: b.dialing.add(DialToken(0.0)), "over maxsize"),
        (lambda b: setattr(b, "maxsize", 1), "over maxsize"),
        (lambda b: setattr(b.stats, "connections_made", 5), "connections_made=5"),
    ],
)
def test_check_invariants_names_the_broken_rule(change: Any, message: str) -> None:
    broken(mutilated(change), message)


def test_an_idle_slot_not_open_is_caught() -> None:
    books = make_books()
    (slot,) = idle_slots(books, 1)
    books.slots.discard(slot)
    books.open -= 1
    books.stats.connections_made -= 1
    broken(books, "not IDLE or not open")


def test_a_lent_count_off_by_one_is_caught() -> None:
    books = make_books()
    (slot,) = idle_slots(books, 1)
    books.lend_newest()
    slot.state = HELD  # held not counted: borrowed says 1, none OUT
    with pytest.raises(AssertionError):
        books.check_invariants()
    books.held += 1
    books.check_invariants()
    slot.state = OUT
    broken(books, "held=1 but 0 HELD")


def test_a_spent_token_still_counted_is_caught() -> None:
    books = make_books()
    token = books.new_token()
    token.live = False
    broken(books, "spent right to dial")


def test_waiter_rules() -> None:
    books = make_books(maxsize=1)
    w = waiter(books)
    broken(books, "room to dial")  # nobody dials for it
    books.queue(w)
    broken(books, "queued twice")
    books.waiters.pop()
    w.grant = DialToken(0.0)
    broken(books, "already served")
    w.grant = None
    books.new_token()
    books.check_invariants()  # it waits for the one being dialed
    with pytest.raises(AssertionError, match="closed pool"):
        books.check_invariants(lending=False)
    idle = make_books(maxsize=2)
    idle_slots(idle, 1)
    idle.dialing.add(DialToken(0.0))
    waiter(idle)
    broken(idle, "idle slots while borrowers wait")


def test_a_closed_pool_keeps_nothing_idle() -> None:
    books = make_books()
    idle_slots(books, 1)
    with pytest.raises(AssertionError, match="closed pool keeps idle"):
        books.check_invariants(lending=False)


def test_surplus_allows_resize_extras() -> None:
    books = make_books(maxsize=2)
    idle_slots(books, 2)
    books.maxsize = 1
    broken(books, "over maxsize")
    books.check_invariants(surplus=1)
    books.idle[0].doom("closed_resized")
    books.check_invariants()
    books.maxsize = 0  # one doomed slot excuses one extra, not two
    broken(books, "over maxsize")


def test_constant_groups_do_not_share_values() -> None:
    import pymysqlpool._plans as plans
    import pymysqlpool._slot as slot_module

    groups = {}
    for namespace in (plans.Op, plans.Verdict, slot_module.SlotState):
        names = {k: v for k, v in vars(namespace).items() if k.isupper()}
        groups[namespace.__name__] = names
        for name, value in names.items():  # the module constant is the class's
            module = slot_module if namespace is slot_module.SlotState else plans
            assert getattr(module, name) == value, name
        assert len(set(names.values())) == len(names), namespace.__name__
    values = [v for names in groups.values() for v in names.values()]
    assert len(set(values)) == len(values), groups
    assert len(groups["Op"]) == 8 and len(groups["Verdict"]) == 3 and len(groups["SlotState"]) == 6


def test_pool_states_are_a_group_of_their_own() -> None:
    import pymysqlpool._lifecycle as lifecycle
    import pymysqlpool._plans as plans
    import pymysqlpool._slot as slot_module

    others = {v for ns in (plans.Op, plans.Verdict, slot_module.SlotState) for k, v in vars(ns).items() if k.isupper()}
    states = {k: v for k, v in vars(lifecycle.PoolState).items() if k.isupper()}
    assert set(states) == {"NEW", "PENDING", "OPEN", "CLOSED"}
    assert len(set(states.values())) == 4 and not others & set(states.values())
    for name, value in states.items():
        assert getattr(lifecycle, f"POOL_{name}") == value

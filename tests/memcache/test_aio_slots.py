"""The async pool's connection slots: taken without an await when free, handed in order."""

from __future__ import annotations

import asyncio

from errpolicy_memcache._aio_transport import _Slots


async def test_a_released_slot_goes_to_the_oldest_waiter_not_a_newcomer() -> None:
    """A waiter is never overtaken by a task that arrives after it."""
    slots = _Slots(1)
    assert slots.take_now()
    loop = asyncio.get_running_loop()
    first = asyncio.ensure_future(slots.take(loop.time() + 5))
    await asyncio.sleep(0)
    slots.release()
    expected = (False, True)
    assert expected == (slots.take_now(), await first)


async def test_a_waiter_that_times_out_takes_nothing_and_leaves_the_queue() -> None:
    """Past its deadline a waiter gets False, and the next release frees the slot."""
    slots = _Slots(1)
    assert slots.take_now()
    loop = asyncio.get_running_loop()
    assert not await slots.take(loop.time() + 0.01)
    slots.release()
    assert (1, 0) == (slots._value, len(slots._waiters))


async def test_a_waiter_cancelled_after_it_was_handed_a_slot_passes_it_on() -> None:
    """A slot handed to a task that is cancelled before it runs is not lost."""
    slots = _Slots(1)
    assert slots.take_now()
    loop = asyncio.get_running_loop()
    doomed = asyncio.ensure_future(slots.take(loop.time() + 5))
    second = asyncio.ensure_future(slots.take(loop.time() + 5))
    await asyncio.sleep(0)
    slots.release()  # handed to ``doomed``, which has not run since
    doomed.cancel()
    results = await asyncio.gather(doomed, second, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert True is results[1]
    slots.release()
    assert (1, 0) == (slots._value, len(slots._waiters))


async def test_many_tasks_share_few_slots_and_give_every_one_back() -> None:
    """1,000 tasks over 4 slots: never more than 4 held, all 4 free at the end."""
    slots = _Slots(4)
    held = 0
    most = 0
    loop = asyncio.get_running_loop()

    async def one() -> None:
        nonlocal held, most
        assert slots.take_now() or await slots.take(loop.time() + 30)
        held += 1
        most = max(most, held)
        await asyncio.sleep(0)
        held -= 1
        slots.release()

    await asyncio.gather(*(one() for _ in range(1000)))
    assert (4, 4, 0) == (most, slots._value, len(slots._waiters))

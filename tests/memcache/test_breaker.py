"""The per-node circuit breaker, on a fake clock."""

from __future__ import annotations

import threading
from collections.abc import Callable

from errpolicy_memcache import BreakerState, CircuitBreaker
from errpolicy_memcache._breaker import FaultClock


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def opened(clock: Clock, threshold: int = 3) -> CircuitBreaker:
    breaker = CircuitBreaker(threshold, backoff=2.0, max_backoff=5.0, clock=clock)
    for _ in range(threshold):
        breaker.failure()
    return breaker


def test_stays_closed_below_the_threshold() -> None:
    """Fewer consecutive failures than the threshold keep it closed."""
    breaker = CircuitBreaker(3, 2.0, 5.0, clock=Clock())
    breaker.failure()
    breaker.failure()
    assert BreakerState.CLOSED == breaker.state


def test_a_success_resets_the_count() -> None:
    """Only consecutive failures count."""
    breaker = CircuitBreaker(3, 2.0, 5.0, clock=Clock())
    breaker.failure()
    breaker.failure()
    breaker.success()
    breaker.failure()
    assert (BreakerState.CLOSED, 1) == (breaker.state, breaker.failures)


def test_opens_at_the_threshold() -> None:
    """The threshold-th consecutive failure opens it."""
    assert BreakerState.OPEN == opened(Clock()).state


def test_open_refuses_before_the_backoff() -> None:
    """While open and before the backoff, every call is refused."""
    clock = Clock()
    breaker = opened(clock)
    clock.now += 1.9
    assert [False, False] == [breaker.allow(), breaker.allow()]


def test_a_request_never_probes() -> None:
    """After the backoff, allow() still refuses: only the prober probes (probe())."""
    clock = Clock()
    breaker = opened(clock)
    clock.now += 100.0
    assert (False, True) == (breaker.allow(), breaker.probe())


def test_the_next_probe_is_due_after_the_backoff() -> None:
    """probe_in() counts down the backoff while open; None while closed."""
    clock = Clock()
    breaker = opened(clock)
    clock.now += 0.5
    waits = [breaker.probe_in()]
    clock.now += 2.0
    waits.append(breaker.probe_in())
    breaker.reset()
    assert [1.5, 0.0, None] == [*waits, breaker.probe_in()]


def test_opening_calls_on_open_once() -> None:
    """on_open runs when the breaker opens, not on later failures while open."""
    calls: list[None] = []
    breaker = CircuitBreaker(2, 2.0, 5.0, clock=Clock(), on_open=lambda: calls.append(None))
    for _ in range(4):
        breaker.failure()
    assert 1 == len(calls)


def test_after_the_backoff_exactly_one_probe_is_allowed() -> None:
    """After the backoff, one caller probes; the others are still refused."""
    clock = Clock()
    breaker = opened(clock)
    clock.now += 2.0
    assert [True, False, False] == [breaker.probe(), breaker.probe(), breaker.probe()]


def test_a_successful_probe_closes_it() -> None:
    """The probe's success closes the breaker."""
    clock = Clock()
    breaker = opened(clock)
    clock.now += 2.0
    breaker.probe()
    breaker.success()
    assert (BreakerState.CLOSED, True) == (breaker.state, breaker.allow())


def test_a_failed_probe_reopens_with_a_doubled_backoff() -> None:
    """A failed probe reopens it, and the next probe waits twice as long."""
    clock = Clock()
    breaker = opened(clock)
    clock.now += 2.0
    breaker.probe()
    breaker.failure()
    clock.now += 3.9
    refused = breaker.probe()
    clock.now += 0.1
    assert (BreakerState.OPEN, False, True) == (breaker.state, refused, breaker.probe())


def test_the_backoff_is_capped() -> None:
    """Repeated failed probes never wait longer than max_backoff."""
    clock = Clock()
    breaker = opened(clock)
    for _ in range(5):
        clock.now += 100
        breaker.probe()
        breaker.failure()
    clock.now += 5.0
    assert breaker.probe()


def test_reset_closes_an_open_breaker() -> None:
    """reset() closes the breaker at once, before any backoff."""
    breaker = opened(Clock())
    breaker.reset()
    assert (BreakerState.CLOSED, True) == (breaker.state, breaker.allow())


def test_concurrent_failures_open_it_once_and_one_probe_wins() -> None:
    """Stress: 8 threads hammer one breaker; it opens, and after the backoff exactly one
    thread of 8 gets the probe."""
    clock = Clock()
    breaker = CircuitBreaker(50, backoff=2.0, max_backoff=5.0, clock=clock)
    barrier = threading.Barrier(8)

    def fail() -> None:
        barrier.wait()
        for _ in range(100):
            breaker.failure()

    run_threads(fail)
    opened_state = breaker.state
    clock.now += 2.0
    grants: list[bool] = []

    def probe() -> None:
        barrier.wait()
        grants.append(breaker.probe())

    run_threads(probe)
    assert (BreakerState.OPEN, 1, 8) == (opened_state, grants.count(True), len(grants))


def run_threads(target: Callable[[], None], count: int = 8) -> None:
    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_a_breaker_that_closes_after_being_open_marks_a_rejoin() -> None:
    """rejoined_within() is true for a while after an open breaker's probe succeeds."""
    clock = Clock()
    breaker = opened(clock)
    clock.now += 2.0
    assert breaker.probe()
    breaker.success()
    clock.now += 4.0
    assert (True, False) == (breaker.rejoined_within(5.0), breaker.rejoined_within(3.0))


def test_successes_of_a_closed_breaker_are_no_rejoin() -> None:
    """A node that never failed has not rejoined, whatever its answers."""
    clock = Clock()
    breaker = CircuitBreaker(3, backoff=2.0, max_backoff=5.0, clock=clock)
    breaker.success()
    clock.now += 1.0
    breaker.success()
    assert (False, False) == (breaker.rejoined_within(60.0), breaker.rejoined_after(-1.0))


def test_an_answer_after_a_failure_is_a_rejoin_though_the_breaker_stayed_closed() -> None:
    """A node that failed (below the threshold) and answered again may have missed a
    write meanwhile: another process, whose breaker opened, wrote around it (the soak's
    stale read, scenario C: every node hung, the holder's breaker closed in the reader)."""
    clock = Clock()
    breaker = CircuitBreaker(3, backoff=2.0, max_backoff=5.0, clock=clock)
    seen = clock.now  # the copy this process saw acknowledged
    clock.now += 1.0
    breaker.failure()
    clock.now += 2.0
    breaker.success()
    assert BreakerState.CLOSED is breaker.state
    assert (True, True, False) == (
        breaker.rejoined_after(seen),
        breaker.rejoined_within(1.0),
        breaker.rejoined_after(clock.now),
    )


def watched(clock: Clock) -> tuple[CircuitBreaker, FaultClock]:
    faults = FaultClock(clock)
    return CircuitBreaker(3, 2.0, 5.0, clock=clock, faults=faults), faults


def test_a_fault_clock_is_quiet_until_marked() -> None:
    """A new store has seen no fault: it is quiet for any length of time."""
    clock = Clock()
    faults = FaultClock(clock)
    assert (True, True) == (faults.quiet_for(0.0), faults.quiet_for(1e9))


def test_every_failure_marks_the_fault_clock() -> None:
    """A failure below the threshold (the breaker stays closed) is a fault too: the
    write it belonged to may have gone to another node."""
    clock = Clock()
    breaker, faults = watched(clock)
    breaker.failure()
    clock.now += 9.0
    assert (BreakerState.CLOSED, False, True) == (
        breaker.state,
        faults.quiet_for(10.0),
        faults.quiet_for(9.0),
    )


def test_an_error_reply_marks_the_fault_clock_but_counts_nothing() -> None:
    clock = Clock()
    breaker, faults = watched(clock)
    for _ in range(5):
        breaker.errored()
    assert (BreakerState.CLOSED, 0, False) == (
        breaker.state,
        breaker.failures,
        faults.quiet_for(1.0),
    )


def test_a_rejoin_and_a_reset_mark_the_fault_clock() -> None:
    """The node may have missed writes while away: the clock restarts when it is back."""
    clock = Clock()
    breaker, faults = watched(clock)
    for _ in range(3):
        breaker.failure()
    clock.now += 100.0
    assert breaker.probe()
    breaker.success()  # the probe succeeded: rejoined now
    rejoined = faults.quiet_for(1.0)
    clock.now += 100.0
    breaker.reset()
    assert (False, False, True) == (rejoined, faults.quiet_for(1.0), faults.quiet_for(0.0))


def test_successes_of_a_healthy_node_leave_the_fault_clock_quiet() -> None:
    clock = Clock()
    breaker, faults = watched(clock)
    for _ in range(5):
        breaker.success()
    assert faults.quiet_for(1e9)


def test_failed_throughout_tells_a_streak_that_began_before_a_time() -> None:
    """A failure streak that began at or before ``since`` counts; one after, or an
    answer since, does not."""
    clock = Clock()
    breaker = CircuitBreaker(3, 2.0, 5.0, clock=clock)
    breaker.failure()
    clock.now += 1.0
    breaker.failure()
    before = (breaker.failed_throughout(100.0), breaker.failed_throughout(99.0))
    breaker.success()
    assert ((True, False), False) == (before, breaker.failed_throughout(100.0))


def test_a_probe_that_timed_out_after_the_backoff_is_followed_at_once() -> None:
    """The backoff counts from the probe's start: a hung node's probe that waited out a
    timeout longer than the backoff is followed by the next one at once."""
    clock = Clock()
    breaker = opened(clock)
    clock.now += 2.0
    assert breaker.probe()
    clock.now += 6.0  # the probe's timeout, longer than the doubled backoff (4.0)
    breaker.failure()
    assert (0.0, True) == (breaker.probe_in(), breaker.probe())


def test_a_refused_probe_starts_the_backoff_over() -> None:
    """A refused connection costs the node nothing: the next probe comes a base
    backoff after the refused one, not a doubled one."""
    clock = Clock()
    breaker = opened(clock)
    clock.now += 2.0
    breaker.probe()
    breaker.failure()  # timed out: the backoff doubles to 4.0
    clock.now += 4.0
    breaker.probe()
    breaker.failure(refused=True)
    clock.now += 2.0
    assert breaker.probe()


def test_failed_throughout_starts_over_after_a_silence_longer_than_twice_the_backoff() -> None:
    """Failures 11 s apart (max_backoff 5 s): the node may have been back in between, so
    the streak counts from the second; a silence up to now counts the same."""
    clock = Clock()
    breaker = CircuitBreaker(3, 2.0, 5.0, clock=clock)
    breaker.failure()
    clock.now += 10.0
    steady = breaker.failed_throughout(100.0)
    clock.now += 1.0
    silent = breaker.failed_throughout(100.0)
    breaker.failure()
    assert (True, False) == (steady, silent)
    assert (False, True) == (breaker.failed_throughout(105.0), breaker.failed_throughout(111.0))


def test_failed_throughout_holds_while_probes_keep_failing() -> None:
    """An open breaker whose probes begin every backoff and fail (a hung node's after
    waiting out a timeout) keeps its streak."""
    clock = Clock()
    breaker = opened(clock)
    for _ in range(6):
        clock.now += 5.0
        assert breaker.probe()
        clock.now += 3.0
        breaker.failure()
    assert breaker.failed_throughout(100.0)


def test_a_probe_that_waited_longer_than_the_silence_allowed_starts_the_streak_over() -> None:
    """A probe that failed 30 s after its claim (the process stalled before it was sent,
    say): the node may have come back meanwhile, also while it is still in flight."""
    clock = Clock()
    breaker = opened(clock)
    clock.now += 5.0
    assert breaker.probe()
    clock.now += 30.0
    in_flight = breaker.failed_throughout(100.0)
    breaker.failure()
    assert (False, False) == (in_flight, breaker.failed_throughout(100.0))


def test_a_probe_after_a_stall_starts_the_streak_over() -> None:
    """The prober stalled 20 s (no probe although one was due): the probe after it
    begins a new streak, so the node may have come back during the stall."""
    clock = Clock()
    breaker = opened(clock)
    clock.now += 20.0
    assert breaker.probe()
    breaker.failure()
    assert (False, True) == (breaker.failed_throughout(100.0), breaker.failed_throughout(120.0))


def test_an_open_breaker_whose_next_probe_is_not_due_is_heard_on_schedule() -> None:
    """A first backoff longer than the silence allowed (retry_after above
    max_retry_after, as the outage benchmark sets it): the process is not late until
    well past the probe's due time, so the streak holds until then."""
    clock = Clock()
    breaker = CircuitBreaker(3, backoff=3600.0, max_backoff=5.0, clock=clock)
    for _ in range(3):
        breaker.failure()
    clock.now += 60.0
    on_schedule = breaker.failed_throughout(100.0)
    clock.now += 3600.0
    assert (True, False) == (on_schedule, breaker.failed_throughout(100.0))


def test_a_probe_is_due_a_backoff_after_the_last_began_even_while_it_waits() -> None:
    """A probe claimed and not answered: the next claim comes a backoff after it began
    (the prober's second probe), not when it ends."""
    clock = Clock()
    breaker = opened(clock)
    clock.now += 2.0
    first = breaker.claim_probe()
    clock.now += 1.9
    early = breaker.claim_probe()
    clock.now += 0.1
    assert (0, None, 0) == (first, early, breaker.claim_probe())


def test_claim_probe_numbers_the_closings() -> None:
    """The number a claim gives grows each time the breaker closes (a probe's answer,
    or a reset)."""
    clock = Clock()
    breaker = opened(clock, threshold=1)
    numbers = []
    for close in (breaker.success, breaker.reset):
        clock.now += 2.0
        numbers.append(breaker.claim_probe())
        close()
        breaker.failure()
    clock.now += 2.0
    numbers.append(breaker.claim_probe())
    assert [0, 1, 2] == numbers


def test_a_probes_failure_after_another_probe_closed_the_breaker_is_dropped() -> None:
    """Two probes in flight; the second is answered, then the first times out: the
    breaker stays closed, counts nothing, notes no fault and does not open again (a
    threshold of one would)."""
    clock = Clock()
    faults = FaultClock(clock)
    opens: list[bool] = []
    breaker = CircuitBreaker(1, 2.0, 5.0, clock, faults, on_open=lambda: opens.append(True))
    breaker.failure()
    clock.now += 2.0
    slow = breaker.claim_probe()
    clock.now += 2.0
    breaker.claim_probe()
    breaker.success()
    closed_at = faults.at
    clock.now += 1.0
    breaker.failure(claimed=slow)
    seen = (breaker.state, breaker.failures, faults.at, len(opens))
    assert (BreakerState.CLOSED, 0, closed_at, 1) == seen


def test_a_probes_failure_before_any_answer_counts() -> None:
    """A probe's failure with the breaker not closed since its claim counts as any
    failure: the breaker reopens with its backoff doubled."""
    clock = Clock()
    breaker = opened(clock)
    clock.now += 2.0
    claimed = breaker.claim_probe()
    clock.now += 1.0
    breaker.failure(claimed=claimed)
    assert (BreakerState.OPEN, 4, 3.0) == (breaker.state, breaker.failures, breaker.probe_in())


def test_a_dropped_failure_never_lets_failed_throughout_vouch() -> None:
    """The breaker closed (a probe answered) and opened again on requests' failures;
    the old probe's failure, dropped, does not reach back before the close."""
    clock = Clock()
    breaker = opened(clock, threshold=1)
    clock.now += 2.0
    old = breaker.claim_probe()
    clock.now += 2.0
    breaker.claim_probe()
    breaker.success()
    clock.now += 1.0
    breaker.failure()
    breaker.failure(claimed=old)
    assert (False, True) == (breaker.failed_throughout(104.5), breaker.failed_throughout(105.0))

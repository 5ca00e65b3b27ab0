"""The timer-free circuit breaker (shared/breaker.py), on its own and under threads."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from shared.breaker import Admission, CircuitBreaker


def test_closed_admits_everything_and_an_outage_opens_it() -> None:
    breaker = CircuitBreaker()
    assert [breaker.admit() for _ in range(3)] == [Admission.NORMAL] * 3
    breaker.record(Admission.NORMAL, reached=False)
    assert breaker.is_open and not breaker.would_refuse()


def test_open_admits_one_trial_at_a_time_and_its_success_closes_it() -> None:
    breaker = CircuitBreaker()
    breaker.failed()
    trial = breaker.admit()
    assert trial is Admission.TRIAL
    assert breaker.would_refuse()
    assert breaker.admit() is Admission.REFUSED
    breaker.record(trial, reached=True)
    assert not breaker.is_open
    assert breaker.admit() is Admission.NORMAL


def test_a_failed_trial_leaves_it_open_for_the_next_caller() -> None:
    breaker = CircuitBreaker()
    breaker.failed()
    breaker.record(breaker.admit(), reached=False)
    assert breaker.is_open
    assert breaker.admit() is Admission.TRIAL  # no timer: the next call may try at once


def test_a_trial_that_learns_nothing_hands_the_trial_on() -> None:
    breaker = CircuitBreaker()
    breaker.failed()
    breaker.record(breaker.admit(), reached=None)  # e.g. a bug, not an outage
    assert breaker.is_open
    assert breaker.admit() is Admission.TRIAL


def test_a_health_probe_closes_and_opens_it() -> None:
    breaker = CircuitBreaker()
    breaker.failed()
    breaker.succeeded()
    assert not breaker.is_open
    breaker.failed()
    assert breaker.is_open


def test_under_threads_exactly_one_trial_runs_while_the_others_are_refused() -> None:
    breaker = CircuitBreaker()
    breaker.failed()
    release = threading.Event()
    admitted = threading.Barrier(9)

    def call() -> Admission:
        admission = breaker.admit()
        admitted.wait(timeout=30)  # every thread has its answer before the trial ends
        if admission is Admission.TRIAL:
            release.wait(timeout=30)
            breaker.record(admission, reached=True)
        return admission

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(call) for _ in range(8)]
        admitted.wait(timeout=30)
        release.set()
        results = [future.result(timeout=30) for future in futures]
    assert results.count(Admission.TRIAL) == 1
    assert results.count(Admission.REFUSED) == 7
    assert not breaker.is_open

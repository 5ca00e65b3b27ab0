"""A circuit breaker that no clock decides: fail fast while a backend is down, serve at once when it is back.

A timed breaker ("refuse everything for N seconds after a failure") has two faults: a backend that
comes back within the N seconds is still refused until they pass, and a backend that is still down
after them is paid for again by whichever requests happen to arrive. This one has no timer:

- closed: every call goes through; a call that finds the backend down opens the breaker.
- open: one call at a time is let through as the *trial*; calls that arrive while a trial is
  under way are refused at once instead of each paying the connect budget. The caller makes the
  trial cheap (a connectivity probe before the real work). A trial that reaches the backend closes
  the breaker; one that does not leaves it open for the next caller.
- a health probe that reaches the backend closes it too.

So the first request after a recovery is served, and during an outage at most one request at a
time waits on the network.
"""

from __future__ import annotations

import threading
from enum import Enum


class Admission(Enum):
    """How a call may proceed."""

    NORMAL = "normal"  # the breaker is closed
    TRIAL = "trial"  # the breaker is open and this call finds out whether the backend is back
    REFUSED = "refused"  # the breaker is open and another call is already trying


class CircuitBreaker:
    """Thread-safe; one per backend client in a worker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = False
        self._trial_running = False

    @property
    def is_open(self) -> bool:
        return self._open

    def would_refuse(self) -> bool:
        """True when a call made now would be refused (a peek: admits nothing)."""
        return self._open and self._trial_running

    def admit(self) -> Admission:
        """Admit a call; a TRIAL must be ended with `record` (success or failure) exactly once."""
        with self._lock:
            if not self._open:
                return Admission.NORMAL
            if self._trial_running:
                return Admission.REFUSED
            self._trial_running = True
            return Admission.TRIAL

    def record(self, admission: Admission, *, reached: bool | None) -> None:
        """End a call: `reached` True (the backend answered), False (it is down), None (neither is known)."""
        with self._lock:
            if admission is Admission.TRIAL:
                self._trial_running = False
            if reached is not None:
                self._open = not reached

    def succeeded(self) -> None:
        """The backend answered outside an admitted call (a health probe)."""
        self.record(Admission.NORMAL, reached=True)

    def failed(self) -> None:
        """The backend was found down outside an admitted call (a health probe)."""
        self.record(Admission.NORMAL, reached=False)

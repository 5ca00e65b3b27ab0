"""The dev host's timer triggers: NCRONTAB parsing and the firing rules (run on startup, past due with the
schedule monitor, no overlap, the singleton lease), on an injected clock, without sleeping."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.devhost import sample_app
from tools.devhost.timers import (
    Schedule,
    ScheduleError,
    ScheduleStatus,
    TimerFunction,
    TimerRunner,
    index_timers,
    past_due,
)

T0 = datetime(2026, 3, 7, 12, 3, 10, tzinfo=UTC)  # a Saturday


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 */5 * * * *", "2026-03-07T12:03:10", "2026-03-07T12:05:00"),
        ("*/10 * * * * *", "2026-03-07T12:03:10", "2026-03-07T12:03:20"),
        ("*/10 * * * * *", "2026-03-07T12:03:10.5", "2026-03-07T12:03:20"),
        ("0 30 9 * * Mon-Fri", "2026-03-07T12:03:10", "2026-03-09T09:30:00"),
        ("0 30 9 * * 1-5", "2026-03-09T09:30:00", "2026-03-10T09:30:00"),
        ("0 0 0 1 Jan *", "2026-03-07T12:03:10", "2027-01-01T00:00:00"),
        ("0 0 0 29 2 *", "2026-03-07T12:03:10", "2028-02-29T00:00:00"),
        ("0 0 12 13 * Fri", "2026-03-07T12:03:10", "2026-03-13T12:00:00"),  # both day fields must match
        ("15,45 5-7 * * * *", "2026-03-07T12:07:45", "2026-03-07T13:05:15"),
        ("0 0 3/6 * * *", "2026-03-07T12:03:10", "2026-03-07T15:00:00"),
        ("0 59 23 31 12 Sun-Sat", "2026-12-31T23:59:00", "2027-12-31T23:59:00"),
        ("00:05:00", "2026-03-07T12:03:10", "2026-03-07T12:08:10"),
        ("1.00:00:00", "2026-03-07T12:03:10", "2026-03-08T12:03:10"),
    ],
)
def test_next_occurrence(expression: str, after: str, expected: str) -> None:
    assert Schedule.parse(expression).next_after(_at(after)) == _at(expected)


def test_a_time_zone_moves_the_occurrences() -> None:
    from zoneinfo import ZoneInfo

    schedule = Schedule.parse("0 0 9 * * *", ZoneInfo("Europe/Berlin"))
    assert schedule.next_after(T0) == _at("2026-03-08T08:00:00")  # 09:00 CET
    assert schedule.next_after(_at("2026-04-01T00:00:00")) == _at("2026-04-01T07:00:00")  # 09:00 CEST


@pytest.mark.parametrize(
    "expression",
    ["0 */5 * * *", "0 0 0 0 0 0 0", "60 * * * * *", "x * * * * *", "*/0 * * * * *", "0 0 0 * * 7", "0 0 5-3 * * *"],
)
def test_schedules_the_host_refuses(expression: str) -> None:
    with pytest.raises(ScheduleError):
        Schedule.parse(expression)


def test_a_schedule_that_never_occurs_is_an_error() -> None:
    with pytest.raises(ScheduleError, match="never occurs"):
        Schedule.parse("0 0 0 30 2 *").next_after(T0)


def test_indexing_finds_timers_resolves_settings_and_defaults_use_monitor() -> None:
    from functions.openapi import indexed_functions

    app = sample_app.build_app(with_timers=True)
    env = {"SAMPLE_TIMER_SCHEDULE": "0 0 * * * *"}
    timers, errors = index_timers(indexed_functions(app), T0, env)
    by_name = {t.name: t for t in timers}
    assert errors == {}
    fast, hourly = by_name["sample_tick"], by_name["sample_hourly"]
    assert fast.run_on_startup and not fast.use_monitor  # more often than once a minute: no monitor
    assert hourly.use_monitor and not hourly.run_on_startup
    assert hourly.schedule.next_after(T0) == _at("2026-03-07T13:00:00")
    _, errors = index_timers(indexed_functions(app), T0, {})
    assert "SAMPLE_TIMER_SCHEDULE" in errors["sample_hourly"]


def test_past_due_by_the_schedule_monitor() -> None:
    schedule = Schedule.parse("0 0 * * * *")
    last, following = _at("2026-03-07T10:00:00"), _at("2026-03-07T11:00:00")
    assert past_due(schedule, None, T0) == (False, None)
    assert past_due(schedule, ScheduleStatus(last, following, last), T0)[0] is True
    assert past_due(schedule, ScheduleStatus(last, following, last), following - timedelta(seconds=1))[0] is False
    # A Next that does not follow from Last is a changed schedule: start over, nothing is past due.
    changed, status = past_due(schedule, ScheduleStatus(last, _at("2026-03-07T10:30:00"), last), T0)
    assert changed is False and status is not None and status.next == _at("2026-03-07T13:00:00")


class Stop(Exception):
    pass


class FakeClock:
    """Time moves only when the runner sleeps (to the moment it asked for) or an invocation takes time."""

    def __init__(self, start: datetime, max_sleeps: int = 10) -> None:  # the sleep after max_sleeps stops the run
        self.time = start
        self.sleeps: list[datetime] = []
        self.max_sleeps = max_sleeps

    def now(self) -> datetime:
        return self.time

    async def sleep_until(self, moment: datetime) -> None:
        self.sleeps.append(moment)
        if len(self.sleeps) > self.max_sleeps:
            raise Stop
        self.time = max(self.time, moment)
        await asyncio.sleep(0)


class Recorder:
    def __init__(self, clock: FakeClock, duration: timedelta = timedelta(0)) -> None:
        self.clock = clock
        self.duration = duration
        self.calls: list[tuple[str, bool, datetime, str]] = []

    async def __call__(self, name: str, function: Any, kwargs: dict[str, Any], is_async: bool, reason: str) -> None:
        request = kwargs["timer"]
        self.calls.append((name, request.past_due, self.clock.now(), reason))
        self.clock.time += self.duration


def _timer(expression: str, *, run_on_startup: bool = False, use_monitor: bool = True) -> TimerFunction:
    return TimerFunction("tick", Schedule.parse(expression), run_on_startup, use_monitor, "timer", lambda timer: None)


def _run(runner: TimerRunner, timer: TimerFunction) -> None:
    with pytest.raises(Stop):
        asyncio.run(runner.run(timer))


def test_runs_on_startup_then_on_schedule(tmp_path: Path) -> None:
    clock = FakeClock(T0, max_sleeps=2)
    recorder = Recorder(clock)
    _run(TimerRunner([], recorder, tmp_path, clock), _timer("0 */5 * * * *", run_on_startup=True))
    assert [(past, at) for _, past, at, _ in recorder.calls] == [
        (False, T0),
        (False, _at("2026-03-07T12:05:00")),
        (False, _at("2026-03-07T12:10:00")),
    ]
    assert "RunOnStartup" in recorder.calls[0][3]
    status = json.loads((tmp_path / "timers" / "tick.status.json").read_text())
    assert status["Last"].startswith("2026-03-07T12:10:00") and status["Next"].startswith("2026-03-07T12:15:00")


def test_a_run_missed_while_down_fires_past_due_on_start(tmp_path: Path) -> None:
    clock = FakeClock(T0, max_sleeps=0)
    recorder = Recorder(clock)
    runner = TimerRunner([], recorder, tmp_path, clock)
    timer = _timer("0 0 * * * *")
    runner.write_status(timer, ScheduleStatus(_at("2026-03-07T10:00:00"), _at("2026-03-07T11:00:00"), T0))
    _run(runner, timer)
    assert recorder.calls == [("tick", True, T0, "Timer is past due")]
    assert clock.sleeps == [_at("2026-03-07T13:00:00")]


def test_without_the_monitor_nothing_is_past_due_and_nothing_is_written(tmp_path: Path) -> None:
    clock = FakeClock(T0, max_sleeps=0)
    recorder = Recorder(clock)
    runner = TimerRunner([], recorder, tmp_path, clock)
    timer = _timer("0 0 * * * *", use_monitor=False)
    (tmp_path / "timers").mkdir()
    (tmp_path / "timers" / "tick.status.json").write_text(
        json.dumps(ScheduleStatus(_at("2026-03-07T10:00:00"), _at("2026-03-07T11:00:00"), T0).to_json())
    )
    _run(runner, timer)
    assert recorder.calls == []
    assert json.loads((tmp_path / "timers" / "tick.status.json").read_text())["Next"].startswith("2026-03-07T11")


def test_an_invocation_that_overruns_skips_occurrences_instead_of_overlapping(tmp_path: Path) -> None:
    clock = FakeClock(T0, max_sleeps=3)
    recorder = Recorder(clock, duration=timedelta(seconds=25))
    _run(TimerRunner([], recorder, tmp_path, clock), _timer("*/10 * * * * *", use_monitor=False))
    assert [at for _, _, at, _ in recorder.calls] == [
        _at("2026-03-07T12:03:20"),
        _at("2026-03-07T12:03:50"),  # 12:03:30 and 12:03:40 fell inside the first run
        _at("2026-03-07T12:04:20"),
    ]


def test_only_the_lease_holder_fires_and_another_takes_over_when_it_stops(tmp_path: Path) -> None:
    timer = _timer("0 */5 * * * *", run_on_startup=True)

    async def scenario() -> tuple[list[Any], list[Any], list[datetime]]:
        first_clock, second_clock = FakeClock(T0, max_sleeps=100), FakeClock(T0, max_sleeps=10)
        first, second = Recorder(first_clock), Recorder(second_clock)
        holder = TimerRunner([timer], first, tmp_path, first_clock)
        waiting = TimerRunner([timer], second, tmp_path, second_clock)
        await holder.start()
        await asyncio.sleep(0)
        assert first.calls and first.calls[0][1:3] == (False, T0)
        task = asyncio.create_task(waiting.run(timer))
        for _ in range(2):
            await asyncio.sleep(0)
        assert second.calls == []  # the lease is held: it only retries
        await holder.stop()
        with pytest.raises(Stop):
            await task
        return first.calls, second.calls, second_clock.sleeps

    _, second_calls, sleeps = asyncio.run(scenario())
    assert second_calls and second_calls[0][3] == "Timer fired because of RunOnStartup"
    assert sleeps[0] == T0 + timedelta(seconds=15)  # a retry of the lease before taking over

"""The dev host's timer triggers: the app's `timerTrigger` functions run by the host's rules.

The rules of the timer extension (Azure/azure-webjobs-sdk-extensions, src/WebJobs.Extensions/
Extensions/Timers), as far as they mean something on one machine:
- The schedule is NCRONTAB with seconds, `{second} {minute} {hour} {day} {month} {day-of-week}`
  (`*`, lists, ranges, `/` steps, month and day names; a day must match both the day-of-month and the
  day-of-week field, as NCrontab does), or a TimeSpan `hh:mm:ss` (a constant interval), or `%NAME%`
  resolved from the environment. Times are UTC unless WEBSITE_TIME_ZONE names an IANA zone.
- `run_on_startup` fires once when the host starts. `use_monitor` (default: on, unless the schedule
  recurs more often than once a minute) keeps the schedule status (Last, Next, LastUpdated) in
  storage; on start, an occurrence missed while the host was down fires at once with
  `past_due=True`, and a status whose Next no longer follows from the schedule counts as a changed
  schedule, not a missed run (StorageScheduleMonitor.CheckPastDueAsync).
- An invocation is never overlapped by the next one of the same timer: the next occurrence is taken
  after the invocation ends, so occurrences it overran are skipped.
- Singleton: in Azure one instance holds the timer's listener lease (a blob lease). Here the lease is
  an exclusive lock file per timer in the state folder (what storage is to the host: dev hosts sharing
  it share timers), so only one dev host process fires a given timer; the others keep trying to
  take the lock and take over when its holder stops.

The clock is injected (`Clock`): the rules are tested without sleeping (tests/unit/test_devhost_timers.py).
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import azure.functions as func

log = logging.getLogger("devhost.timers")

LOCK_RETRY = timedelta(seconds=15)
_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_DAYS = {name.lower(): i for i, name in enumerate(("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"))}
# (name, low, high, names) of the six NCRONTAB fields
_FIELDS: tuple[tuple[str, int, int, Mapping[str, int]], ...] = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 6, _DAYS),
)
_TIMESPAN = re.compile(r"(?:(\d+)\.)?(\d{1,2}):(\d{2})(?::(\d{2}))?")
Invoker = Callable[..., Awaitable[object]]


class ScheduleError(ValueError):
    """Not a schedule the host accepts: the function is put in error."""


def _field_values(text: str, low: int, high: int, names: Mapping[str, int], where: str) -> frozenset[int]:
    def number(token: str) -> int:
        value = names.get(token.lower()) if names else None
        if value is None:
            if not token.isdigit():
                raise ScheduleError(f"'{token}' is not a valid {where} value")
            value = int(token)
        if not low <= value <= high:
            raise ScheduleError(f"{where} value {value} is outside {low}-{high}")
        return value

    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"'{step_text}' is not a valid {where} step")
            step = int(step_text)
        if base == "*":
            start, stop = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, stop = number(first), number(last)
            if start > stop:
                raise ScheduleError(f"the {where} range {base} runs backwards")
        else:
            start = number(base)
            stop = high if step_text else start
        values.update(range(start, stop + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    """A parsed timer schedule; `next_after(t)` is the first occurrence strictly after `t`."""

    text: str
    fields: tuple[frozenset[int], ...] = ()
    interval: timedelta | None = None  # a TimeSpan schedule
    zone: tzinfo = UTC

    @classmethod
    def parse(cls, text: str, zone: tzinfo = UTC) -> Schedule:
        expression = text.strip()
        span = _TIMESPAN.fullmatch(expression)
        if span:
            days, hours, minutes, seconds = (int(g) if g else 0 for g in span.groups())
            interval = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
            if interval <= timedelta(0):
                raise ScheduleError(f"'{text}' is not a positive interval")
            return cls(text, interval=interval, zone=zone)
        parts = expression.split()
        if len(parts) != 6:
            raise ScheduleError(
                f"'{text}' is not a valid CRON expression: it needs 6 fields "
                "({second} {minute} {hour} {day} {month} {day-of-week})"
            )
        fields = tuple(
            _field_values(part, low, high, names, name)
            for part, (name, low, high, names) in zip(parts, _FIELDS, strict=True)
        )
        return cls(text, fields, zone=zone)

    def next_after(self, moment: datetime) -> datetime:
        if self.interval is not None:
            return moment + self.interval
        local = moment.astimezone(self.zone).replace(microsecond=0) + timedelta(seconds=1)
        seconds, minutes, hours, days, months, weekdays = self.fields
        for _ in range(366 * 5):  # days to look ahead; an impossible date (Feb 30) ends the search
            if local.month in months and local.day in days and (local.isoweekday() % 7) in weekdays:
                for hour in sorted(h for h in hours if h >= local.hour):
                    start_minute = local.minute if hour == local.hour else 0
                    for minute in sorted(m for m in minutes if m >= start_minute):
                        start_second = local.second if (hour, minute) == (local.hour, local.minute) else 0
                        for second in sorted(s for s in seconds if s >= start_second):
                            return local.replace(hour=hour, minute=minute, second=second).astimezone(UTC)
            local = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0)
        raise ScheduleError(f"'{self.text}' never occurs")

    def recurs_within(self, span: timedelta, start: datetime) -> bool:
        first = self.next_after(start)
        return self.next_after(first) - first < span


@dataclass
class ScheduleStatus:
    last: datetime | None
    next: datetime
    last_updated: datetime

    def to_json(self) -> dict[str, str]:
        return {
            "Last": (self.last or datetime.min.replace(tzinfo=UTC)).isoformat(),
            "Next": self.next.isoformat(),
            "LastUpdated": self.last_updated.isoformat(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, str]) -> ScheduleStatus:
        last = datetime.fromisoformat(data["Last"])
        return cls(
            last if last.year > 1 else None,
            datetime.fromisoformat(data["Next"]),
            datetime.fromisoformat(data["LastUpdated"]),
        )


def past_due(schedule: Schedule, status: ScheduleStatus | None, now: datetime) -> tuple[bool, ScheduleStatus | None]:
    """(is a run past due, the status to keep) on start, by StorageScheduleMonitor.CheckPastDueAsync."""
    if status is None:
        return False, None
    expected = schedule.next_after(status.last) if status.last is not None else status.next
    if expected != status.next:
        # The schedule changed since the status was written: start over from now, nothing is past due.
        return False, ScheduleStatus(status.last, schedule.next_after(now), now)
    return now > status.next, status


@dataclass(frozen=True)
class TimerFunction:
    name: str
    schedule: Schedule
    run_on_startup: bool
    use_monitor: bool
    trigger_arg: str
    user_function: Callable[..., Any] = field(repr=False)
    is_async: bool = False


def index_timers(
    functions: Sequence[func.Function], now: datetime, environ: Mapping[str, str] | None = None
) -> tuple[list[TimerFunction], dict[str, str]]:
    """The timer trigger functions among `functions`, and the errors of those the host would refuse."""
    import inspect

    env = os.environ if environ is None else environ
    zone = _zone(env.get("WEBSITE_TIME_ZONE") or "")
    timers: list[TimerFunction] = []
    errors: dict[str, str] = {}
    for fn in functions:
        bindings = json.loads(fn.get_function_json()).get("bindings", [])
        trigger = next((b for b in bindings if str(b.get("type", "")).lower() == "timertrigger"), None)
        if trigger is None:
            continue
        name = fn.get_function_name() or fn.get_user_function().__name__
        text = str(trigger.get("schedule") or "")
        setting = re.fullmatch(r"%([^%]+)%", text)
        try:
            if setting:
                if not env.get(setting.group(1)):
                    raise ScheduleError(f"the app setting '{setting.group(1)}' named by the schedule is not set")
                text = env[setting.group(1)]
            schedule = Schedule.parse(text, zone)
            monitor = trigger.get("useMonitor")
            use_monitor = (
                bool(monitor) if monitor is not None else not schedule.recurs_within(timedelta(minutes=1), now)
            )
        except ScheduleError as error:
            errors[name] = str(error)
            continue
        user_function = fn.get_user_function()
        timers.append(
            TimerFunction(
                name,
                schedule,
                bool(trigger.get("runOnStartup")),
                use_monitor,
                str(trigger.get("name") or "timer"),
                user_function,
                inspect.iscoroutinefunction(user_function),
            )
        )
    return timers, errors


def _zone(name: str) -> tzinfo:
    if not name:
        return UTC
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except Exception:  # Windows zone names (the host's on Windows plans) are not IANA names
        log.warning("WEBSITE_TIME_ZONE '%s' is not an IANA time zone: timers run in UTC", name)
        return UTC


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep_until(self, moment: datetime) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, moment: datetime) -> None:
        # In short steps, so that a changed wall clock (suspend, NTP) is noticed.
        while (delay := (moment - self.now()).total_seconds()) > 0:
            await asyncio.sleep(min(delay, 30))


class TimerLease:
    """The singleton lease of one timer: an exclusive lock on a file in the state folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def try_acquire(self) -> bool:
        import fcntl

        if self._handle is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return True

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing drops the lock
            self._handle = None


class TimerRunner:
    """Runs every timer function of the app while the dev host is up (`start`/`stop` with its lifespan)."""

    def __init__(self, timers: Sequence[TimerFunction], invoke: Invoker, state_dir: Path, clock: Clock | None = None):
        self.timers = list(timers)
        self.invoke = invoke
        self.state_dir = state_dir
        self.clock: Clock = clock or SystemClock()
        self._tasks: list[asyncio.Task[None]] = []
        self._leases: dict[str, TimerLease] = {}

    def serves(self, function_name: str) -> bool:
        return any(timer.name == function_name for timer in self.timers)

    def describe(self, base_url: str) -> list[str]:
        return [
            f"        {t.name}: timerTrigger '{t.schedule.text}' (runOnStartup={t.run_on_startup}, "
            f"useMonitor={t.use_monitor})"
            for t in self.timers
        ]

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self.run(timer), name=f"timer-{timer.name}") for timer in self.timers]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        for lease in self._leases.values():
            lease.release()

    def _status_path(self, timer: TimerFunction) -> Path:
        return self.state_dir / "timers" / f"{timer.name}.status.json"

    def read_status(self, timer: TimerFunction) -> ScheduleStatus | None:
        try:
            return ScheduleStatus.from_json(json.loads(self._status_path(timer).read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError):
            return None

    def write_status(self, timer: TimerFunction, status: ScheduleStatus) -> None:
        path = self._status_path(timer)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(status.to_json()), encoding="utf-8")
        temporary.replace(path)

    async def run(self, timer: TimerFunction) -> None:
        """One timer's listener: take the lease, fire what start-up calls for, then follow the schedule."""
        lease = self._leases.setdefault(timer.name, TimerLease(self.state_dir / "locks" / f"{timer.name}.lock"))
        while not lease.try_acquire():
            log.debug("timer '%s' is held by another dev host; retrying", timer.name)
            await self.clock.sleep_until(self.clock.now() + LOCK_RETRY)
        now = self.clock.now()
        status = self.read_status(timer) if timer.use_monitor else None
        due, status = past_due(timer.schedule, status, now)
        if status is None:
            status = ScheduleStatus(None, timer.schedule.next_after(now), now)
        if timer.use_monitor:
            self.write_status(timer, status)
        if due:
            await self.fire(timer, status, past_due=True, reason="Timer is past due")
            status = self._advance(timer, status, now)
        elif timer.run_on_startup:
            await self.fire(timer, status, past_due=False, reason="Timer fired because of RunOnStartup")
        while True:
            scheduled = status.next
            await self.clock.sleep_until(scheduled)
            await self.fire(timer, status, past_due=False, reason="Timer fired")
            status = self._advance(timer, status, scheduled)

    def _advance(self, timer: TimerFunction, status: ScheduleStatus, occurred: datetime) -> ScheduleStatus:
        now = self.clock.now()
        # The next occurrence after the invocation ended: one that it overran is skipped, not queued.
        following = timer.schedule.next_after(max(now, occurred))
        updated = ScheduleStatus(occurred, following, now)
        if timer.use_monitor:
            self.write_status(timer, updated)
        return updated

    async def fire(self, timer: TimerFunction, status: ScheduleStatus, *, past_due: bool, reason: str) -> None:
        from azure.functions.meta import Datum
        from azure.functions.timer import TimerRequestConverter

        payload = {
            "Schedule": {"AdjustForDST": True},
            "ScheduleStatus": status.to_json() if timer.use_monitor else None,
            "IsPastDue": past_due,
        }
        request = TimerRequestConverter.decode(Datum(json.dumps(payload), "json"), trigger_metadata=None)
        try:
            await self.invoke(timer.name, timer.user_function, {timer.trigger_arg: request}, timer.is_async, reason)
        except Exception:  # logged by the invoker; a failed run does not stop the timer
            log.warning("timer '%s': the invocation failed; the schedule goes on", timer.name)

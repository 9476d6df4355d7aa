"""Cron expressions and their ticks in a time zone, daylight saving time included.

Five fields (minute hour day-of-month month day-of-week) as in crontab(5), or six with a leading
seconds field (``*/10 * * * * *``). Each field takes ``*``, numbers, ranges ``a-b``, steps ``*/n``
``a-b/n`` ``a/n``, lists, and month and weekday names (``jan``, ``mon``; Sunday is 0 or 7). When
both day fields are restricted a day matching either fires, as in Vixie cron. The macros
``@yearly`` ``@annually`` ``@monthly`` ``@weekly`` ``@daily`` ``@midnight`` ``@hourly`` are
accepted. ``L``, ``W``, ``#`` and ``?`` are not: they are rejected with the field named.

A tick is an instant (a UTC datetime). The expression is matched against the wall clock of its
zone, and where the wall clock jumps the rules are Vixie cron's (what Debian's cron does):

- spring forward: a wall time that does not exist that day fires at the first instant after the
  jump (a daily ``30 2 * * *`` still runs once); a schedule whose hour field is ``*`` (every hour)
  simply has no ticks in the missing hour, since no real time passes there;
- fall back: a wall time that happens twice fires once, at its first occurrence; a schedule whose
  hour field is ``*`` fires in both, so "every 5 minutes" stays every 5 minutes of real time.

This module does no I/O; the scheduler thread (module ticking) passes it the clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pgqueue.errors import ConfigurationError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")

# (name, lowest, highest, names) of each field, seconds first.
_FIELDS = (
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 7, DAYS),
)
_ITEM = re.compile(r"^(?P<range>\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(?P<step>\d+))?$")
# No schedule is searched further than this for its next tick: "0 0 31 2 *" never fires.
_HORIZON = timedelta(days=366 * 8)
_LONGEST_SHIFT = timedelta(hours=3)  # more than any zone's clock change


def _value(text: str, lo: int, names: tuple[str, ...], field: str) -> int:
    if text.isdigit():
        return int(text)
    if text[:3] in names and len(text) in (3, len(names[names.index(text[:3])])):
        return names.index(text[:3]) + (1 if names is MONTHS else 0)
    raise ValueError(f"{field}: {text!r} is not a number{' or a name' if names else ''}")


def _parse_field(text: str, index: int) -> frozenset[int]:
    field, lo, hi, names = _FIELDS[index]
    values: set[int] = set()
    for item in text.lower().split(","):
        m = _ITEM.match(item)
        if not m:
            raise ValueError(f"{field}: cannot read {item!r} (use *, a-b, */n, a-b/n or lists)")
        step = int(m.group("step")) if m.group("step") else 1
        if step < 1:
            raise ValueError(f"{field}: the step of {item!r} must be ≥ 1")
        part = m.group("range")
        if part == "*":
            start, end = lo, hi
        elif "-" in part:
            a, b = part.split("-")
            start, end = _value(a, lo, names, field), _value(b, lo, names, field)
        else:
            start = _value(part, lo, names, field)
            end = hi if m.group("step") else start  # "5/15": from 5 to the end, every 15
        if not (lo <= start <= hi and lo <= end <= hi):
            raise ValueError(f"{field}: {item!r} is outside {lo}-{hi}")
        if start > end:
            raise ValueError(f"{field}: the range {item!r} runs backwards")
        values.update(range(start, end + 1, step))
    if index == 5 and 7 in values:  # Sunday is 0 or 7
        values = (values - {7}) | {0}
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A parsed expression in a zone; :meth:`next_after` gives its ticks."""

    expression: str
    tz: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    day_or: bool  # both day fields restricted: either matches
    hourly: bool  # hour field is "*": runs in both folds, none in a gap
    zone: ZoneInfo

    @classmethod
    def parse(cls, expression: str, tz: str = "UTC") -> Cron:
        """Parse or raise ConfigurationError naming ``cron`` (or ``tz``) and what is wrong."""
        try:
            zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigurationError("tz", f"unknown time zone {tz!r} ({exc})") from None
        text = MACROS.get(expression.strip().lower(), expression)
        parts = text.split()
        if len(parts) == 5:
            parts = ["0", *parts]
        elif len(parts) != 6:
            raise ConfigurationError(
                "cron",
                f"{expression!r} has {len(parts)} fields; want 5 (minute hour day month weekday) "
                "or 6 (second first)",
            )
        try:
            sets = [_parse_field(p, i) for i, p in enumerate(parts)]
        except ValueError as exc:
            raise ConfigurationError("cron", f"{expression!r}: {exc}") from None
        cron = cls(
            expression=expression,
            tz=tz,
            seconds=sets[0],
            minutes=sets[1],
            hours=sets[2],
            days=sets[3],
            months=sets[4],
            weekdays=sets[5],
            day_or=not parts[3].startswith("*") and not parts[5].startswith("*"),
            hourly=parts[2] == "*",
            zone=zone,
        )
        if cron.next_after(datetime(2000, 1, 1, tzinfo=UTC)) is None:
            raise ConfigurationError("cron", f"{expression!r} never fires (no such date)")
        return cron

    @property
    def has_seconds(self) -> bool:
        return self.seconds != frozenset({0})

    def _day_matches(self, day: datetime) -> bool:
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        return (dom or dow) if self.day_or else (dom and dow)

    def _next_wall(self, wall: datetime) -> datetime | None:
        """The first naive wall time ≥ ``wall`` the fields match (no zone involved)."""
        end = wall + _HORIZON
        t = wall
        while t < end:
            if t.month not in self.months:
                t = (t.replace(day=1) + timedelta(days=32)).replace(
                    day=1, hour=0, minute=0, second=0
                )
            elif not self._day_matches(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0, second=0)
            elif t.hour not in self.hours:
                t = (t + timedelta(hours=1)).replace(minute=0, second=0)
            elif t.minute not in self.minutes:
                t = (t + timedelta(minutes=1)).replace(second=0)
            elif t.second not in self.seconds:
                t += timedelta(seconds=1)
            else:
                return t
        return None

    def _instants(self, wall: datetime) -> list[datetime]:
        """The instants (UTC) at which the wall time ``wall`` fires, per the DST rules above."""
        first = wall.replace(tzinfo=self.zone, fold=0)
        second = wall.replace(tzinfo=self.zone, fold=1)
        u0, u1 = first.astimezone(UTC), second.astimezone(UTC)
        if u0.astimezone(self.zone).replace(tzinfo=None) != wall:
            # In a gap: zoneinfo reads fold=0 with the offset before the jump (u0 lands after
            # it) and fold=1 with the offset after (u1 lands before it).
            return [] if self.hourly else [self._jump(u1, u0)]
        if u0 != u1 and self.hourly:
            return sorted({u0, u1})
        return [min(u0, u1)]

    def _jump(self, before: datetime, after: datetime) -> datetime:
        """The instant the clock jumps, between ``before`` and ``after`` (to the second)."""
        offset = before.astimezone(self.zone).utcoffset()
        while after - before > timedelta(seconds=1):
            mid = before + (after - before) / 2
            if mid.astimezone(self.zone).utcoffset() == offset:
                before = mid
            else:
                after = mid
        return after.replace(microsecond=0) + (
            timedelta(seconds=1) if after.microsecond else timedelta()
        )

    def _offsets(self, instant: datetime) -> list[timedelta]:
        """The zone's UTC offsets within a clock change's reach of ``instant``."""
        found = set()
        for shift in (-_LONGEST_SHIFT, timedelta(), _LONGEST_SHIFT):
            offset = (instant + shift).astimezone(self.zone).utcoffset()
            assert offset is not None
            found.add(offset)
        return sorted(found)

    def next_after(self, instant: datetime) -> datetime | None:
        """The first tick strictly after ``instant`` (an aware datetime), or None within ~8 years.

        Across a fall back a later wall time can be an earlier instant, so wall times are
        searched from the earliest that could land after ``instant`` until none later could
        land before the best found; away from a clock change that is one step.
        """
        utc = instant.astimezone(UTC).replace(tzinfo=None)
        start = utc + self._offsets(instant)[0]
        cursor: datetime | None = start.replace(microsecond=0)
        best: datetime | None = None
        while cursor is not None:
            cursor = self._next_wall(cursor)
            if cursor is None:
                break
            for tick in self._instants(cursor):
                if tick > instant and (best is None or tick < best):
                    best = tick
            if best is not None and cursor - self._offsets(best)[-1] > best.replace(tzinfo=None):
                break
            cursor += timedelta(seconds=1)
        return best

    def ticks(self, after: datetime, until: datetime) -> list[datetime]:
        """Every tick in (after, until]."""
        found: list[datetime] = []
        tick = self.next_after(after)
        while tick is not None and tick <= until:
            found.append(tick)
            tick = self.next_after(tick)
        return found

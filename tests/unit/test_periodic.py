"""Cron arithmetic in a time zone (DST included) and the catch-up policies, on an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

import pgqueue
from pgqueue.cron import Cron
from pgqueue.errors import ConfigurationError, TaskRegistrationError
from pgqueue.periodic import Schedule, plan, schedules
from pgqueue.tasks import registered

PARIS = ZoneInfo("Europe/Paris")


def paris(*fields: int, fold: int = 0) -> datetime:
    return datetime(*fields, tzinfo=PARIS, fold=fold)  # type: ignore[misc]


def walk(expression: str, start: datetime, n: int, tz: str = "Europe/Paris") -> list[str]:
    cron = Cron.parse(expression, tz)
    out, tick = [], start
    for _ in range(n):
        nxt = cron.next_after(tick)
        assert nxt is not None
        out.append(nxt.astimezone(cron.zone).strftime("%d %H:%M:%S%z"))
        tick = nxt
    return out


def test_five_fields_steps_ranges_names_and_macros() -> None:
    start = paris(2026, 11, 30, 10, 7)
    assert walk("*/15 * * * *", start, 3) == ["30 10:15:00+0100", "30 10:30:00+0100",
                                              "30 10:45:00+0100"]  # fmt: skip
    assert walk("0 9 * * mon-fri", paris(2026, 12, 4, 12), 2) == [
        "07 09:00:00+0100", "08 09:00:00+0100"
    ]  # fmt: skip
    assert walk("@daily", start, 1) == ["01 00:00:00+0100"]
    assert walk("0 0 1 jan *", start, 1) == ["01 00:00:00+0100"]
    # Both day fields restricted: either matches (the 1st, or a Friday), as in Vixie cron.
    assert walk("0 0 1 * 5", paris(2026, 11, 26), 3) == [
        "27 00:00:00+0100", "01 00:00:00+0100", "04 00:00:00+0100"
    ]  # fmt: skip
    assert walk("0 12 * * 7", paris(2026, 12, 1), 1) == ["06 12:00:00+0100"]  # 7 is Sunday


def test_a_leading_seconds_field_ticks_every_second() -> None:
    assert walk("* * * * * *", paris(2026, 6, 1, 12, 0, 0), 3, "UTC") == [
        "01 10:00:01+0000", "01 10:00:02+0000", "01 10:00:03+0000"
    ]  # fmt: skip
    assert walk("*/20 * * * * *", paris(2026, 6, 1, 12, 0, 5), 2) == [
        "01 12:00:20+0200", "01 12:00:40+0200"
    ]  # fmt: skip
    assert Cron.parse("* * * * * *").has_seconds
    assert not Cron.parse("* * * * *").has_seconds


def test_spring_forward_a_fixed_time_in_the_gap_fires_once_right_after_the_jump() -> None:
    # 2026-03-29 in Paris: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that day.
    assert walk("30 2 * * *", paris(2026, 3, 28, 12), 3) == [
        "29 03:00:00+0200", "30 02:30:00+0200", "31 02:30:00+0200"
    ]  # fmt: skip
    # Two gap ticks collapse into one at the jump; the real 03:00 and 03:30 follow.
    assert walk("0,30 2,3 * * *", paris(2026, 3, 29, 1), 3) == [
        "29 03:00:00+0200", "29 03:30:00+0200", "30 02:00:00+0200"
    ]  # fmt: skip


def test_spring_forward_an_hourly_schedule_has_no_ticks_in_the_missing_hour() -> None:
    assert walk("*/30 * * * *", paris(2026, 3, 29, 1, 10), 3) == [
        "29 01:30:00+0100", "29 03:00:00+0200", "29 03:30:00+0200"
    ]  # fmt: skip


def test_fall_back_a_fixed_time_fires_once_an_hourly_schedule_in_both_hours() -> None:
    # 2026-10-25 in Paris: 03:00 CEST becomes 02:00 CET; 02:00-02:59 happens twice.
    assert walk("30 2 * * *", paris(2026, 10, 24, 12), 2) == [
        "25 02:30:00+0200", "26 02:30:00+0100"
    ]  # fmt: skip
    assert walk("*/30 * * * *", paris(2026, 10, 25, 1, 50), 5) == [
        "25 02:00:00+0200", "25 02:30:00+0200", "25 02:00:00+0100", "25 02:30:00+0100",
        "25 03:00:00+0100",
    ]  # fmt: skip
    # Asked from inside the second 02:xx hour, the next tick is in that hour, not the first's.
    inside = paris(2026, 10, 25, 2, 10, fold=1)
    assert walk("*/30 * * * *", inside, 1) == ["25 02:30:00+0100"]


@pytest.mark.parametrize(
    ("expression", "tz", "field", "words"),
    [
        ("* * *", "UTC", "cron", "3 fields"),
        ("61 * * * *", "UTC", "cron", "minute: '61' is outside 0-59"),
        ("* 24 * * *", "UTC", "cron", "hour"),
        ("0 0 31 2 *", "UTC", "cron", "never fires"),
        ("0 0 L * *", "UTC", "cron", "day of month"),
        ("5-2 * * * *", "UTC", "cron", "runs backwards"),
        ("*/0 * * * *", "UTC", "cron", "step"),
        ("0 0 * * funday", "UTC", "cron", "day of week"),
        ("* * * * *", "Mars/Olympus", "tz", "unknown time zone"),
    ],
)
def test_bad_expressions_name_the_field(expression: str, tz: str, field: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Cron.parse(expression, tz)
    assert caught.value.field == field
    assert words in str(caught.value)


def _schedule(catch_up: str, cron: str = "* * * * *", grace: float = 30.0) -> Schedule:
    return Schedule(
        key="s", task="t", cron=Cron.parse(cron, "Europe/Paris"), catch_up=catch_up, grace=grace
    )  # type: ignore[arg-type]


UTC_NOON = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


def minutes(ticks: list[datetime]) -> list[int]:
    return [t.minute for t in ticks]


@pytest.mark.parametrize("policy", ["latest", "all", "skip"])
def test_on_time_ticks_fire_whatever_the_policy(policy: str) -> None:
    decided = plan(_schedule(policy), UTC_NOON, UTC_NOON + timedelta(seconds=61, microseconds=5))
    assert minutes(decided.fire) == [1]
    assert decided.missed is None
    assert decided.cursor == UTC_NOON + timedelta(minutes=1)
    # Nothing due yet: nothing fires and the cursor stays.
    again = plan(_schedule(policy), decided.cursor, decided.cursor + timedelta(seconds=59))
    assert again.fire == []
    assert again.cursor == decided.cursor


@pytest.mark.parametrize(
    ("policy", "fired", "dropped"),
    [
        ("latest", [10], True),  # the newest missed tick stands for the nine
        ("all", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], False),
        ("skip", [], True),
    ],
)
def test_missed_ticks_after_an_outage_follow_the_policy(
    policy: str, fired: list[int], dropped: bool
) -> None:
    now = UTC_NOON + timedelta(minutes=10, seconds=40)  # 12:10 is 40 s old: past the grace
    decided = plan(_schedule(policy), UTC_NOON, now)
    assert minutes(decided.fire) == fired
    assert decided.missed == (UTC_NOON + timedelta(minutes=1), UTC_NOON + timedelta(minutes=10))
    assert decided.dropped is dropped
    assert decided.cursor == UTC_NOON + timedelta(minutes=10)


def test_latest_fires_no_missed_tick_when_one_on_time_stands_for_them() -> None:
    now = UTC_NOON + timedelta(minutes=10, seconds=20)  # 12:10 is 20 s old: on time
    decided = plan(_schedule("latest"), UTC_NOON, now)
    assert minutes(decided.fire) == [10]
    assert decided.missed is not None
    assert decided.missed[1].minute == 9


def test_grace_is_the_boundary_between_late_and_on_time() -> None:
    tick = UTC_NOON + timedelta(minutes=1)
    assert plan(_schedule("skip"), UTC_NOON, tick + timedelta(seconds=30)).fire == [tick]
    assert plan(_schedule("skip"), UTC_NOON, tick + timedelta(seconds=30.001)).fire == []


def test_a_long_outage_of_a_per_second_schedule_costs_little_to_plan() -> None:
    week = timedelta(days=7)
    decided = plan(_schedule("latest", "* * * * * *"), UTC_NOON, UTC_NOON + week)
    # Only the ticks still within the grace are on time; the week before is one dropped range.
    assert len(decided.fire) == 31
    assert decided.cursor == UTC_NOON + week
    batch = plan(_schedule("all", "* * * * * *"), UTC_NOON, UTC_NOON + week)
    assert len(batch.fire) == 100  # "all" fires in batches, the cursor moves with them
    assert batch.cursor == UTC_NOON + timedelta(seconds=100)


def test_the_decorator_registers_the_task_and_its_schedule() -> None:
    @pgqueue.periodic("*/5 * * * *", tz="Europe/Paris", name="unit.report", queue="reports",
                      kwargs={"kind": "daily"}, catch_up="all")  # fmt: skip
    def report(kind: str) -> str:
        return kind

    assert report("x") == "x"  # still a plain function
    assert "unit.report" in registered()
    schedule = schedules()["unit.report"]
    assert (schedule.task, schedule.queue, schedule.catch_up) == ("unit.report", "reports", "all")
    assert schedule.as_dict()["tz"] == "Europe/Paris"


def test_the_tick_can_be_passed_to_the_task() -> None:
    schedule = Schedule(key="k", task="t", cron=Cron.parse("* * * * *"), kwargs={"a": 1},
                        tick_kwarg="tick")  # fmt: skip
    import json

    payload = json.loads(schedule.payload(UTC_NOON))
    assert payload["kwargs"] == {"a": 1, "tick": "2026-06-01T12:00:00+00:00"}
    assert payload["headers"] == {"periodic": "k", "tick": "2026-06-01T12:00:00+00:00"}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cron": "nope"}, "cron"),
        ({"tz": "Nowhere/Else"}, "tz"),
        ({"queue": "bad queue"}, "queue"),
        ({"catch_up": "sometimes"}, "catch_up"),
        ({"priority": 11}, "priority"),
        ({"grace": -1.0}, "grace"),
        ({"args": [object()]}, "args"),
    ],
)
def test_bad_decorator_arguments_name_the_argument(kwargs: dict[str, object], field: str) -> None:
    arguments: dict[str, object] = {"cron": "* * * * *", **kwargs}
    with pytest.raises(ConfigurationError) as caught:
        pgqueue.periodic(**arguments)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_two_schedules_of_one_task_need_their_own_keys() -> None:
    def twice() -> None:
        return None

    pgqueue.periodic("0 * * * *", name="unit.twice")(twice)
    with pytest.raises(TaskRegistrationError, match="key="):
        pgqueue.periodic("30 * * * *", name="unit.twice")(twice)
    pgqueue.periodic("30 * * * *", name="unit.twice", key="unit.twice.half")(twice)
    assert {"unit.twice", "unit.twice.half"} <= set(schedules())


def test_schedules_from_configuration_are_checked_against_the_tasks() -> None:
    from pgqueue.periodic import configured
    from pgqueue.settings import WorkerSettings

    settings = WorkerSettings(
        schedules='[{"task": "t.a", "cron": "*/10 * * * * *", "tz": "Europe/Paris", '  # type: ignore[arg-type]
        '"kwargs": {"n": 1}, "catch_up": "skip"}]'
    )
    (schedule,) = configured(settings.schedules, {"t.a"})
    assert (schedule.key, schedule.catch_up, schedule.tz) == ("t.a", "skip", "Europe/Paris")
    assert schedule.cron.has_seconds
    with pytest.raises(ConfigurationError) as caught:
        configured(settings.schedules, {"t.b"})
    assert caught.value.field == "schedules[0].task"
    assert "no task 't.a'" in str(caught.value)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('[{"task": "t", "cron": "99 * * * *"}]', "minute"),
        ('[{"task": "t", "cron": "* * * * *", "tz": "Nowhere/Else"}]', "unknown time zone"),
        ('[{"task": "t", "cron": "* * * * *", "catch_up": "never"}]', "catch_up"),
        ('[{"task": "t", "cron": "* * * * *", "typo": 1}]', "typo"),
        ("not json", "not a JSON array"),
    ],
)
def test_bad_configured_schedules_are_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, value: str, words: str
) -> None:
    from pydantic import ValidationError

    from pgqueue.settings import WorkerSettings

    monkeypatch.setenv("PGQUEUE_SCHEDULES", value)
    with pytest.raises(ValidationError) as caught:
        WorkerSettings()
    assert words in str(caught.value)

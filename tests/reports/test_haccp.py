"""The HACCP record's figures on hand-made days, where every number can be worked out."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from core.chain import Defrost
from reports.haccp import (
    AssetDay,
    HaccpDay,
    HaccpReport,
    Limits,
    day_bounds,
    defrost_windows,
    local_instants,
    mkt_c,
    sensor_day,
)
from reports.render import to_csv, to_html

T0 = datetime(2026, 5, 12, 6, 0, tzinfo=UTC).timestamp()  # midnight in Mexico City
DAY = (T0, T0 + 86400)
COOLER = Limits(upper=5.0, lower=0.0)
MIN = 60.0


def minutes(*values: float, start: float = T0, every: float = MIN) -> list[tuple[float, float]]:
    return [(start + i * every, v) for i, v in enumerate(values)]


@pytest.mark.parametrize(
    ("hours", "expected"),
    [
        ([(24, 5.0)], 5.00),
        ([(23, 4.0), (1, 20.0)], 5.77),  # research/domain.md §B.5 worked values
        ([(20, 3.0), (3, 8.0), (1, 30.0)], 8.85),
    ],
)
def test_mean_kinetic_temperature_matches_the_worked_values(
    hours: list[tuple[int, float]], expected: float
) -> None:
    samples = [t for count, t in hours for _ in range(count)]
    assert mkt_c(samples) == pytest.approx(expected, abs=0.005)


def test_an_excursion_has_duration_peak_and_degree_minutes() -> None:
    # One reading a minute: 4, 6, 7, 6, 4 -> above 5 °C from minute 1 to minute 4.
    day = sensor_day("p", minutes(4, 6, 7, 6, 4), window=(T0, T0 + 5 * MIN),
                     interval_s=MIN, limits=COOLER)  # fmt: skip
    [e] = day.excursions
    assert (e.direction, e.limit_c, e.readings, e.peak_c) == ("above", 5.0, 3, 7.0)
    assert (e.start.timestamp(), e.end.timestamp()) == (T0 + MIN, T0 + 4 * MIN)
    assert e.duration_min == 3.0
    assert e.degree_minutes == pytest.approx(1 + 2 + 1)
    assert (day.readings, day.min_c, day.max_c, day.mean_c) == (5, 4.0, 7.0, 5.4)
    assert day.minutes_above == 3.0
    assert day.coverage_pct == 100.0
    assert day.gaps == []
    assert day.mkt_c is None  # not a pharmacy fridge


def test_a_gap_splits_an_excursion_and_is_reported() -> None:
    # 6 °C at minutes 0-1, nothing until minute 10, 6 °C again at 10-11. A reading
    # stands 3 intervals at most: minutes 4-10 are a gap.
    samples = minutes(6, 6) + minutes(6, 6, start=T0 + 10 * MIN)
    day = sensor_day("p", samples, window=(T0, T0 + 12 * MIN), interval_s=MIN, limits=COOLER)
    assert [(e.start.timestamp() - T0, e.end.timestamp() - T0) for e in day.excursions] == [
        (0, 4 * MIN),
        (10 * MIN, 12 * MIN),
    ]
    [gap] = day.gaps
    assert (gap.start.timestamp() - T0, gap.minutes) == (4 * MIN, 6.0)
    assert day.coverage_pct == pytest.approx(100 * 6 / 12)


def test_below_the_lower_limit_and_mkt_for_a_pharmacy_fridge() -> None:
    pharmacy = Limits(upper=8.0, lower=2.0)
    day = sensor_day("vac", minutes(5, 1.5, 1.0, 5), window=(T0, T0 + 4 * MIN),
                     interval_s=MIN, limits=pharmacy, pharmacy=True)  # fmt: skip
    [e] = day.excursions
    assert (e.direction, e.limit_c, e.peak_c) == ("below", 2.0, 1.0)
    assert e.degree_minutes == pytest.approx(0.5 + 1.0)
    assert day.minutes_below == 2.0
    assert day.mkt_c == pytest.approx(mkt_c([5, 1.5, 1.0, 5]))


def test_the_reading_before_midnight_stands_into_the_day() -> None:
    # 23:59 yesterday at 7 °C; today 7 °C at 00:01, then 3 °C from 00:02.
    day = sensor_day("p", minutes(7, 3, start=T0 + MIN), window=(T0, T0 + 3 * MIN),
                     interval_s=MIN, limits=COOLER, before=(T0 - MIN, 7.0),
                     checks=[("00:00", T0)])  # fmt: skip
    [e] = day.excursions
    assert e.from_previous_day
    assert (e.start.timestamp(), e.end.timestamp(), e.readings) == (T0, T0 + 2 * MIN, 1)
    assert e.degree_minutes == pytest.approx(2 * 2)
    assert (day.readings, day.max_c) == (2, 7.0)  # yesterday's reading is not today's
    assert day.coverage_pct == 100.0
    [check] = day.checks
    assert (check.value_c, check.at and check.at.timestamp()) == (7.0, T0 - MIN)


def test_a_stale_reading_before_midnight_covers_nothing() -> None:
    day = sensor_day("p", minutes(3, start=T0 + 10 * MIN), window=(T0, T0 + 11 * MIN),
                     interval_s=MIN, limits=COOLER, before=(T0 - 5 * MIN, 9.0))  # fmt: skip
    assert day.excursions == []
    assert day.gaps[0].minutes == 10.0


def test_check_times_take_the_standing_reading_or_none() -> None:
    samples = minutes(3.0, 3.5) + minutes(4.0, start=T0 + 60 * MIN)
    checks = [("a", T0 + 90), ("b", T0 + 30 * MIN), ("c", T0 + 60 * MIN)]
    day = sensor_day("p", samples, window=(T0, T0 + 2 * 3600), interval_s=MIN,
                     limits=COOLER, checks=checks)  # fmt: skip
    got = {c.check: (c.value_c, c.at and c.at.timestamp() - T0) for c in day.checks}
    assert got == {"a": (3.5, 60.0), "b": (None, None), "c": (4.0, 3600.0)}


def test_a_silent_sensor_is_one_long_gap() -> None:
    day = sensor_day("p", [], window=DAY, interval_s=MIN, limits=COOLER)
    assert (day.readings, day.min_c, day.mean_c, day.coverage_pct) == (0, None, None, 0.0)
    [gap] = day.gaps
    assert gap.minutes == 1440


@pytest.mark.parametrize(
    ("day", "hours"),
    [
        (date(2026, 9, 6), 23),  # Chile springs forward at midnight: 00:00 -> 01:00
        (date(2026, 4, 4), 25),  # and falls back at the end of Saturday
        (date(2026, 5, 12), 24),
    ],
)
def test_a_day_is_local_midnight_to_midnight(day: date, hours: int) -> None:
    start, end = day_bounds(day, ZoneInfo("America/Santiago"))
    assert (end - start) / 3600 == hours


def test_check_time_in_a_dst_gap_is_taken_after_the_jump() -> None:
    zone = ZoneInfo("America/Santiago")
    [(_, at)] = local_instants(date(2026, 9, 6), ["00:30"], zone)
    assert datetime.fromtimestamp(at, zone).strftime("%H:%M") == "01:30"


def test_defrost_windows_include_yesterdays_late_one() -> None:
    zone = ZoneInfo("America/Mexico_City")
    windows = defrost_windows(
        Defrost(times=["23:40", "12:00"], duration=1200, recovery=1200), date(2026, 5, 12), zone
    )
    local = [datetime.fromtimestamp(a, zone).strftime("%d %H:%M") for a, _ in windows]
    assert local == ["11 23:40", "12 12:00", "12 23:40"]


def _report(name: str) -> HaccpDay:
    sensor = sensor_day(
        "p<1>", minutes(4, 6, 7, 6, 4), window=(T0, T0 + 5 * MIN), interval_s=MIN,
        limits=COOLER, checks=[("00:03", T0 + 3 * MIN)],
    )  # fmt: skip
    asset = AssetDay(asset="a1", name=name, type=None, upper_c=5.0, lower_c=0.0,
                     defrost=[], sensors=[sensor])  # fmt: skip
    report = HaccpReport(
        store="s1", store_name=name, country="MX", timezone="America/Mexico_City",
        date=date(2026, 5, 12), start=datetime.fromtimestamp(T0, UTC),
        end=datetime.fromtimestamp(T0 + 5 * MIN, UTC), complete=False,
        generated_at=datetime.fromtimestamp(T0 + 5 * MIN, UTC), check_times=["00:03"],
        assets=[asset], alerts=[], excursions=1, readings=5,
    )  # fmt: skip
    return HaccpDay(report=report, series={("a1", "p<1>"): minutes(4, 6, 7, 6, 4)})


def test_csv_is_one_flat_table_in_local_time() -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(_report("Tienda").report))))
    assert [r["record"] for r in rows] == ["summary", "check", "excursion"]
    summary, check, excursion = rows
    assert (summary["min_c"], summary["max_c"], summary["mean_c"]) == ("4.00", "7.00", "5.40")
    assert (check["note"], check["value_c"]) == ("check 00:03", "6.00")
    assert check["start_local"] == "2026-05-12T00:03:00-06:00"
    assert excursion["start_local"] == "2026-05-12T00:01:00-06:00"
    assert (excursion["degree_minutes"], excursion["upper_c"]) == ("4.0", "5.00")


def test_html_escapes_every_name_it_shows() -> None:
    page = to_html(_report('<script>alert("x")</script>'))
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "p&lt;1&gt;" in page
    assert page.count("<svg") == 1

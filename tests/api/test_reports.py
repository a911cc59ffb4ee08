"""The HACCP report route: access, validation, and a record built from what was written.

The figures themselves are checked against InfluxDB in tests/reports/test_haccp_night.py.
"""

from __future__ import annotations

import pytest

from tests.api.conftest import NIGHT, Api

pytestmark = pytest.mark.integration

ROUTE = "/api/v1/reports/haccp"
# NIGHT is 23:00 on 17 November in Guatemala.
TODAY = {"store": "s042", "date": "2026-11-17"}


def test_a_manager_gets_the_record_of_the_day_so_far(api: Api) -> None:
    now_ms = round(NIGHT.timestamp() * 1000)
    lines = [
        f"temperature,store=s042,asset=s042-wic1,asset_type=walkin_cooler,sensor=wic1 "
        f"value={v} {now_ms - (3 - i) * 60_000}"
        for i, v in enumerate((3.0, 6.0, 3.0))
    ]
    api.influx.write("\n".join(lines).encode())
    body = api.client("manager").get(ROUTE, params=TODAY).json()
    assert (body["store"], body["complete"], body["readings"]) == ("s042", False, 3)
    [asset] = [a for a in body["assets"] if a["asset"] == "s042-wic1"]
    [sensor] = asset["sensors"]
    assert (sensor["min_c"], sensor["max_c"], sensor["mean_c"]) == (3.0, 6.0, 4.0)
    [excursion] = sensor["excursions"]
    assert (excursion["peak_c"], excursion["degree_minutes"]) == (6.0, 1.0)
    # 08:00 and 20:00 have passed with no reading standing: the record says so.
    assert [(c["check"], c["value_c"]) for c in sensor["checks"]] == [
        ("08:00", None),
        ("20:00", None),
    ]


@pytest.mark.parametrize(
    ("role", "params", "status"),
    [
        ("manager_b", TODAY, 403),  # another store's manager
        ("admin", {"store": "nope", "date": "2026-11-17"}, 404),
        ("admin", {"store": "s042", "date": "2026-11-19"}, 422),  # not begun in Guatemala
        ("admin", {"store": "s042", "date": "9999-12-31"}, 422),
        ("admin", {"store": "s042", "date": "1969-12-31"}, 422),
        ("admin", {"store": "s042", "date": "2026-02-30"}, 422),
        ("admin", {"store": "s042"}, 422),
        ("admin", {**TODAY, "format": "pdf"}, 422),
    ],
)
def test_refusals(api: Api, role: str, params: dict[str, str], status: int) -> None:
    answer = api.client(role).get(ROUTE, params=params)
    assert answer.status_code == status, answer.text


def test_anonymous_is_401(api: Api) -> None:
    assert api.anonymous.get(ROUTE, params=TODAY).status_code == 401


def test_csv_and_html_are_downloads_of_the_same_record(api: Api) -> None:
    as_csv = api.client("oncall").get(ROUTE, params={**TODAY, "format": "csv"})
    assert as_csv.headers["content-disposition"] == (
        'attachment; filename="haccp-s042-2026-11-17.csv"'
    )
    assert as_csv.text.startswith("record,date,store,asset")
    page = api.client("oncall").get(ROUTE, params={**TODAY, "format": "html"})
    assert "HACCP temperature record: San Pedro (s042)" in page.text

"""The HACCP record as CSV (one flat table) and as a printable HTML page.

Both show times in the store's local time with its UTC offset, as the people who sign the
record read them. The HTML page is self-contained (inline CSS and SVG, no script, no
network), so it prints, archives and renders the same anywhere, headless Chromium included.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from reports.haccp import (
    HOLD_INTERVALS,
    AlertRecord,
    AssetDay,
    HaccpDay,
    HaccpReport,
    SensorDay,
    day_bounds,
)

CSV_COLUMNS = (
    "record", "date", "store", "asset", "asset_name", "sensor", "start_local", "end_local",
    "value_c", "min_c", "max_c", "mean_c", "mkt_c", "lower_c", "upper_c", "duration_min",
    "degree_minutes", "readings", "coverage_pct", "kind", "state", "acked_at_local",
    "acked_by", "resolved_by", "note",
)  # fmt: skip

# Points drawn per sensor. A day at one reading a minute is 1,440; beyond this the curve
# keeps each bucket's lowest and highest reading, so no spike disappears from the chart.
# Higher makes a heavy page for no visible gain; lower blurs short excursions.
MAX_CHART_POINTS = 1600

_SENSOR_COLOURS = ("#1f5fa8", "#2a8a5a", "#8a4fb0", "#b5651d", "#555555")


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _local(ts: datetime | None, zone: ZoneInfo) -> str:
    return "" if ts is None else ts.astimezone(zone).isoformat(timespec="seconds")


def _hm(ts: datetime | None, zone: ZoneInfo) -> str:
    return "" if ts is None else ts.astimezone(zone).strftime("%H:%M")


# A spreadsheet reads a cell starting with one of these as a formula (OWASP "CSV
# injection"): an asset name or an SMS reply note such as "=HYPERLINK(...)" would run in
# the QA lead's Excel. Such text cells get a leading apostrophe; numbers (-18.50) do not.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A CSV cell that no spreadsheet evaluates (see :data:`FORMULA_STARTS`)."""
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value  # a negative number, not a formula


class _SafeWriter(csv.DictWriter):  # type: ignore[type-arg]  # generic in typeshed only
    """A DictWriter whose text cells cannot become formulas."""

    def writerow(self, rowdict: Mapping[str, Any]) -> Any:
        return super().writerow({k: csv_cell(v) for k, v in rowdict.items()})


def to_csv(report: HaccpReport) -> str:
    """One row per sensor summary, check reading, excursion, gap and alert."""
    zone = ZoneInfo(report.timezone)
    out = io.StringIO()
    writer = _SafeWriter(out, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    base = {"date": report.date.isoformat(), "store": report.store}
    for asset in report.assets:
        where = {**base, "asset": asset.asset, "asset_name": asset.name}
        for s in asset.sensors:
            row = {**where, "sensor": s.sensor}
            writer.writerow({
                **row, "record": "summary", "start_local": _local(report.start, zone),
                "end_local": _local(report.end, zone), "min_c": _num(s.min_c),
                "max_c": _num(s.max_c), "mean_c": _num(s.mean_c), "mkt_c": _num(s.mkt_c),
                "lower_c": _num(asset.lower_c), "upper_c": _num(asset.upper_c),
                "readings": s.readings, "coverage_pct": f"{s.coverage_pct:.1f}",
                "note": _calibration_note(s),
            })  # fmt: skip
            for c in s.checks:
                writer.writerow({
                    **row, "record": "check", "start_local": _local(c.at, zone),
                    "value_c": _num(c.value_c),
                    "note": f"check {c.check}" + ("" if c.at else ": no reading"),
                })  # fmt: skip
            for e in s.excursions:
                writer.writerow({
                    **row, "record": "excursion", "start_local": _local(e.start, zone),
                    "end_local": _local(e.end, zone), "value_c": _num(e.peak_c),
                    "lower_c": _num(e.limit_c) if e.direction == "below" else "",
                    "upper_c": _num(e.limit_c) if e.direction == "above" else "",
                    "duration_min": f"{e.duration_min:.1f}",
                    "degree_minutes": f"{e.degree_minutes:.1f}", "readings": e.readings,
                    "note": _excursion_note(e.direction, e.in_defrost, e.from_previous_day,
                                            e.into_next_day),
                })  # fmt: skip
            for g in s.gaps:
                writer.writerow({
                    **row, "record": "gap", "start_local": _local(g.start, zone),
                    "end_local": _local(g.end, zone), "duration_min": f"{g.minutes:.1f}",
                    "note": "no reading",
                })  # fmt: skip
    for a in report.alerts:
        writer.writerow({
            **base, "record": "alert", "asset": a.asset or "", "sensor": a.sensor or "",
            "start_local": _local(a.opened_at, zone), "end_local": _local(a.resolved_at, zone),
            "value_c": _num(a.value), "upper_c": _num(a.limit_value), "kind": a.kind,
            "state": a.state, "acked_at_local": _local(a.acked_at, zone),
            "acked_by": _who(a.acked_by, a.acked_by_name, a.ack_via),
            "resolved_by": _who(a.resolved_by, a.resolved_by_name, None),
            "note": " | ".join(n for n in (a.ack_note, a.resolve_note) if n),
        })  # fmt: skip
    return out.getvalue()


def _who(ident: str | None, name: str | None, via: str | None) -> str:
    """``NOC Guatemala (noc, sms)``: the person, and the id and channel the log holds."""
    if not ident:
        return ""
    if ident == "coldchain":  # the engine itself: the readings came back in range
        return "coldchain (back in range)"
    detail = ", ".join(p for p in (ident if name else None, via) if p)
    return f"{name or ident} ({detail})" if detail else (name or ident)


def _calibration_note(s: SensorDay) -> str:
    if s.calibration_overdue:
        return f"calibration overdue since {s.calibration_due}"
    if s.calibration_due is not None:
        return f"calibration due {s.calibration_due}"
    return ""


def _excursion_note(direction: str, defrost: bool, before: bool, after: bool) -> str:
    flags = [direction]
    if defrost:
        flags.append("in a defrost window")
    if before:
        flags.append("from the previous day")
    if after:
        flags.append("continues after the record")
    return "; ".join(flags)


# -- HTML ------------------------------------------------------------------------------

_CSS = """
body { font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #1b1b1b; margin: 24px auto; max-width: 980px; padding: 0 16px; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 6px; }
.meta { color: #555; margin-bottom: 12px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 6px; text-align: left;
         vertical-align: top; }
th { background: #f3f4f6; font-weight: 600; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.bad { color: #a61b1b; font-weight: 600; } .ok { color: #2a7a3a; }
.warn { color: #9a6700; } .muted { color: #777; }
.badge { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 11px;
         background: #eee; }
.asset { break-inside: avoid; border-top: 2px solid #1f5fa8; margin-top: 22px; }
svg { width: 100%; height: auto; background: #fff; }
.sign { margin-top: 36px; display: flex; gap: 48px; }
.sign div { flex: 1; border-top: 1px solid #333; padding-top: 4px; color: #555; }
footer { color: #666; font-size: 11px; margin-top: 24px; }
@media print { body { margin: 0; } h2 { break-after: avoid; } }
"""


def to_html(day: HaccpDay) -> str:
    """A printable page: header, summary, one section per asset with its chart, alerts."""
    r = day.report
    zone = ZoneInfo(r.timezone)
    state = (
        '<span class="ok">complete day</span>'
        if r.complete
        else f'<span class="warn">day in progress, up to {_hm(r.end, zone)}</span>'
    )
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>HACCP {escape(r.store_name)} {r.date}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>HACCP temperature record: {escape(r.store_name)} ({escape(r.store)})</h1>",
        (
            f'<div class="meta">{r.date:%A %d %B %Y} &middot; {escape(r.timezone)} '
            f"(UTC{r.start.astimezone(zone):%z}) &middot; {state} &middot; "
            f"{r.readings:,} readings &middot; {r.excursions} excursion(s) &middot; "
            f"{len(r.alerts)} alert(s) &middot; generated {_local(r.generated_at, zone)}</div>"
        ),
        _summary_table(r, zone),
    ]
    for asset in r.assets:
        parts.append(_asset_section(asset, day, zone))
    parts.append(_alerts_section(r.alerts, zone))
    parts.append(
        '<div class="sign"><div>Reviewed by (name, signature)</div><div>Date</div>'
        "<div>Corrective actions verified</div></div>"
    )
    parts.append(
        "<footer>Excursions are runs of readings beyond the unit's alarm limit; "
        "degree-minutes add up how far beyond (K) times how long (min). Each reading stands "
        f"until the next one, at most {HOLD_INTERVALS:g} reporting intervals; time no "
        "reading stands for is a gap. The reading at a check time is the one standing then. "
        "MKT: mean kinetic temperature, &Delta;H/R = 10,000 K. Produced by coldchain from "
        "the readings stored in InfluxDB and the alert log.</footer></body></html>"
    )
    return "\n".join(parts)


def _summary_table(r: HaccpReport, zone: ZoneInfo) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in ("Unit", "Sensor", "Limits °C", "Min", "Max", "Mean", "MKT", "Coverage",
                  "Excursions", *(f"Check {t}" for t in r.check_times))
    )  # fmt: skip
    rows = []
    for asset in r.assets:
        for s in asset.sensors:
            checks = {c.check: c for c in s.checks}
            cells = [
                f"<td>{escape(asset.name)}</td>",
                f"<td>{escape(s.sensor)}</td>",
                f'<td class="n">{_limits(asset)}</td>',
                *(f'<td class="n">{_num(v)}</td>' for v in (s.min_c, s.max_c, s.mean_c)),
                f'<td class="n">{_num(s.mkt_c)}</td>',
                (
                    f'<td class="n {"" if s.coverage_pct >= 95 else "warn"}">'
                    f"{s.coverage_pct:.1f} %</td>"
                ),
                f'<td class="n {"bad" if s.excursions else "ok"}">{len(s.excursions)}</td>',
            ]
            for t in r.check_times:
                c = checks.get(t)
                if c is None:
                    cells.append('<td class="n muted">later</td>')
                elif c.value_c is None:
                    cells.append('<td class="n bad">none</td>')
                else:
                    cells.append(
                        f'<td class="n {_side_class(c.value_c, asset)}">{c.value_c:.1f}'
                        f' <span class="muted">{_hm(c.at, zone)}</span></td>'
                    )
            rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<h2>Summary</h2><table><tr>{head}</tr>{''.join(rows)}</table>"


def _limits(asset: AssetDay) -> str:
    lo = "" if asset.lower_c is None else f"{asset.lower_c:g}"
    hi = "" if asset.upper_c is None else f"{asset.upper_c:g}"
    if lo and hi:
        return f"{lo} to {hi}"
    return f"&le; {hi}" if hi else (f"&ge; {lo}" if lo else "")


def _side_class(value: float, asset: AssetDay) -> str:
    if (asset.upper_c is not None and value > asset.upper_c) or (
        asset.lower_c is not None and value < asset.lower_c
    ):
        return "bad"
    return ""


def _asset_section(asset: AssetDay, day: HaccpDay, zone: ZoneInfo) -> str:
    kind = asset.type.value.replace("_", " ") if asset.type else "no longer registered"
    parts = [
        '<section class="asset">',
        (
            f'<h2>{escape(asset.name)} <span class="badge">{escape(kind)}</span> '
            f'<span class="muted">limits {_limits(asset)} °C</span></h2>'
        ),
        _chart(asset, day, zone),
    ]
    rows = []
    for s in asset.sensors:
        for e in s.excursions:
            rows.append(
                f"<tr><td>{escape(s.sensor)}</td><td>{_hm(e.start, zone)}&ndash;"
                f'{_hm(e.end, zone)}</td><td class="n">{e.duration_min:.0f} min</td>'
                f'<td class="n bad">{e.peak_c:.1f}</td><td class="n">{e.limit_c:g}</td>'
                f'<td class="n">{e.degree_minutes:.1f}</td><td>'
                f"{escape(_excursion_note(e.direction, e.in_defrost, e.from_previous_day, e.into_next_day))}"  # noqa: E501
                "</td></tr>"
            )
        for g in s.gaps:
            rows.append(
                f"<tr><td>{escape(s.sensor)}</td><td>{_hm(g.start, zone)}&ndash;"
                f'{_hm(g.end, zone)}</td><td class="n">{g.minutes:.0f} min</td>'
                '<td></td><td></td><td></td><td class="warn">no reading</td></tr>'
            )
        if s.calibration_due is not None:
            cls = "bad" if s.calibration_overdue else "muted"
            parts.append(f'<div class="{cls}">{escape(s.sensor)}: {_calibration_note(s)}</div>')
    if rows:
        parts.append(
            "<table><tr><th>Sensor</th><th>When</th><th>Duration</th><th>Peak °C</th>"
            "<th>Limit °C</th><th>Degree-min</th><th>Note</th></tr>" + "".join(rows) + "</table>"
        )
    else:
        parts.append('<div class="ok">Within limits all day, no gaps.</div>')
    parts.append("</section>")
    return "\n".join(parts)


def _thin(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """At most about MAX_CHART_POINTS points, keeping each bucket's extremes in order."""
    if len(points) <= MAX_CHART_POINTS:
        return list(points)
    size = len(points) * 2 // MAX_CHART_POINTS + 1
    out: list[tuple[float, float]] = []
    for i in range(0, len(points), size):
        bucket = points[i : i + size]
        lo = min(bucket, key=lambda p: p[1])
        hi = max(bucket, key=lambda p: p[1])
        out.extend(sorted({lo, hi}))
    return out


def _chart(asset: AssetDay, day: HaccpDay, zone: ZoneInfo) -> str:
    """An SVG of the day: readings per sensor, limits dashed, defrost and excursions shaded."""
    r = day.report
    width, height, left, right, top, bottom = 900, 230, 44, 12, 10, 26
    t0, t1 = day_bounds(r.date, zone)  # the whole day, also while it is running
    series = {s.sensor: day.series.get((asset.asset, s.sensor), []) for s in asset.sensors}
    values = [v for pts in series.values() for _, v in pts]
    bounds = [v for v in (asset.upper_c, asset.lower_c) if v is not None]
    lo = min(values + bounds, default=0.0) - 1.0
    hi = max(values + bounds, default=10.0) + 1.0

    def x(ts: float) -> float:
        return left + (ts - t0) / (t1 - t0) * (width - left - right)

    def y(v: float) -> float:
        return top + (hi - v) / (hi - lo) * (height - top - bottom)

    svg = [
        (
            f'<svg viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" '
            f'role="img" aria-label="Temperature of {escape(asset.name)}">'
        )
    ]
    for w in asset.defrost:
        a, b = max(w.start.timestamp(), t0), min(w.end.timestamp(), t1)
        if b > a:
            svg.append(
                f'<rect x="{x(a):.1f}" y="{top}" width="{x(b) - x(a):.1f}" '
                f'height="{height - top - bottom}" fill="#dbeafe"><title>defrost</title></rect>'
            )
    for s in asset.sensors:
        for e in s.excursions:
            a, b = e.start.timestamp(), e.end.timestamp()
            svg.append(
                f'<rect x="{x(a):.1f}" y="{top}" width="{max(x(b) - x(a), 1.0):.1f}" '
                f'height="{height - top - bottom}" fill="#fde2e2"><title>excursion</title></rect>'
            )
    # Grid: a line per degree step that gives about five lines, hour ticks every 3 h.
    step = max(1, round((hi - lo) / 5))
    v = int(lo) - int(lo) % step
    while v <= hi:
        if v >= lo:
            svg.append(
                f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                f'stroke="#eee"/><text x="{left - 4}" y="{y(v) + 4:.1f}" font-size="10" '
                f'text-anchor="end" fill="#666">{v}</text>'
            )
        v += step
    hours = round((t1 - t0) / 3600)
    for h in range(0, hours + 1, 3):
        ts = t0 + h * 3600
        label = datetime.fromtimestamp(ts, zone).strftime("%H:%M")
        svg.append(
            f'<line x1="{x(ts):.1f}" x2="{x(ts):.1f}" y1="{top}" y2="{height - bottom}" '
            f'stroke="#f0f0f0"/><text x="{x(ts):.1f}" y="{height - 8}" font-size="10" '
            f'text-anchor="{"end" if h == hours else "middle"}" fill="#666">{label}</text>'
        )
    for limit in bounds:
        svg.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(limit):.1f}" y2="{y(limit):.1f}" '
            f'stroke="#c62828" stroke-dasharray="5 4"><title>limit {limit:g} °C</title></line>'
        )
    for i, s in enumerate(asset.sensors):
        colour = _SENSOR_COLOURS[i % len(_SENSOR_COLOURS)]
        cap = HOLD_INTERVALS * s.interval_s
        for segment in _segments(_thin(series[s.sensor]), cap):
            path = " ".join(f"{x(ts):.1f},{y(val):.2f}" for ts, val in segment)
            svg.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="1.4" points="{path}"/>'
            )
    svg.append(
        f'<rect x="{left}" y="{top}" width="{width - left - right}" '
        f'height="{height - top - bottom}" fill="none" stroke="#ccc"/></svg>'
    )
    legend = " ".join(
        f'<span style="color:{_SENSOR_COLOURS[i % len(_SENSOR_COLOURS)]}">&#9632;</span> '
        f"{escape(s.sensor)}"
        for i, s in enumerate(asset.sensors)
    )
    key = "shaded blue: defrost, red: excursion, dashed: alarm limit"
    return "".join(svg) + f'<div class="muted">{legend} &middot; {key}</div>'


def _segments(points: list[tuple[float, float]], cap: float) -> list[list[tuple[float, float]]]:
    """Split the curve where no reading stood, so a gap shows as a gap."""
    out: list[list[tuple[float, float]]] = []
    for p in points:
        if not out or p[0] - out[-1][-1][0] > cap:
            out.append([])
        out[-1].append(p)
    return out


def _alerts_section(alerts: list[AlertRecord], zone: ZoneInfo) -> str:
    if not alerts:
        return '<h2>Alerts</h2><div class="ok">No alert this day.</div>'
    rows = []
    for a in alerts:
        acked = (
            f"{_hm(a.acked_at, zone)} {escape(_who(a.acked_by, a.acked_by_name, a.ack_via))}"
            if a.acked_at
            else ""
        )
        resolved = (
            f"{_hm(a.resolved_at, zone)} {escape(_who(a.resolved_by, a.resolved_by_name, None))}"
            if a.resolved_at
            else '<span class="bad">open</span>'
        )
        notes = "<br>".join(escape(n) for n in (a.ack_note, a.resolve_note) if n)
        rows.append(
            f"<tr><td>{_local(a.opened_at, zone)[:16].replace('T', ' ')}</td>"
            f'<td>{escape(a.kind)} <span class="badge">{escape(a.severity)}</span></td>'
            f'<td>{escape(a.asset or "")}</td><td class="n">{_num(a.value)}</td>'
            f'<td class="n">{a.level}</td><td>{acked}</td><td>{resolved}</td>'
            f"<td>{notes}</td></tr>"
        )
    return (
        "<h2>Alerts and corrective actions</h2><table><tr><th>Opened</th><th>Kind</th>"
        "<th>Unit</th><th>Value °C</th><th>Level</th><th>Acknowledged</th><th>Resolved</th>"
        "<th>Notes</th></tr>" + "".join(rows) + "</table>"
    )

"""`coldchain demo` tells the San Pedro night as it happens, and leaves the HACCP record.

The demo runs as `make demo` runs it (real servers, the whole stack in one process),
without the background stores to keep the suite short; its output is read as a timeline.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from coldchain.demo import run_demo

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_demo_narrates_the_night_and_leaves_the_record(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_demo(out_dir=tmp_path / "out", stream=out, background_stores=0) == 0
    text = out.getvalue()
    story = [line for line in text.splitlines() if re.match(r"^\d\d:\d\d  ", line)]
    expected = [
        "20:00  first, 4 hostile messages:",
        "23:10  !! the compressor of San Pedro's walk-in cooler trips",
        "23:28  the walk-in passes its 5 C limit",
        "23:49  SMS to Ana Lopez (store_manager)",
        "00:09  SMS to NOC Guatemala (oncall)",
        "00:14  on-call replies by SMS",
        "02:00  !! the technician resets the walk-in's compressor",
        "02:18  SMS to Ana Lopez (store_manager)",
    ]
    # In this order, each once (the regional desk may hear the unresolved alert later).
    positions = [next(i for i, line in enumerate(story) if line.startswith(e)) for e in expected]
    assert positions == sorted(positions)
    assert 'coldchain answers "Alerta' in text
    assert re.search(r"acknowledged 00:14 by NOC Guatemala by sms reply \(25 min", text)
    assert re.search(r"dead letters +1 ", text)
    assert "new-probe-7" in text
    assert re.search(r"readings written to InfluxDB +[1-9]", text)
    assert "/docs" in text
    record = tmp_path / "out" / "haccp-s042-2026-11-18.html"
    assert "Camara fria 1" in record.read_text()
    assert (tmp_path / "out" / "haccp-s042-2026-11-18.csv").exists()

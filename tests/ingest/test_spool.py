"""The spool: durable, ordered, bounded, torn-write safe."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.spool import Spool, SpoolFull


def test_order_and_persistence_across_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    for i in range(5):
        spool.append(f"batch {i}".encode())
    reopened = Spool(tmp_path, max_bytes=10_000)
    assert len(reopened) == 5
    seen = []
    while (head := reopened.head()) is not None:
        path, body = head
        seen.append(body.decode())
        reopened.pop(path)
    assert seen == [f"batch {i}" for i in range(5)]
    assert reopened.size_bytes == 0
    reopened.append(b"after")  # numbering continues; never reuses a drained name
    assert Spool(tmp_path, max_bytes=10_000).head()[1] == b"after"  # type: ignore[index]


def test_bound_refuses_instead_of_dropping(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=25)
    spool.append(b"x" * 20)
    with pytest.raises(SpoolFull):
        spool.append(b"y" * 10)
    assert len(spool) == 1
    # an empty spool always takes one batch, however large: progress beats a deadlock
    big = Spool(tmp_path / "big", max_bytes=5)
    big.append(b"z" * 50)
    assert len(big) == 1


def test_a_torn_write_leaves_no_partial_batch(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    spool.append(b"complete")
    (tmp_path / "00000000000000000002.tmp").write_bytes(b"half a ba")  # crash mid-append
    reopened = Spool(tmp_path, max_bytes=10_000)
    assert len(reopened) == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_replace_head_after_partial_progress(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    spool.append(b"a\nb\nc")
    spool.append(b"d")
    path, _ = spool.head()  # type: ignore[misc]
    spool.replace_head(path, b"c")
    assert spool.head()[1] == b"c"  # type: ignore[index]
    assert spool.size_bytes == 2

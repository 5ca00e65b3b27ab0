"""The erasure probe of the embedded engine runs and prints its figures (docs/operations.md quotes them)."""

from __future__ import annotations

import re

import pytest

from tools.lab import edge_erasure_probe


def test_the_probe_finds_the_canary_where_the_engine_keeps_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert edge_erasure_probe.main(["--deleted", "3", "--ops", "20", "--dims", "8"]) == 0
    out = capsys.readouterr().out
    rows = {m.group(1).strip(): int(m.group(2)) for m in re.finditer(r"^(.{45}) +(\d+) +[\d.]+ ", out, re.M)}
    assert rows["stored and flushed"] == 6  # 3 in the segment's payload pages, 3 in the WAL
    assert rows["deleted"] == 6  # a delete leaves the bytes
    assert "wal/" in out
    assert rows["close(), load(), optimize(), flush()"] >= 3  # the WAL keeps them: the documented bound

"""The broadcast history file: append, newest first, trimmed, survives a new store."""

from __future__ import annotations

import json

import pytest

from jupyterhub_ext.history import HistoryStore


def test_entries_survive_a_new_store_newest_first(tmp_path):
    path = tmp_path / "sub" / "history.jsonl"
    store = HistoryStore(path, size=5)
    for i in range(3):
        store.append({"id": i, "message": f"<script>m{i}</script>"})
    again = HistoryStore(path, size=5)  # e.g. after a hub restart
    assert [e["id"] for e in again.recent()] == [2, 1, 0]
    assert again.recent()[0]["message"] == "<script>m2</script>"
    assert [e["id"] for e in again.recent(2)] == [2, 1]
    assert again.recent(0) == []


def test_trimmed_to_size_on_disk(tmp_path):
    path = tmp_path / "history.jsonl"
    store = HistoryStore(path, size=3)
    for i in range(20):
        store.append({"id": i})
    lines = path.read_text().splitlines()
    assert len(lines) <= 2 * 3
    assert [e["id"] for e in store.recent()] == [19, 18, 17]
    assert [e["id"] for e in store.recent(100)] == [19, 18, 17]  # never more than size
    assert not (tmp_path / "history.jsonl.tmp").exists()


def test_damaged_line_is_skipped(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text(json.dumps({"id": 1}) + "\n{half a line\n" + json.dumps({"id": 2}) + "\n")
    assert [e["id"] for e in HistoryStore(path).recent()] == [2, 1]


def test_missing_file_is_empty_history(tmp_path):
    assert HistoryStore(tmp_path / "none.jsonl").recent() == []


def test_size_must_be_positive(tmp_path):
    with pytest.raises(ValueError):
        HistoryStore(tmp_path / "h.jsonl", size=0)

"""The broadcast history file: append, newest first, trimmed, survives a new store."""

from __future__ import annotations

import json

import pytest

from jupyterhub_ext.notifications.history import HistoryStore


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


TRICKY = "one\u2028two\u2029three\rfour\r\nfive\x85six\x0bseven\x0ceight\x1cnine\nten"


def test_line_breaks_in_a_message_keep_one_entry_per_line(tmp_path):
    path = tmp_path / "history.jsonl"
    store = HistoryStore(path, size=5)
    entries = [
        {"id": 1, "message": "before"},
        {"id": 2, "message": TRICKY, TRICKY: TRICKY},
        {"id": 3, "message": "after"},
    ]
    for e in entries:
        store.append(e)
    assert HistoryStore(path, size=5).recent() == entries[::-1]  # read back exactly
    raw = path.read_bytes().decode("utf-8")
    # one entry per line for any reader, including str.splitlines() and tools
    # that treat U+2028/U+2029/U+0085 (or \r) as line ends
    assert raw.count("\n") == 3 and len(raw.splitlines()) == 3
    assert [json.loads(line)["id"] for line in raw.splitlines()] == [1, 2, 3]
    assert not any(ch in raw for ch in "\r\x85\u2028\u2029\x0b\x0c\x1c")


def test_line_breaks_survive_the_rewrite_when_trimming(tmp_path):
    path = tmp_path / "history.jsonl"
    store = HistoryStore(path, size=2)
    for i in range(7):
        store.append({"id": i, "message": f"{i}{TRICKY}"})
    assert store.recent() == [{"id": i, "message": f"{i}{TRICKY}"} for i in (6, 5)]
    assert all(
        json.loads(line)["message"].endswith("ten") for line in path.read_text().split("\n")[:-1]
    )


def test_old_file_with_raw_separators_reads_back(tmp_path):
    # written by an earlier version: raw U+2028 inside a JSON string
    path = tmp_path / "history.jsonl"
    path.write_text(
        json.dumps({"id": 1, "message": "a\u2028b"}, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    assert HistoryStore(path).recent() == [{"id": 1, "message": "a\u2028b"}]

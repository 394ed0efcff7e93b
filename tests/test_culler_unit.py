"""The culler's pure decision: when to warn, when to cull, how extensions count."""

from __future__ import annotations

import json

import pytest
from traitlets.config import Config

from jupyterhub_ext import culler
from jupyterhub_ext.culler import CULL, KEEP, WARN, CullerConfig, Extension, deadline, decide


def cfg(**kw) -> CullerConfig:
    c = Config()
    for k, v in kw.items():
        setattr(c.CullerConfig, k, v)
    return CullerConfig(config=c)


def test_idle_deadline_is_last_activity_plus_timeout():
    assert deadline(1000.0, 60, None) == 1060.0
    assert deadline(1000.0, 60, Extension(started=900.0)) == 1060.0
    assert deadline(1000.0, 0, None) is None  # timeout 0: never culled


@pytest.mark.parametrize(
    ("now", "expected"),
    [(1000.0, KEEP), (1029.9, KEEP), (1030.0, WARN), (1059.0, WARN), (1060.0, CULL), (5000, CULL)],
)
def test_warn_then_cull(now, expected):
    assert decide(now, 1000.0, 60, 30, Extension(started=900.0)) == expected


def test_warned_once_per_deadline():
    ext = Extension(started=900.0)
    assert decide(1040.0, 1000.0, 60, 30, ext) == WARN
    ext.warned_for = deadline(1000.0, 60, ext)
    assert decide(1041.0, 1000.0, 60, 30, ext) == KEEP
    # activity moves the deadline: a new warning before the new one
    assert decide(1100.0, 1080.0, 60, 30, ext) == KEEP
    assert decide(1115.0, 1080.0, 60, 30, ext) == WARN


def test_no_warning_when_warning_is_zero_and_never_with_timeout_zero():
    assert decide(1059.0, 1000.0, 60, 0, None) == KEEP
    assert decide(1060.0, 1000.0, 60, 0, None) == CULL
    assert decide(10**9, 1000.0, 0, 30, None) == KEEP


def test_extension_moves_deadline_from_current_deadline_or_now():
    c = cfg(extension=100, max_extensions=2)
    ext = Extension(started=900.0)
    # warned at 1040, deadline 1060: kept until 1160
    assert culler.extend(ext, 1040.0, 1060.0, c) == 1160.0
    assert decide(1100.0, 1000.0, 60, 30, ext) == KEEP  # past the original deadline
    assert decide(1130.0, 1000.0, 60, 30, ext) == WARN
    assert decide(1160.0, 1000.0, 60, 30, ext) == CULL
    # a late press (after the deadline somehow) counts from now
    assert culler.extend(ext, 1200.0, 1160.0, c) == 1300.0
    assert ext.used == 2


def test_extensions_are_limited():
    c = cfg(extension=100, max_extensions=1)
    ext = Extension(started=900.0)
    culler.extend(ext, 1040.0, 1060.0, c)
    with pytest.raises(culler.NoExtensionsLeft, match="most allowed"):
        culler.extend(ext, 1140.0, 1160.0, c)
    assert ext.used == 1 and ext.extended_until == 1160.0
    with pytest.raises(culler.NoExtensionsLeft):
        culler.extend(Extension(started=1.0), 1.0, 2.0, cfg(max_extensions=0))


def test_activity_after_extension_still_counts():
    ext = Extension(started=0.0, used=1, extended_until=500.0)
    # new activity at 480: idle deadline 540 is later than the extension
    assert deadline(480.0, 60, ext) == 540.0


def test_per_profile_timeouts():
    c = cfg(timeout=3600, profile_timeouts={"gpu": 600, "forever": 0})
    assert c.timeout_for("gpu") == 600
    assert c.timeout_for("cpu") == 3600
    assert c.timeout_for(None) == 3600
    assert c.timeout_for("forever") == 0
    assert decide(1000.0 + 600, 1000.0, c.timeout_for("gpu"), 30, None) == CULL
    assert decide(1000.0 + 600, 1000.0, c.timeout_for("cpu"), 30, None) == KEEP


def test_new_start_forgets_extensions():
    s = culler.State()
    ext = s.extension_of("alice", "", started=100.0)
    ext.used = 2
    assert s.extension_of("alice", "", started=100.0).used == 2
    assert s.extension_of("alice", "", started=200.0).used == 0


def test_notes_survive_a_restart(tmp_path):
    path = str(tmp_path / "state.json")
    s = culler.State(path=path)
    s.add_note("alice", "", {"at": 1.0, "idle_seconds": 61})
    s.save().result()
    t = culler.State(path=path)
    t.load()
    assert t.notes == {"alice": {"": {"at": 1.0, "idle_seconds": 61}}}
    t.drop_note("alice", "")
    t.save().result()
    u = culler.State(path=path)
    u.load()
    assert u.notes == {}


def test_extensions_survive_a_restart_for_the_same_start_only(tmp_path):
    path = str(tmp_path / "state.json")
    c = cfg(extension=100, max_extensions=2)
    s = culler.State(path=path)
    started = 1765100000.123456  # a real start time: the float must come back exact
    s.keep_running("alice", "gpu", started, 1040.0, 1060.0, c)
    s.extension_of("alice", "gpu", started).warned_for = 1160.0
    s.keep_running("bob", "", 5.0, 1040.0, 1060.0, c)
    s.save().result()
    t = culler.State(path=path)
    t.load()
    ext = t.extension_of("alice", "gpu", started)
    assert (ext.used, ext.extended_until, ext.warned_for) == (1, 1160.0, 1160.0)
    # the limit counts what was used before the restart
    t.keep_running("alice", "gpu", started, 1100.0, 1160.0, c)
    with pytest.raises(culler.NoExtensionsLeft):
        t.keep_running("alice", "gpu", started, 1200.0, 1260.0, c)
    # bob's server was started again since: nothing of the earlier start applies
    assert t.extension_of("bob", "", 6.0).used == 0
    # a stopped server's extensions are forgotten, on disk too
    t.forget({("alice", "gpu")})
    t.save().result()
    u = culler.State(path=path)
    u.load()
    assert set(u.extensions) == {("bob", "")}


def test_state_file_format_is_versioned_and_checked():
    ext = Extension(started=1.0, used=2, extended_until=3.0, warned_for=3.0)
    data = culler.encode_state({("a", ""): ext}, {"b": {"": {"at": 1.0}}})
    assert data["version"] == culler.STATE_VERSION
    assert culler.decode_state(data) == ({("a", ""): ext}, {"b": {"": {"at": 1.0}}})
    # the notes file of earlier versions: its notes, no extensions
    assert culler.decode_state({"b": {"": {"at": 1.0}}}) == ({}, {"b": {"": {"at": 1.0}}})
    bad = [
        ([], "expected a JSON object"),
        ({"version": 99}, "version 99, this hub reads version 1"),
        ({"a": 1}, "neither a state file nor an old notes file"),
        ({"version": 1, "extensions": {}}, "'extensions' is not a list"),
        ({"version": 1, "notes": []}, "'notes' is not an object"),
        ({"version": 1, "extensions": [{"user": "a"}]}, "bad extension entry"),
        ({"version": 1, "extensions": [{**data["extensions"][0], "used": "x"}]}, "bad"),
        ({"version": 1, "extensions": [{**data["extensions"][0], "user": 1}]}, "without user"),
    ]
    for value, message in bad:
        with pytest.raises(culler.StateFileError, match=message):
            culler.decode_state(value)


@pytest.mark.parametrize("content", ["{not json", '{"version": 99}', "[1, 2]"])
def test_an_unusable_state_file_is_set_aside_with_a_warning(tmp_path, caplog, content):
    path = tmp_path / "state.json"
    path.write_text(content)
    s = culler.State(path=str(path))
    with caplog.at_level("WARNING", logger="jupyterhub_ext.culler"):
        s.load()
    assert s.extensions == {} and s.notes == {}
    assert f"Cannot use the idle culler's state file {path}" in caplog.text
    assert f"moved to {path}.unreadable" in caplog.text
    # kept for the admin, not overwritten by the next save
    assert (tmp_path / "state.json.unreadable").read_text() == content
    s.add_note("a", "", {"at": 1.0})
    s.save().result()
    assert json.loads(path.read_text())["notes"] == {"a": {"": {"at": 1.0}}}


def test_old_notes_file_is_read_and_written_back_in_the_new_format(tmp_path):
    path = tmp_path / "jupyterhub_ext_culled.json"
    path.write_text(json.dumps({"alice": {"": {"at": 1.0, "idle_seconds": 61}}}))
    c = cfg(notes_path=str(path))  # the deprecated name still points at it
    assert c.state_path == str(path)
    s = culler.State(path=c.state_path)
    s.load()
    assert s.notes == {"alice": {"": {"at": 1.0, "idle_seconds": 61}}}
    s.keep_running("bob", "", 1.0, 2.0, 3.0, cfg())
    s.save().result()
    data = json.loads(path.read_text())
    assert data["version"] == 1 and data["notes"] == s.notes
    assert data["extensions"][0]["user"] == "bob"


def test_disabled_by_default():
    assert CullerConfig().enabled is False
    culler.configure(Config())
    assert culler.config() is None

"""Quota fields of a volume set, quota states and the messages users read (pure)."""

import pytest

from jupyterhub_ext.storage.volumes import VolumeSetError, parse_size, parse_volume_set
from jupyterhub_ext.usage import quota


def spec(**fields):
    return parse_volume_set({"home": {"name": "h-{username}", "mount": "/home/jovyan", **fields}})[
        0
    ]


@pytest.mark.parametrize(
    "text, expected",
    [
        (1234, 1234),
        ("500M", 500_000_000),
        ("500MB", 500_000_000),
        ("10 GiB", 10 * 1024**3),
        ("1.5G", 1_500_000_000),
        ("2k", 2000),
        ("64", 64),
    ],
)
def test_parse_size_human_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "ten", "5 XB", -1, True, "1e9", None])
def test_parse_size_refuses_nonsense(bad):
    with pytest.raises(ValueError):
        parse_size(bad)


def test_quota_fields_are_validated_with_the_entry_named():
    with pytest.raises(VolumeSetError, match=r"volume_set\['home'\].*above hard_limit"):
        spec(soft_limit="2G", hard_limit="1G")
    with pytest.raises(VolumeSetError, match="'refuse' needs a hard_limit"):
        spec(soft_limit="1G", on_hard_limit="refuse")
    with pytest.raises(VolumeSetError, match="'warn' or 'refuse'"):
        spec(hard_limit="1G", on_hard_limit="delete")
    with pytest.raises(VolumeSetError, match="'soft_limit'.*not a size"):
        spec(soft_limit="lots")
    with pytest.raises(VolumeSetError, match="quotas are per user"):
        parse_volume_set(
            {"t": {"name": "team", "mount": "/t", "scope": "shared", "hard_limit": "1G"}}
        )
    s = spec(soft_limit="1G", hard_limit="2GiB", on_hard_limit="refuse")
    assert (s.soft_limit, s.hard_limit, s.on_hard_limit) == (10**9, 2 * 1024**3, "refuse")
    assert spec().soft_limit is None and spec().on_hard_limit == "warn"


def test_states_and_refusal():
    s = spec(soft_limit=100, hard_limit=200, on_hard_limit="refuse")
    assert [quota.state(s, n) for n in (None, 100, 101, 200, 201)] == [
        "ok",
        "ok",
        "soft",
        "soft",
        "hard",
    ]
    assert quota.refuses(s, 201) and not quota.refuses(s, 200) and not quota.refuses(s, None)
    warn_only = spec(soft_limit=100, hard_limit=200)
    assert quota.state(warn_only, 500) == "hard" and not quota.refuses(warn_only, 500)


def test_messages_say_what_to_delete_and_how_to_reset():
    s = spec(soft_limit="30M", hard_limit="60M", on_hard_limit="refuse")
    soft = quota.message(s, 40_000_000, quota.cleanup_hint(s))
    assert "holds 40.0 MB, over its soft limit of 30.0 MB" in soft
    assert "du -sh /home/jovyan/*" in soft and "next start will be refused" in soft
    hard = quota.message(s, 70_000_000, quota.cleanup_hint(s))
    assert "cannot start until it is smaller" in hard
    assert "Reset the home volume with Manage Volumes" in hard


def test_report_and_crossings_notify_once_per_worsening():
    s = spec(soft_limit=100, hard_limit=200, on_hard_limit="refuse")
    other = parse_volume_set({"c": {"name": "c-{username}", "mount": "/c"}})[0]
    rep = quota.report([s, other], {"home": 150, "c": 10**12})
    assert set(rep) == {"home"}  # a volume without a quota is not reported
    assert rep["home"]["state"] == "soft" and not rep["home"]["refuses_start"]
    assert quota.report([s], {})["home"] == {
        "soft_limit": 100,
        "hard_limit": 200,
        "on_hard_limit": "refuse",
        "size": None,
        "state": "ok",
        "refuses_start": False,
        "message": "",
    }
    before = {("alice", "home"): "soft", ("bob", "home"): "hard"}
    now = {("alice", "home"): "soft", ("bob", "home"): "soft", ("carol", "home"): "hard"}
    assert quota.crossings(before, now) == [("carol", "home", "hard")]
    assert quota.crossings(now, {("alice", "home"): "hard"}) == [("alice", "home", "hard")]

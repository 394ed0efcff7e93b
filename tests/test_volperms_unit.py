"""Owner / group / mode of volumes in a volume set (pure parsing and the helper's command)."""

import pytest

from jupyterhub_ext.storage.volperms import command
from jupyterhub_ext.storage.volumes import VolumeSetError, parse_mode, parse_volume_set


def one(entry: dict):
    return parse_volume_set({"v": entry})[0]


def test_plain_local_shared_volume_defaults_to_image_user_group_writable_setgid():
    spec = one({"name": "team", "mount": "/srv/team", "scope": "shared"})
    assert spec.permissions() == ("1000", "100", 0o2775)
    assert command(*spec.permissions()) == (
        "chown 1000:100 /jhext-volume && chmod 2775 /jhext-volume"
    )


def test_explicit_owner_group_mode_win():
    spec = one(
        {
            "name": "team",
            "mount": "/srv/team",
            "scope": "shared",
            "owner": 0,
            "group": "users",
            "mode": "0770",
        }
    )
    assert spec.permissions() == ("0", "users", 0o770)


def test_per_user_volume_untouched_unless_asked():
    assert one({"name": "h-{username}", "mount": "/h"}).permissions() is None
    spec = one({"name": "h-{username}", "mount": "/data/h", "mode": 0o700})
    assert spec.permissions() == ("", "", 0o700)
    assert command(*spec.permissions()) == "chmod 700 /jhext-volume"
    assert command("1000", "", -1) == "chown 1000 /jhext-volume"


def test_network_shares_and_binds_are_never_chowned():
    nfs = {
        "name": "nas",
        "mount": "/srv/nas",
        "scope": "shared",
        "driver_opts": {"type": "nfs", "o": "addr=nas", "device": ":/x"},
    }
    assert one(nfs).permissions() is None
    with pytest.raises(VolumeSetError, match=r"volume_set\['v'\].*file server's"):
        one({**nfs, "mode": "2775"})
    with pytest.raises(VolumeSetError, match="apply only to plain local volumes"):
        one({"name": "plug", "mount": "/p", "scope": "shared", "driver": "rexray", "owner": 1})


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"mode": "rwx"}, "octal mode"),
        ({"mode": 0o17777}, "out of range"),
        ({"mode": True}, "a number"),
        ({"owner": "root; rm -rf /"}, "numeric id or a name"),
        ({"group": "-x"}, "numeric id or a name"),
        ({"owner": 1.5}, "numeric id or a name"),
    ],
)
def test_bad_values_are_refused_with_the_entry_named(extra, message):
    with pytest.raises(VolumeSetError, match=rf"volume_set\['v'\].*{message}"):
        one({"name": "team", "mount": "/t", "scope": "shared", **extra})


def test_archive_takes_no_permissions(tmp_path):
    with pytest.raises(VolumeSetError, match="archive is read-only"):
        one({"mount": "/a", "union": [str(tmp_path)], "mode": "755"})


def test_parse_mode_forms():
    assert parse_mode("2775") == parse_mode("02775") == parse_mode("0o2775") == 0o2775
    assert parse_mode(0o755) == 0o755

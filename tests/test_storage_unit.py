"""Plain unit tests: secret placeholders, union archive declarations, start-up checks."""

from __future__ import annotations

import pytest

from jupyterhub_ext.storage import archive, secretopts
from jupyterhub_ext.storage.mixin import check_at_hub_start
from jupyterhub_ext.storage.volumes import VolumeSetError, parse_volume_set

# -- secret placeholders ------------------------------------------------------


def test_env_and_file_placeholders_resolve_and_are_reported_for_redaction(tmp_path, monkeypatch):
    monkeypatch.setenv("JHEXT_UNIT_PW", "s3cr,et")
    secret_file = tmp_path / "user"
    secret_file.write_text("labuser\n")  # the trailing newline is not part of the secret
    opts = {
        "type": "cifs",
        "o": f"username=${{file:{secret_file}}},password=${{env:JHEXT_UNIT_PW}},vers=3.0",
    }
    resolved, secrets = secretopts.resolve(opts)
    assert resolved == {"type": "cifs", "o": "username=labuser,password=s3cr,et,vers=3.0"}
    assert sorted(secrets) == ["labuser", "s3cr,et"]
    # the declaration itself is untouched
    assert "${env:JHEXT_UNIT_PW}" in opts["o"]


def test_redact_masks_every_secret_longest_first():
    text = "mount failed, data: password=abcdef,user=abc"
    out = secretopts.redact(text, ["abc", "abcdef"])
    assert "abc" not in out
    assert out == f"mount failed, data: password={secretopts.MASK},user={secretopts.MASK}"


@pytest.mark.parametrize(
    "value, message",
    [
        ("password=${PW}", "unknown placeholder"),
        ("password=${vault:pw}", "unknown placeholder"),
        ("password=${env:1PW}", "not a valid environment variable"),
        ("password=${file:relative/pw}", "must be absolute"),
        ("password=${env:PW", "not closed"),
    ],
)
def test_malformed_placeholders_are_refused_at_parse(value, message):
    with pytest.raises(VolumeSetError, match=r"volume_set\['nas'\]: driver_opts\['o'\]"):
        parse_volume_set(
            {
                "nas": {
                    "name": "nas",
                    "mount": "/srv/nas",
                    "scope": "shared",
                    "driver_opts": {"o": value},
                }
            }
        )
    with pytest.raises(secretopts.SecretError, match=message):
        secretopts.references(value)


def test_unresolvable_secret_names_the_source_never_a_value(tmp_path, monkeypatch):
    monkeypatch.delenv("JHEXT_UNIT_MISSING", raising=False)
    specs = parse_volume_set(
        {
            "nas": {
                "name": "nas",
                "mount": "/srv/nas",
                "scope": "shared",
                "driver_opts": {"o": "password=${env:JHEXT_UNIT_MISSING}"},
            }
        }
    )
    with pytest.raises(VolumeSetError, match="environment variable JHEXT_UNIT_MISSING is not set"):
        check_at_hub_start(specs)
    specs = parse_volume_set(
        {
            "nas": {
                "name": "nas",
                "mount": "/srv/nas",
                "scope": "shared",
                "driver_opts": {"o": f"password=${{file:{tmp_path}/nope}}"},
            }
        }
    )
    with pytest.raises(VolumeSetError, match="cannot read secret file .*/nope"):
        check_at_hub_start(specs)


def test_public_view_of_a_share_has_no_driver_options(monkeypatch):
    (spec,) = parse_volume_set(
        {
            "nas": {
                "name": "nas",
                "mount": "/srv/nas",
                "scope": "shared",
                "driver_opts": {"type": "cifs", "o": "password=${env:PW}"},
            }
        }
    )
    public = spec.public()
    assert "driver_opts" not in public and "driver" not in public
    assert public["resettable"] is False and public["scope"] == "shared"


# -- union archive ----------------------------------------------------------------


def test_union_makes_a_read_only_never_resettable_overlay_first_directory_on_top(tmp_path):
    (spec,) = parse_volume_set(
        {"arch": {"mount": "/srv/archive", "union": ["/data/new/", "/data/old"]}}
    )
    assert spec.scope == "archive" and spec.is_archive and not spec.per_user
    assert spec.read_only and not spec.resettable
    assert spec.union == ("/data/new", "/data/old")
    # overlayfs: the first lowerdir is the top layer
    assert spec.driver_opts == {
        "type": "overlay",
        "device": "overlay",
        "o": "lowerdir=/data/new:/data/old",
    }
    assert spec.public()["resettable"] is False
    name = spec.render_name({"username": "alice", "servername": ""})
    assert name.startswith("jupyterhub-archive-arch-")
    # a different list (or order) is a different volume: Docker keeps old options
    (other,) = parse_volume_set(
        {"arch": {"mount": "/srv/archive", "union": ["/data/old", "/data/new"]}}
    )
    assert other.render_name({}) != name
    # the same for every user
    assert spec.render_name({"username": "bob", "servername": "x"}) == name


def test_single_directory_union_is_a_bind_volume():
    (spec,) = parse_volume_set({"arch": {"mount": "/srv/archive", "union": ["/data/only"]}})
    assert spec.driver_opts == {"type": "none", "o": "bind", "device": "/data/only"}
    assert spec.read_only


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"mount": "/a", "union": ["/x"], "resettable": True}, "never resettable"),
        ({"mount": "/a", "union": ["/x"], "read_only": False}, "always read-only"),
        ({"mount": "/a", "union": ["/x"], "driver_opts": {"o": "x"}}, "set by the union"),
        ({"mount": "/a", "union": ["/x"], "scope": "shared"}, "'union' makes an archive"),
        ({"mount": "/a", "scope": "archive"}, "needs 'union'"),
        ({"mount": "/a", "union": []}, "at least one directory"),
        ({"mount": "/a", "union": "/x"}, "must be a list"),
        ({"mount": "/a", "union": ["x/rel"]}, "absolute path"),
        ({"mount": "/a", "union": ["/x", "/x/"]}, "listed twice"),
        ({"mount": "/a", "union": ["/x:y", "/z"]}, "contains ':'"),
        ({"mount": "/a", "union": ["/x,y", "/z"]}, "contains ','"),
        ({"mount": "/a", "union": ["/x", "/y"], "name": "a-{username}"}, "must not depend"),
        ({"mount": "/a", "union": ["/" + "d" * 300 + str(i) for i in range(20)]}, "characters"),
    ],
)
def test_bad_union_entries_are_refused_with_the_entry_named(entry, message):
    with pytest.raises(VolumeSetError, match=r"volume_set\['arch'\]") as err:
        parse_volume_set({"arch": entry})
    assert message in str(err.value)


def test_missing_union_directory_is_named_at_hub_start(tmp_path):
    (tmp_path / "new").mkdir()
    specs = parse_volume_set(
        {
            "arch": {
                "mount": "/srv/archive",
                "union": [str(tmp_path / "new"), str(tmp_path / "gone")],
            }
        }
    )
    with pytest.raises(VolumeSetError) as err:
        check_at_hub_start(specs)
    assert "volume_set['arch']" in str(err.value)
    assert repr(str(tmp_path / "gone")) in str(err.value)
    assert str(tmp_path / "new") + "'" not in str(err.value)
    (tmp_path / "gone").mkdir()
    check_at_hub_start(specs)


def test_per_server_volumes_are_told_apart():
    home, scratch, share = parse_volume_set(
        {
            "home": {"name": "h-{username}", "mount": "/home/jovyan"},
            "scratch": {"name": "s-{username}-{servername}", "mount": "/scratch"},
            "share": {"name": "sh-{servername}", "mount": "/share", "scope": "shared"},
        }
    )
    assert not home.per_server and scratch.per_server
    assert not share.per_server  # shared volumes are never removed on delete


def test_digest_is_stable():
    assert archive.digest({"a": "1", "b": "2"}) == archive.digest({"b": "2", "a": "1"})
    assert archive.digest({"a": "1"}) != archive.digest({"a": "2"})

"""Plain unit tests of volume-set parsing, naming and labels."""

import pytest

from jupyterhub_ext.engine.labels import LABEL_OWNER_ID, LABEL_OWNER_NAME
from jupyterhub_ext.storage.volumes import VolumeSetError, parse_volume_set, volume_labels

GOOD = {
    "home": {"name": "jh-{username}-home", "mount": "/home/jovyan", "description": "Home"},
    "cache": {"name": "jh-{username}-{servername}-cache", "mount": "/home/jovyan/.cache"},
    "data": {"name": "jh-shared-data", "mount": "/srv/data", "scope": "shared", "read_only": True},
}


def test_good_set_parses_in_order_with_defaults():
    specs = parse_volume_set(GOOD)
    assert [s.key for s in specs] == ["home", "cache", "data"]
    home, cache, data = specs
    assert home.resettable and cache.resettable
    assert not data.resettable and data.read_only and not data.per_user
    assert home.render_name({"username": "john-2edoe", "servername": ""}) == "jh-john-2edoe-home"


def test_list_form_with_duplicate_key_names_the_entry():
    with pytest.raises(VolumeSetError, match=r"volume_set\['home'\].*used twice"):
        parse_volume_set(
            [
                {"key": "home", "name": "a-{username}", "mount": "/a"},
                {"key": "home", "name": "b-{username}", "mount": "/b"},
            ]
        )


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"name": "jh-home", "mount": "/home/jovyan"}, "must contain {username}"),
        ({"name": "jh-{username}", "mount": "relative"}, "absolute path"),
        ({"name": "jh-{username}", "mount": "/x", "colour": 1}, "unknown field"),
        ({"name": "jh-{user}", "mount": "/x"}, "unknown field"),
        ({"name": "jh-{raw_username}", "mount": "/x"}, "escaped"),
        ({"mount": "/x"}, "'name' is required"),
        ({"name": "jh-{username}", "mount": "/x", "scope": "global"}, "scope must be"),
        ({"name": "jh /{username}", "mount": "/x"}, "valid Docker volume name"),
        ({"name": "jh-{username}", "mount": "/x", "resettable": "yes"}, "true or false"),
    ],
)
def test_bad_entry_is_refused_with_its_key(entry, message):
    with pytest.raises(VolumeSetError) as err:
        parse_volume_set({"bad": entry})
    assert "volume_set['bad']" in str(err.value)
    assert message in str(err.value)


def test_two_volumes_on_one_mount_path():
    with pytest.raises(
        VolumeSetError, match=r"volume_set\['b'\].*already used by volume_set\['a'\]"
    ):
        parse_volume_set(
            {
                "a": {"name": "a-{username}", "mount": "/home/jovyan"},
                "b": {"name": "b-{username}", "mount": "/home/jovyan/"},
            }
        )


def test_shared_volume_cannot_depend_on_user_or_be_resettable():
    with pytest.raises(VolumeSetError, match="must not depend on the user"):
        parse_volume_set({"s": {"name": "s-{username}", "mount": "/s", "scope": "shared"}})
    with pytest.raises(VolumeSetError, match="cannot be resettable"):
        parse_volume_set(
            {"s": {"name": "shared-s", "mount": "/s", "scope": "shared", "resettable": True}}
        )


def test_labels_name_owner_key_and_description():
    home = parse_volume_set(GOOD)[0]
    labels = volume_labels(home, owner_id=7, owner_name="john.doe")
    assert labels[LABEL_OWNER_ID] == "7"
    assert labels[LABEL_OWNER_NAME] == "john.doe"
    assert labels["jupyterhub-ext.volume-key"] == "home"
    assert labels["jupyterhub-ext.description"] == "Home"
    shared = volume_labels(parse_volume_set(GOOD)[2], owner_id=7, owner_name="john.doe")
    assert LABEL_OWNER_ID not in shared

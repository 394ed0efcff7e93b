"""Unit tests of host-config merging: no admin setting is silently dropped."""

from docker.types import DeviceRequest, Mount

from jupyterhub_ext.spawner.hostconfig import merge_fragments, normalize_binds


def test_lists_concatenate_and_dicts_merge():
    ours = {
        "device_requests": [DeviceRequest(count=-1, capabilities=[["gpu"]])],
        "privileged": False,
    }
    admin = {
        "device_requests": [DeviceRequest(device_ids=["3"], capabilities=[["gpu"]])],
        "log_config": {"type": "json-file", "config": {"max-size": "10m"}},
    }
    merged = merge_fragments({"log_config": {"config": {"max-file": "3"}}}, ours, admin)
    assert len(merged["device_requests"]) == 2
    assert merged["log_config"] == {
        "type": "json-file",
        "config": {"max-file": "3", "max-size": "10m"},
    }
    assert merged["privileged"] is False


def test_mounts_from_two_sources_are_kept_once():
    home = Mount(target="/home/jovyan", source="v-home", type="volume")
    extra = Mount(target="/srv/x", source="/x", type="bind")
    merged = merge_fragments({"mounts": [home]}, {"mounts": [home, extra]})
    assert merged["mounts"] == [home, extra]


def test_binds_dict_and_list_forms_normalize():
    binds = normalize_binds({"/data": {"bind": "/srv/data", "mode": "ro"}, "vol": "/mnt"})
    assert binds == ["/data:/srv/data:ro", "vol:/mnt:rw"]
    assert normalize_binds(["/a:/b:ro"]) == ["/a:/b:ro"]
    assert normalize_binds(None) == []


def test_anonymous_volumes_are_told_from_named_ones():
    from jupyterhub_ext.spawner.hostconfig import anonymous_volumes

    anon = "a" * 60 + "0f12"
    mounts = [
        {"Type": "volume", "Name": anon},
        {"Type": "volume", "Name": "jupyterhub-user-alice"},
        {"Type": "bind", "Source": "/data"},
        {"Type": "volume", "Name": "x" * 64},
    ]
    assert anonymous_volumes(mounts) == [anon]
    assert anonymous_volumes(None) == []

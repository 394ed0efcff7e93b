"""Pure profile logic on plain dicts: validation, choosing, GPU picking, admission."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jupyterhub_ext.engine.labels import LABEL_GPU_DEVICES
from jupyterhub_ext.profiles import rules as P

RAW = [
    {"slug": "small", "display_name": "Small", "cpu_limit": 1, "mem_limit": "2G", "default": True},
    {"slug": "large", "display_name": "Large", "cpu_limit": 4, "mem_limit": "16G"},
    {"slug": "gpu", "display_name": "1 GPU", "gpus": 1, "groups": ["gpu"]},
]


def test_parse_valid_profiles_and_units():
    ps = P.parse_profiles(RAW)
    assert [p.slug for p in ps] == ["small", "large", "gpu"]
    assert ps[0].mem_limit == 2 * 1024**3
    assert ps[1].cpu_limit == 4.0
    assert ps[2].needs_gpu and not ps[0].needs_gpu
    assert ps[0].resources() == ["1 CPU", "2 GiB memory"]
    assert P.parse_mem("1.5GiB") == int(1.5 * 1024**3)
    assert P.parse_mem(512) == 512


@pytest.mark.parametrize(
    "raw, words",
    [
        ([{"slug": "a", "imagee": "x"}], ["profiles[0] ('a')", "'imagee'", "known keys"]),
        ([{"slug": "a", "default": True}, {"slug": "b", "default": True}], ["two", "'a'", "'b'"]),
        ([{"slug": "a", "gpus": -1}], ["profiles[0] ('a')", "gpus"]),
        ([{"slug": "a", "gpus": "two"}], ["gpus", "'two'"]),
        ([{"slug": "a", "gpus": True}], ["gpus"]),
        ([{"slug": "a", "mem_limit": "4 gallons"}], ["mem_limit", "'4 gallons'", "K, M, G"]),
        ([{"slug": "a", "mem_limit": "1G", "mem_guarantee": "2G"}], ["more than mem_limit"]),
        ([{"slug": "a"}, {"slug": "a"}], ["profiles[1]", "already used by profiles[0]"]),
        ([{"slug": "Big Box"}], ["slug", "'Big Box'"]),
        ([{"slug": "a", "groups": "gpu"}], ["groups", "list"]),
        ([{"slug": "a", "environment": {"X": 1}}], ["environment"]),
        ([{"slug": "a", "cpu_limit": 0}], ["cpu_limit"]),
        (["small"], ["profiles[0] must be a dict"]),
    ],
)
def test_invalid_profiles_name_the_entry(raw, words):
    with pytest.raises(P.ProfileError) as e:
        P.parse_profiles(raw)
    for w in words:
        assert w in str(e.value)


def test_choose_default_forbidden_unknown():
    ps = P.parse_profiles(RAW)
    assert P.choose(ps, set(), None).slug == "small"
    assert P.choose(ps, {"gpu"}, "gpu").slug == "gpu"
    with pytest.raises(P.ProfileChoiceError) as e:
        P.choose(ps, {"other"}, "gpu")
    assert e.value.status == 403 and "gpu" in e.value.message
    with pytest.raises(P.ProfileChoiceError) as e:
        P.choose(ps, set(), "huge")
    assert e.value.status == 400
    assert "small, large" in e.value.message and "gpu" not in e.value.message.split("Valid")[1]
    with pytest.raises(P.ProfileChoiceError) as e:
        P.choose(ps, set(), {"slug": "small"})
    assert e.value.status == 400


def test_default_falls_back_to_first_allowed_and_none_allowed():
    ps = P.parse_profiles(
        [
            {"slug": "staff", "groups": ["staff"], "default": True},
            {"slug": "student", "groups": ["students"]},
        ]
    )
    assert P.default_for(ps, {"students"}).slug == "student"
    assert P.default_for(ps, {"staff", "students"}).slug == "staff"
    with pytest.raises(P.ProfileChoiceError) as e:
        P.choose(ps, set(), None)
    assert e.value.status == 403


def test_pick_devices_least_loaded_and_exclusive():
    devs = ["0", "1", "2", "3"]
    assert P.pick_devices(devs, {}, 1) == ["0"]
    assert P.pick_devices(devs, {"0": 1}, 2) == ["1", "2"]
    assert P.pick_devices(devs, {"0": 1, "1": 1, "2": 1, "3": 1}, 1) is None
    assert P.pick_devices(devs, {"0": 1, "1": 1}, 1, per_device=2) == ["2"]
    assert P.pick_devices(devs, {"0": 2, "1": 1, "2": 2, "3": 2}, 1, per_device=2) == ["1"]
    assert P.pick_devices(devs, {}, "all") == devs
    assert P.pick_devices(devs, {"3": 1}, "all") is None
    assert P.pick_devices(devs, {}, 0) == []


def test_device_load_reads_labels():
    load = P.device_load(
        [{LABEL_GPU_DEVICES: "0,2"}, {LABEL_GPU_DEVICES: "2"}, {}, None, {"other": "x"}]
    )
    assert load == {"0": 1, "2": 2}


@given(
    n_dev=st.integers(1, 6),
    per=st.integers(1, 3),
    wants=st.lists(st.integers(1, 3), max_size=12),
)
def test_sequential_picks_never_exceed_capacity(n_dev, per, wants):
    devs = [f"GPU-{i}" for i in range(n_dev)]
    held: list[list[str]] = []
    for w in wants:
        got = P.pick_devices(
            devs, P.device_load({LABEL_GPU_DEVICES: ",".join(h)} for h in held), w, per
        )
        if got is not None:
            assert len(got) == w == len(set(got))
            held.append(got)
    load = P.device_load({LABEL_GPU_DEVICES: ",".join(h)} for h in held)
    assert all(v <= per for v in load.values())


def test_no_gpu_message_offers_cpu_profiles():
    ps = P.parse_profiles(RAW)
    msg = P.no_gpu_message(1, ["0", "1"], {"0": 1, "1": 1}, 1, [p for p in ps if not p.needs_gpu])
    assert "No free GPU" in msg and "2 of the 2 GPUs" in msg
    assert "Small (small)" in msg and "Large (large)" in msg


def test_admission_numbers():
    G = 1024**3
    assert P.admission_refusal(16 * G, 2 * G, [4 * G, 4 * G], 6 * G) is None
    msg = P.admission_refusal(16 * G, 2 * G, [4 * G, 4 * G], 7 * G)
    assert msg and "7 GiB" in msg and "8 GiB" in msg and "16 GiB" in msg and "2 GiB" in msg


def test_check_gpu_profiles_refuses_more_than_exist():
    ps = P.parse_profiles([{"slug": "eight", "gpus": 8}])
    with pytest.raises(P.ProfileError, match="8 GPUs"):
        P.check_gpu_profiles(ps, ["0", "1"])
    P.check_gpu_profiles(ps, [])  # unknown device list: not checked

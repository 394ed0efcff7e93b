"""Pure parts of self-service: request validation, audit lines, the size cache's timing."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from jupyterhub_ext import audit as audit_mod
from jupyterhub_ext.storage.volume_ops import ResetRequestError, SizeCache, parse_reset_request
from jupyterhub_ext.storage.volumes import parse_volume_set

SPECS = parse_volume_set(
    {
        "home": {"name": "u-{username}-home", "mount": "/home/jovyan"},
        "cache": {"name": "u-{username}-cache", "mount": "/cache"},
        "work": {"name": "u-{username}-work", "mount": "/work", "resettable": False},
        "data": {"name": "shared-data", "mount": "/data", "scope": "shared"},
    }
)


def test_reset_request_returns_keys_in_set_order_without_duplicates():
    assert parse_reset_request({"volumes": ["cache", "home", "cache"]}, SPECS) == [
        "home",
        "cache",
    ]


@pytest.mark.parametrize(
    "body, message",
    [
        (None, "must be a JSON object"),
        ([], "must be a JSON object"),
        ("home", "must be a JSON object"),
        ({}, "non-empty list"),
        ({"volumes": []}, "non-empty list"),
        ({"volumes": "home"}, "non-empty list"),
        ({"volumes": {"home": True}}, "non-empty list"),
        ({"volumes": ["home", None]}, "strings"),
        ({"volumes": ["home"], "all": True}, "unknown field(s) ['all']"),
        ({"volumes": ["u-alice-home"]}, "no volume with key 'u-alice-home'"),
        ({"volumes": ["data"]}, "shared volumes are never reset"),
        ({"volumes": ["work"]}, "it is protected"),
    ],
)
def test_reset_request_refusals_say_what_is_wrong(body, message):
    with pytest.raises(ResetRequestError) as err:
        parse_reset_request(body, SPECS)
    assert message in str(err.value)
    if "key" in message or "never" in message or "protected" in message:
        # the message lists what may be reset, so a person can fix the request
        assert "resettable volumes: home, cache" in str(err.value)


def test_audit_line_format_and_logger(caplog):
    with caplog.at_level(logging.INFO, logger="jupyterhub_ext.audit"):
        audit_mod.log.propagate = True  # let caplog see it
        audit_mod.audit(
            "alice", "reset-volumes", "alice/lab", "ok", volumes={"home": "reset"}, note="a b"
        )
        audit_mod.audit("admin", "restart-server", "bob", "refused", status=409)
    first, second = caplog.records[-2:]
    assert first.name == "jupyterhub_ext.audit"
    # values are JSON: a user-chosen name cannot forge another field
    assert first.getMessage() == (
        'AUDIT actor="alice" action="reset-volumes" target="alice/lab" result="ok" '
        'note="a b" volumes={"home": "reset"}'
    )
    assert second.getMessage() == (
        'AUDIT actor="admin" action="restart-server" target="bob" result="refused" status=409'
    )


class SlowDf:
    """Stands in for a Docker client whose `system df` is slow (a busy engine)."""

    base_url = "slow"

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls = 0
        self.release = threading.Event()

    def df(self):
        self.calls += 1
        self.release.wait(self.delay)
        return {"Volumes": [{"Name": "v1", "UsageData": {"Size": 42}}, {"Name": "v2"}]}


async def test_size_cache_never_waits_longer_than_asked():
    client = SlowDf(delay=5)
    cache = SizeCache(max_age=60)
    tic = time.monotonic()
    assert await cache.sizes(client, pool_size=2, wait=0.2) == {}  # unknown for now
    assert time.monotonic() - tic < 1.0
    # a second listing meanwhile does not start another df
    assert await cache.sizes(client, pool_size=2, wait=0.1) == {}
    assert client.calls == 1
    client.release.set()
    await asyncio.sleep(0.2)
    assert await cache.sizes(client, pool_size=2, wait=0.1) == {"v1": 42}  # no size: not listed
    assert client.calls == 1  # fresh: reused
    cache.forget(["v1"])
    assert await cache.sizes(client, pool_size=2, wait=0.1) == {}

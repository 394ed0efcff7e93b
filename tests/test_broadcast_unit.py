"""Broadcast request checks, settings and hub wiring (pure code)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from traitlets import TraitError
from traitlets.config import Config

import jupyterhub_ext
from jupyterhub_ext.notifications.broadcast import (
    MAX_AUTO_CLOSE_MS,
    SERVICE_ROLE,
    VARIANTS,
    BroadcastError,
    NotificationsConfig,
    Recipient,
    parse_broadcast,
    token_scopes,
)

ROOT = Path(__file__).resolve().parent.parent


def parse(body, max_length=140):
    return parse_broadcast(body, max_length=max_length)


def test_defaults_match_the_issue():
    cfg = NotificationsConfig()
    assert cfg.max_length == 140
    assert VARIANTS == ("default", "info", "success", "warning", "error", "in-progress")
    assert cfg.concurrency >= 1 and cfg.timeout > 0


def test_valid_request_and_payload():
    req = parse({"message": "  Maintenance at 18:00  ", "variant": "warning", "autoClose": False})
    assert req.message == "Maintenance at 18:00"
    assert req.variant == "warning"
    assert req.recipients is None
    payload = req.payload("admin")
    assert payload["message"] == "Maintenance at 18:00"
    assert payload["type"] == "warning"
    assert payload["autoClose"] is False
    assert payload["immediate"] is True


def test_defaults_for_type_and_auto_close():
    req = parse({"message": "hi"})
    assert (req.variant, req.auto_close) == ("info", 5000)
    # the extension's own field name is accepted too
    assert parse({"message": "hi", "type": "error"}).variant == "error"


def test_length_limit_counts_characters_not_bytes():
    assert parse({"message": "é" * 140}).message == "é" * 140
    with pytest.raises(BroadcastError, match="141 characters; the limit is 140"):
        parse({"message": "x" * 141})
    with pytest.raises(BroadcastError, match="limit is 10"):
        parse({"message": "x" * 11}, max_length=10)


@pytest.mark.parametrize(
    "body, error",
    [
        (None, "JSON object"),
        ([], "JSON object"),
        ({}, "'message' must be a string"),
        ({"message": 5}, "'message' must be a string"),
        ({"message": ""}, "empty"),
        ({"message": " \n\t "}, "empty"),
        ({"message": "hi", "variant": "urgent"}, "Unknown type 'urgent'"),
        ({"message": "hi", "autoClose": 0}, "autoClose"),
        ({"message": "hi", "autoClose": -5}, "autoClose"),
        ({"message": "hi", "autoClose": True}, "autoClose"),
        ({"message": "hi", "autoClose": "5000"}, "autoClose"),
        ({"message": "hi", "autoClose": MAX_AUTO_CLOSE_MS + 1}, "autoClose"),
        ({"message": "hi", "recipients": []}, "empty; omit it"),
        ({"message": "hi", "recipients": "alice"}, "must be a list"),
        ({"message": "hi", "recipients": [42]}, r"recipients\[0\]"),
        ({"message": "hi", "recipients": [""]}, "user name is missing"),
        ({"message": "hi", "recipients": [{"server": "x"}]}, "user name is missing"),
        ({"message": "hi", "recipients": [{"username": "a", "srv": "x"}]}, "unknown field"),
        ({"message": "hi", "recipients": ["a/b/c"]}, "without '/'"),
        ({"message": "hi", "colour": "red"}, "Unknown field"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(body, error):
    with pytest.raises(BroadcastError, match=error):
        parse(body)


def test_recipients_forms_and_duplicates():
    req = parse(
        {
            "message": "hi",
            "recipients": [
                "alice",
                "bob/gpu",
                {"username": "carol"},
                {"username": "bob", "server": "gpu"},
                "alice",
            ],
        }
    )
    assert req.recipients == (
        Recipient("alice", ""),
        Recipient("bob", "gpu"),
        Recipient("carol", ""),
    )
    assert [r.label for r in req.recipients] == ["alice", "bob/gpu", "carol"]


def test_token_lifetime_covers_the_slowest_fanout():
    cfg = NotificationsConfig(concurrency=10, timeout=5)
    assert cfg.token_lifetime(1) >= 5
    assert cfg.token_lifetime(200) >= 20 * 5  # 20 rounds of at most 5 s
    assert cfg.token_lifetime(200) < 20 * 5 + 120


def test_broadcast_token_reaches_only_the_targeted_servers():
    assert token_scopes([("alice", ""), ("bob", "gpu"), ("alice", "")]) == [
        "access:servers!server=alice/",
        "access:servers!server=bob/gpu",
    ]


def test_bad_settings_are_refused():
    with pytest.raises(TraitError):
        NotificationsConfig(max_length=0)
    with pytest.raises(TraitError):
        NotificationsConfig(concurrency=0)


def test_setup_registers_service_with_access_servers_only():
    c = Config()
    c.NotificationsConfig.service_name = "notifier-x"
    jupyterhub_ext.setup(c)
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert "api_token" not in services["notifier-x"]  # no permanent credential
    role = next(r for r in c.JupyterHub.load_roles if r["name"] == SERVICE_ROLE)
    assert role["services"] == ["notifier-x"]
    assert set(role["scopes"]) == {"access:servers", "read:services:name!service=notifier-x"}
    routes = {h[0] for h in c.JupyterHub.extra_handlers}
    assert {
        "/notifications",
        "/api/notifications/active-servers",
        "/api/notifications/broadcast",
        "/api/notifications/history",
    } <= routes


def test_setup_keeps_existing_services_and_is_idempotent():
    c = Config()
    c.JupyterHub.services = [{"name": "other", "api_token": "x" * 32}]
    jupyterhub_ext.setup(c)
    jupyterhub_ext.setup(c)
    names = [s["name"] for s in c.JupyterHub.services]
    assert names == ["other", "jupyterhub-ext-notifier"]
    assert [r["name"] for r in c.JupyterHub.load_roles].count(SERVICE_ROLE) == 1


def test_setup_stops_on_bad_notification_settings():
    c = Config()
    c.NotificationsConfig.max_length = -1
    with pytest.raises(TraitError):
        jupyterhub_ext.setup(c)


def test_cli_entry_point_is_declared():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    target = meta["project"]["scripts"]["jupyterhub-ext-notify"]
    module, _, func = target.partition(":")
    mod = __import__(module, fromlist=[func])
    assert callable(getattr(mod, func))


def test_example_config_sets_up_notifications(tmp_path, monkeypatch):
    from jupyterhub.app import JupyterHub

    monkeypatch.chdir(tmp_path)
    # the example config has no built-in admin name: it reads this
    monkeypatch.setenv("JUPYTERHUB_ADMIN_USERS", "jdoe")
    app = JupyterHub()
    app.load_config_file(str(ROOT / "jupyterhub_config.example.py"))
    cfg = NotificationsConfig(config=app.config)
    assert (cfg.max_length, cfg.concurrency, cfg.timeout) == (140, 20, 10)
    assert cfg.history_path.endswith(".jsonl")
    assert "jupyterhub-ext-notifier" in [s["name"] for s in app.services]
    assert "custom:jupyterhub-ext:broadcast" in app.custom_scopes


def test_recipient_list_is_bounded():
    names = [f"u{i}" for i in range(5)]
    assert (
        len(
            parse_broadcast(
                {"message": "hi", "recipients": names}, max_length=140, max_recipients=5
            ).recipients
        )
        == 5
    )
    with pytest.raises(BroadcastError) as e:
        parse_broadcast(
            {"message": "hi", "recipients": [*names, "u5"]}, max_length=140, max_recipients=5
        )
    assert "6 entries; the limit is 5" in str(e.value)
    assert "c.NotificationsConfig.max_recipients" in str(e.value)
    assert NotificationsConfig().max_recipients >= 200  # the benchmark's size fits by default
    with pytest.raises(TraitError):
        NotificationsConfig(max_recipients=0)

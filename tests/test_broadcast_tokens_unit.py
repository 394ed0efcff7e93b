"""Per-target delivery tokens in a real JupyterHub database (sqlite, JupyterHub's own ORM)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from jupyterhub import orm
from jupyterhub.scopes import get_scopes_for

from jupyterhub_ext.notifications import tokens as broadcast_tokens
from jupyterhub_ext.notifications.broadcast import SERVICE_ROLE
from jupyterhub_ext.notifications.fanout import Target

SERVICE = "jupyterhub-ext-notifier"


@pytest.fixture
def db():
    session = orm.new_session_factory("sqlite:///:memory:")()
    session.add(orm.OAuthClient(identifier=broadcast_tokens.HUB_CLIENT))
    for name in ("alice", "bob"):
        session.add(orm.User(name=name))
    session.commit()
    yield session
    session.close()


def make_service(db, scopes: list[str]) -> orm.Service:
    service = orm.Service(name=SERVICE)
    db.add(service)
    role = orm.Role(name=SERVICE_ROLE, scopes=scopes)
    db.add(role)
    service.roles.append(role)
    db.commit()
    return service


TARGETS = [
    Target("alice", "", "http://127.0.0.1:1/user/alice/"),
    Target("alice", "gpu", "http://127.0.0.1:2/user/alice/gpu/"),
    Target("bob", "", "http://127.0.0.1:3/user/bob/"),
]


def test_one_token_per_target_reaching_only_that_server(db):
    service = make_service(db, ["access:servers"])
    minted = broadcast_tokens.mint(db, service, TARGETS, expires_in=60)
    secrets = [minted(t) for t in TARGETS]
    assert len(set(secrets)) == len(TARGETS)
    for target, secret in zip(TARGETS, secrets, strict=True):
        row = orm.APIToken.find(db, secret, kind="service")
        assert row is not None and row.service.name == SERVICE
        assert row.scopes == [f"access:servers!server={target.username}/{target.server}"]
        # what the hub will grant when the token is used: that server, nothing else
        granted = get_scopes_for(row)
        assert {s for s in granted if s.startswith("access:")} == set(row.scopes)
        assert row.expires_at - orm.APIToken.now() <= timedelta(seconds=60)
    assert sorted(r.id for r in service.api_tokens) == sorted(minted.ids)


def test_revoke_deletes_every_minted_token(db):
    service = make_service(db, ["access:servers"])
    other = service.new_api_token(scopes=["access:servers!server=bob/"], note="someone else's")
    minted = broadcast_tokens.mint(db, service, TARGETS, expires_in=60)
    assert db.query(orm.APIToken).count() == 4
    assert broadcast_tokens.revoke(db, service, minted.ids) == 3
    for t in TARGETS:
        assert orm.APIToken.find(db, minted(t)) is None
    assert [r.id for r in service.api_tokens] == [orm.APIToken.find(db, other).id]
    assert broadcast_tokens.revoke(db, service, minted.ids) == 0


def test_expired_tokens_are_purged_and_live_ones_kept(db):
    service = make_service(db, ["access:servers"])
    old = broadcast_tokens.mint(db, service, TARGETS[:1], expires_in=60)
    live = broadcast_tokens.mint(db, service, TARGETS[1:], expires_in=60)
    row = db.get(orm.APIToken, old.ids[0])
    row.expires_at = orm.APIToken.now() - timedelta(seconds=1)
    db.commit()
    assert broadcast_tokens.purge_expired(db, service) == 1
    assert sorted(r.id for r in service.api_tokens) == sorted(live.ids)


def test_a_service_without_access_servers_gets_no_token(db):
    service = make_service(db, ["read:users:name"])
    with pytest.raises(ValueError, match="Not assigning requested scopes"):
        broadcast_tokens.mint(db, service, TARGETS, expires_in=60)
    assert db.query(orm.APIToken).count() == 0


def test_no_targets_no_tokens(db):
    service = make_service(db, ["access:servers"])
    assert broadcast_tokens.mint(db, service, [], expires_in=60).ids == []
    assert db.query(orm.APIToken).count() == 0

"""Delivery credentials of a broadcast: one token per target server, in the hub's database.

A single-user server belongs to its user: she can run any code in it and read
every header the hub sends it. So each target gets its own token of the
delivery service, scoped ``access:servers!server=<user>/<server>`` (that
server, nothing else), expiring shortly after the broadcast can have ended,
and deleted as soon as it has. What a recipient captures opens only the
server she already owns.

All tokens of a broadcast are added in one transaction and deleted in one:
``APIToken.new`` commits once per token, which for a few hundred targets
costs more than the fan-out itself. The checks ``APIToken.new`` makes (the
scopes exist, the owner holds them) are made once for the whole set.

Runs on the hub's event loop, like every use of the hub's database session.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from jupyterhub import orm
from jupyterhub.utils import new_token
from sqlalchemy.orm import Session

from jupyterhub_ext import hubcompat
from jupyterhub_ext.notifications.broadcast import server_scope, token_scopes
from jupyterhub_ext.notifications.fanout import Target

NOTE = "jupyterhub-ext broadcast (deleted after delivery)"
# The client every API token not issued through OAuth belongs to (as in APIToken.new).
HUB_CLIENT = "jupyterhub"


@dataclass
class DeliveryTokens:
    """Tokens minted for one broadcast: the secret per target, and the rows to delete."""

    by_target: dict[Target, str] = field(default_factory=dict)
    ids: list[int] = field(default_factory=list)

    def __call__(self, target: Target) -> str | None:
        return self.by_target.get(target)


def mint(
    db: Session,
    service: orm.Service,
    targets: Iterable[Target],
    *,
    expires_in: int,
    note: str = NOTE,
) -> DeliveryTokens:
    """One token per target (same user and server name: one token), all in one commit."""
    targets = list(dict.fromkeys(targets))
    scopes = {t: server_scope(t.username, t.server) for t in targets}
    if not scopes:
        return DeliveryTokens()
    oauth_client = db.query(orm.OAuthClient).filter_by(identifier=HUB_CLIENT).one()
    # The checks APIToken.new makes per token, once for the whole set: every
    # scope exists and the service holds it (its role has access:servers).
    every = set(token_scopes([(t.username, t.server) for t in targets]))
    hubcompat.check_token_scopes(every, owner=service, oauth_client=oauth_client)

    expires_at = orm.APIToken.now() + timedelta(seconds=int(expires_in))
    minted = DeliveryTokens()
    rows = []
    for target, scope in scopes.items():
        secret = new_token()
        row = orm.APIToken(
            generated=True, note=note, client_id=HUB_CLIENT, scopes=[scope], expires_at=expires_at
        )
        row.token = secret  # stores only the hash and a 4-character prefix
        row.service = service
        db.add(row)
        rows.append(row)
        minted.by_target[target] = secret
    try:
        db.commit()
    except Exception:
        db.rollback()
        raise
    minted.ids = [row.id for row in rows]
    return minted


def revoke(db: Session, service: orm.Service, ids: Iterable[int]) -> int:
    """Delete these tokens of ``service`` (one statement, one commit); how many were there."""
    ids = list(ids)
    if not ids:
        return 0
    n = (
        db.query(orm.APIToken)
        .filter(orm.APIToken.service_id == service.id, orm.APIToken.id.in_(ids))
        .delete(synchronize_session="fetch")
    )
    db.commit()
    _forget_tokens(db, service)
    return n


def purge_expired(db: Session, service: orm.Service) -> int:
    """Delete the service's expired tokens (left by a broadcast a hub crash interrupted)."""
    n = (
        db.query(orm.APIToken)
        .filter(orm.APIToken.service_id == service.id)
        .filter(orm.APIToken.expires_at < orm.APIToken.now())
        .delete(synchronize_session="fetch")
    )
    if n:
        db.commit()
        _forget_tokens(db, service)
    return n


def _forget_tokens(db: Session, service: orm.Service) -> None:
    # A bulk delete does not update loaded collections, and the hub's session
    # does not expire on commit: reload the service's token list on next use.
    db.expire(service, ["api_tokens"])


__all__ = ["DeliveryTokens", "mint", "purge_expired", "revoke"]

"""Every use of JupyterHub's and DockerSpawner's private internals, in one place.

Checked against JupyterHub 6.1 (and 5.x) and DockerSpawner 14. Each function
names the private attribute it touches and why no public way exists; on an
upgrade, this file and the tests that exercise it are what to re-read.
(NativeAuthenticator's own repairs are in :mod:`jupyterhub_ext.accounts.nativecompat`.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from jupyterhub.scopes import _check_scopes_exist, _check_token_scopes


def spawn_future(spawner: Any) -> asyncio.Future | None:
    """The future of a spawn in progress (``Spawner._spawn_future``).

    JupyterHub keeps the outcome of a background spawn only there; a restart
    that answers before the spawn ends needs it to audit the final result.
    """
    return spawner._spawn_future


def set_stop_pending(spawner: Any, pending: bool) -> None:
    """Mark a stop we drive ourselves as pending (``Spawner._stop_pending``).

    JupyterHub's own stop handler sets it so the UI and API show "stopping"
    and refuse a start meanwhile; the culler stops servers the same way.
    """
    spawner._stop_pending = pending


def cached_spawner(user: Any, name: str) -> Any:
    """The user's spawner object if one exists, without making one.

    ``user.spawners`` makes a spawner on every lookup of a missing name, so
    the plain dict's ``get`` is the only way to ask without side effects.
    """
    return dict.get(user.spawners, name)


def drop_spawner(user: Any, name: str) -> None:
    """Forget a spawner object (the next lookup makes a fresh one) - after a rename."""
    dict.pop(user.spawners, name, None)


def forget_escaped_name(spawner: Any, current_name: str) -> None:
    """Drop DockerSpawner's cached escaped user name (``_escaped_name``) if it is stale.

    DockerSpawner computes it once per spawner; a user renamed since would
    otherwise get containers and volumes named after the old name.
    """
    cached = spawner._escaped_name
    if cached is not None and cached != spawner.escape(current_name):
        spawner._escaped_name = None


def check_token_scopes(scopes: Iterable[str], *, owner: Any, oauth_client: Any) -> None:
    """The checks ``APIToken.new`` makes for one token, once for a whole set of scopes.

    Broadcast mints one token per target server in a single commit; these
    private helpers are the checks JupyterHub itself runs per token.
    """
    scopes = set(scopes)
    _check_scopes_exist(scopes, who_for="token")
    _check_token_scopes(scopes, owner=owner, oauth_client=oauth_client)

"""Hooks that features register around a server's start and stop, at ``setup(c)``.

The spawner calls them and knows nothing of the features behind them. Renames
use all three: refuse a start while a rename holds the user's name, finish
an interrupted rename with the user's lock held before any volume is
touched, and forget a spawner whose user was renamed while it ran.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

# (spawner) -> None, raising to refuse the start; before the user's lock is taken
before_start: list[Callable[[Any], None]] = []
# (spawner) -> awaitable, with the user's lock held, before volumes are ensured
with_user_lock: list[Callable[[Any], Awaitable[None]]] = []
# (spawner) -> None, once the server has stopped
after_stop: list[Callable[[Any], None]] = []


# spawner state keys that say where a user's data lives: they survive what
# otherwise clears a spawner's state (a rename), see ExtSwarmSpawner
persistent_state: set[str] = set()


def register(
    *,
    before: Callable[[Any], None] | None = None,
    locked: Callable[[Any], Awaitable[None]] | None = None,
    stopped: Callable[[Any], None] | None = None,
) -> None:
    """Add hooks (each at most once, so a second ``setup(c)`` changes nothing)."""
    for hook, where in ((before, before_start), (locked, with_user_lock), (stopped, after_stop)):
        if hook is not None and hook not in where:
            where.append(hook)

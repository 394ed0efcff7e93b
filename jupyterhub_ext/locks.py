"""Per-user locks shared by spawns, volume resets and renames.

A start takes the lock of its user before it touches volumes, and so do the
volume reset and the rename. A start arriving during a reset therefore waits
for the reset to finish: there is no check-then-act gap in which it could see
a half-reset set.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

_locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)


def user_lock(user_id: int) -> asyncio.Lock:
    """The one lock guarding this hub user's volumes and containers."""
    return _locks[user_id]

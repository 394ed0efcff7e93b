"""One audit log line per user-visible action: who did what to whom, and how it went.

Lines go to the ``jupyterhub_ext.audit`` logger (which propagates to the hub's
log); point a handler at it to keep them in a file of their own. Values are
JSON-encoded so text a user typed (a message, a name) cannot forge a line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger("jupyterhub_ext.audit")


def _fmt(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)


def audit(actor: str, action: str, target: str, result: str, **details: Any) -> None:
    """Log ``actor`` doing ``action`` on ``target`` with ``result`` (plus details)."""
    parts = [f"actor={_fmt(actor)}", f"action={_fmt(action)}", f"target={_fmt(target)}"]
    parts.append(f"result={_fmt(result)}")
    parts += [f"{key}={_fmt(value)}" for key, value in sorted(details.items())]
    log.info("AUDIT %s", " ".join(parts))
    for listener in _listeners:
        listener(action, result, details)


# Who else hears of each action (the Prometheus counters subscribe when
# jupyterhub_ext.usage.metrics is imported); audit itself imports nothing of ours.
_listeners: list[Callable[[str, str, Mapping[str, Any]], None]] = []


def subscribe(listener: Callable[[str, str, Mapping[str, Any]], None]) -> None:
    """Call ``listener(action, result, details)`` for every audited action."""
    if listener not in _listeners:
        _listeners.append(listener)

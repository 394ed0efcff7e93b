"""One audit log line per user-visible action: who did what to whom, and how it went.

Lines go to the ``jupyterhub_ext.audit`` logger as ``key=value`` pairs with
JSON-quoted values, so a name or message someone typed cannot forge a field.
Route that logger with standard ``logging`` configuration to keep the lines
elsewhere; by default they appear in the hub's own log.
"""

from __future__ import annotations

import json
import logging
from typing import Any

logger = logging.getLogger("jupyterhub_ext.audit")


def _quote(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)


def _route_to_hub_log() -> None:
    # JupyterHub's logger ("JupyterHub") does not propagate and the root logger
    # has no handler: without this our INFO lines would be dropped.
    if logger.handlers or not logger.propagate or logging.getLogger().handlers:
        return
    hub = logging.getLogger("JupyterHub")
    for handler in hub.handlers:
        logger.addHandler(handler)
    if hub.handlers:
        logger.propagate = False
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def audit(actor: str, action: str, target: str, result: str, **details: Any) -> None:
    """Log ``actor`` doing ``action`` on ``target`` with ``result`` and details."""
    _route_to_hub_log()
    fields: dict[str, Any] = {"actor": actor, "action": action, "target": target}
    fields["result"] = result
    fields.update(sorted(details.items()))
    logger.info("AUDIT %s", " ".join(f"{k}={_quote(v)}" for k, v in fields.items()))

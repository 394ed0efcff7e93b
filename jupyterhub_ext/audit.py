"""One audit line per user-visible action: who, on whom, what, result.

Lines go to the ``jupyterhub_ext.audit`` logger as ``key=value`` pairs (values
JSON-quoted when they are not plain words, so a name cannot forge a field).
Route that logger elsewhere with standard ``logging`` configuration; in a hub
where nobody did, the lines appear in the hub's own log.
"""

from __future__ import annotations

import json
import logging
from typing import Any

logger = logging.getLogger("jupyterhub_ext.audit")

_HUB_LOGGER = "JupyterHub"


def _value(v: Any) -> str:
    if isinstance(v, str) and v and all(c.isalnum() or c in "-_.:/@" for c in v):
        return v
    return json.dumps(v, default=str, sort_keys=True)


def format_line(actor: str, action: str, target: str, result: str, **details: Any) -> str:
    fields = {"actor": actor, "action": action, "target": target, "result": result, **details}
    return " ".join(f"{k}={_value(v)}" for k, v in fields.items())


def _ensure_output() -> None:
    # JupyterHub's logger does not propagate and the root logger has no
    # handler: an INFO line of ours would be dropped without this.
    if logger.handlers or not logger.propagate:
        return
    hub = logging.getLogger(_HUB_LOGGER)
    if hub.handlers and not logging.getLogger().handlers:
        for h in hub.handlers:
            logger.addHandler(h)
        logger.propagate = False
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def audit(actor: str, action: str, target: str, result: str, **details: Any) -> None:
    """Log one audit line (``actor`` did ``action`` on ``target``: ``result``)."""
    _ensure_output()
    logger.info("audit %s", format_line(actor, action, target, result, **details))

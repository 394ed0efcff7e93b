"""One audit line per user-visible action: who, on whom, what, result.

Lines go to the logger ``jupyterhub_ext.audit`` as ``key=value`` pairs, so
they can be grepped and parsed; route that logger elsewhere with standard
``logging`` configuration. Inside a hub with no handler for it, the lines
appear in the hub's own log.
"""

from __future__ import annotations

import json
import logging
from typing import Any

logger = logging.getLogger("jupyterhub_ext.audit")

# JupyterHub's application logger; its handlers print the hub's log.
_HUB_LOGGER = "JupyterHub"


def _value(v: Any) -> str:
    if isinstance(v, str) and v and all(c.isalnum() or c in "-_.:/@" for c in v):
        return v
    return json.dumps(v, default=str, sort_keys=True)


def format_line(actor: str, action: str, target: str, result: str, **details: Any) -> str:
    """``actor=... action=... target=... result=... k=v ...`` (values JSON-quoted if needed)."""
    fields = {"actor": actor, "action": action, "target": target, "result": result, **details}
    return " ".join(f"{k}={_value(v)}" for k, v in fields.items())


def _ensure_output() -> None:
    # JupyterHub does not propagate to the root logger and root has no handler,
    # so without this an INFO line from our logger would be dropped.
    if logger.handlers or logger.propagate is False:
        return
    hub = logging.getLogger(_HUB_LOGGER)
    if hub.handlers and not logging.getLogger().handlers:
        for h in hub.handlers:
            logger.addHandler(h)
        logger.propagate = False
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def audit(actor: str, action: str, target: str, result: str, **details: Any) -> None:
    """Log one audit line.

    ``actor``: who asked (user or service name); ``action``: what (e.g.
    ``restart-server``); ``target``: on whom (user, or ``user/server``);
    ``result``: the outcome (``ok``, ``refused``, ``failed`` ...); ``details``:
    anything else worth keeping (volume keys, error message).
    """
    _ensure_output()
    logger.info("audit %s", format_line(actor, action, target, result, **details))

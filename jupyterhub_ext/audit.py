"""One audit log line per user-visible action: who did what to whom, and how it went.

Lines go to the ``jupyterhub_ext.audit`` logger (which propagates to the hub's
log); point a handler at it to keep them in a file of their own. Values are
JSON-encoded so text a user typed (a message, a name) cannot forge a line.
"""

from __future__ import annotations

import json
import logging
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
    # counted for Prometheus too (imported here: metrics imports much of the package)
    from . import metrics

    metrics.observe_audit(action, result, details)

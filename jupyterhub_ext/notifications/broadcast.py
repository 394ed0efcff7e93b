"""What a broadcast is: its settings, how a request is checked, how the hub is wired.

Pure code (no hub, no network): the handlers in
``jupyterhub_ext.handlers.notifications`` use it, and so do the tests.

Delivery uses a hub-managed service (``NotificationsConfig.service_name``)
whose only permission is ``access:servers``. For each broadcast the hub issues
that service one token per target server, each limited to that one server
(``server_scope``) and expiring shortly after the broadcast can end, sends
each token only to its own server, and deletes them all when the broadcast is
done (:mod:`jupyterhub_ext.notifications.tokens`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from traitlets import Float, Int, Unicode
from traitlets.config import Configurable

from jupyterhub_ext.configutil import configured

VARIANTS = ("default", "info", "success", "warning", "error", "in-progress")
DEFAULT_VARIANT = "info"
DEFAULT_AUTO_CLOSE_MS = 5000  # the extension's own default
MAX_AUTO_CLOSE_MS = 24 * 3600 * 1000
DEFAULT_MAX_RECIPIENTS = 1000
SERVICE_ROLE = "jupyterhub-ext-notifier"


class NotificationsConfig(Configurable):
    """Settings of the notification broadcast (``c.NotificationsConfig.<name>``)."""

    max_length = Int(
        140,
        min=1,
        help="""
        The longest message, in characters (Unicode code points, counted the
        same way by the page's live counter and by the API). Longer messages
        are refused with a 400; nothing is sent.
        """,
    ).tag(config=True)

    max_recipients = Int(
        DEFAULT_MAX_RECIPIENTS,
        min=1,
        help="""
        The most entries a broadcast's ``recipients`` list may have (after
        the hub has checked each one, it mints one delivery token per server).
        A longer list is refused with a 400 and nothing is sent; a broadcast
        without ``recipients`` goes to every running server and is not
        limited by this.
        """,
    ).tag(config=True)

    concurrency = Int(
        20,
        min=1,
        help="""
        How many servers are contacted at the same time. A larger value
        finishes a broadcast to many servers sooner at the cost of more open
        connections from the hub at once.
        """,
    ).tag(config=True)

    timeout = Float(
        10.0,
        min=0.1,
        help="""
        Seconds each server gets to accept the notification (connect and
        answer). A server that does not answer in time is reported as failed;
        it never delays delivery to the others.
        """,
    ).tag(config=True)

    history_path = Unicode(
        "jupyterhub_ext_notifications.jsonl",
        help="""
        File holding the history of recent broadcasts (JSON lines). A relative
        path is relative to the hub's working directory, like the hub's own
        database and cookie secret. Keep it on persistent storage so the
        history survives hub restarts.
        """,
    ).tag(config=True)

    history_size = Int(
        200,
        min=1,
        help="How many recent broadcasts the history keeps (and the page lists).",
    ).tag(config=True)

    service_name = Unicode(
        "jupyterhub-ext-notifier",
        help="""
        Name of the hub-managed service that delivers notifications.
        ``jupyterhub_ext.setup(c)`` registers it with a role holding only
        ``access:servers`` (and reading its own name); it has no permanent
        token: the hub issues it one per broadcast and deletes it after.
        """,
    ).tag(config=True)

    default_auto_close = Int(
        5,
        min=0,
        help="Seconds preselected on the page for auto-close (0 = stay until dismissed).",
    ).tag(config=True)

    def token_lifetime(self, n_targets: int) -> int:
        """Seconds a broadcast token must live: the slowest possible fan-out plus a margin."""
        rounds = max(1, math.ceil(n_targets / self.concurrency))
        return int(math.ceil(rounds * self.timeout)) + 30


def server_scope(user: str, server: str) -> str:
    """The only permission of a delivery token: access to this one server."""
    return f"access:servers!server={user}/{server}"


def token_scopes(servers: list[tuple[str, str]]) -> list[str]:
    """The scopes a broadcast's tokens carry, one per distinct server.

    Each goes into a token of its own, sent only to that server: a token never
    carries two of them (see :mod:`jupyterhub_ext.notifications.tokens`).
    """
    return sorted({server_scope(user, name) for user, name in servers})


class BroadcastError(ValueError):
    """A request that cannot be sent as given; the message says what to change."""


@dataclass(frozen=True)
class Recipient:
    username: str
    server: str = ""

    @property
    def label(self) -> str:
        return f"{self.username}/{self.server}" if self.server else self.username


@dataclass(frozen=True)
class BroadcastRequest:
    message: str
    variant: str
    auto_close: int | bool  # milliseconds, or False: stays until dismissed
    recipients: tuple[Recipient, ...] | None  # None: every running server

    def payload(self, sender: str) -> dict[str, Any]:
        """The body for the extension's ingest endpoint."""
        return {
            "message": self.message,
            "type": self.variant,
            "autoClose": self.auto_close,
            "immediate": True,  # pushed at once to open lab tabs
            "actions": [],
            "data": {"source": "jupyterhub-ext", "sender": sender},
        }


def _recipient(raw: Any, index: int) -> Recipient:
    where = f"recipients[{index}]"
    if isinstance(raw, str):
        name, _, server = raw.partition("/")
    elif isinstance(raw, dict):
        unknown = set(raw) - {"username", "server"}
        if unknown:
            raise BroadcastError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        name, server = raw.get("username"), raw.get("server", "")
        if server is None:
            server = ""
    else:
        raise BroadcastError(
            f'{where} must be "user", "user/server" or {{"username": ..., "server": ...}}'
        )
    if not isinstance(name, str) or not name.strip():
        raise BroadcastError(f"{where}: the user name is missing")
    if not isinstance(server, str) or "/" in server:
        raise BroadcastError(f"{where}: the server name must be a string without '/'")
    return Recipient(name.strip(), server.strip())


def parse_broadcast(
    body: Any, *, max_length: int, max_recipients: int = DEFAULT_MAX_RECIPIENTS
) -> BroadcastRequest:
    """Check a broadcast request body; raise BroadcastError with a fixable message."""
    if not isinstance(body, dict):
        raise BroadcastError("The body must be a JSON object with a 'message'.")
    unknown = set(body) - {"message", "variant", "type", "autoClose", "recipients"}
    if unknown:
        raise BroadcastError(f"Unknown field(s): {', '.join(sorted(unknown))}")

    message = body.get("message")
    if not isinstance(message, str):
        raise BroadcastError("'message' must be a string.")
    message = message.strip()
    if not message:
        raise BroadcastError("The message is empty.")
    if len(message) > max_length:
        raise BroadcastError(
            f"The message has {len(message)} characters; the limit is {max_length}."
        )

    # "type" is the extension's name for it; accept either, prefer "variant".
    variant = body.get("variant", body.get("type", DEFAULT_VARIANT))
    if variant not in VARIANTS:
        raise BroadcastError(f"Unknown type {variant!r}; use one of: {', '.join(VARIANTS)}.")

    auto_close = body.get("autoClose", DEFAULT_AUTO_CLOSE_MS)
    if auto_close is not False and (
        isinstance(auto_close, bool)
        or not isinstance(auto_close, int)
        or not 1 <= auto_close <= MAX_AUTO_CLOSE_MS
    ):
        raise BroadcastError(
            "'autoClose' must be a number of milliseconds between 1 and "
            f"{MAX_AUTO_CLOSE_MS}, or false to stay until dismissed."
        )

    raw = body.get("recipients")
    recipients: tuple[Recipient, ...] | None = None
    if raw is not None:
        if not isinstance(raw, list):
            raise BroadcastError("'recipients' must be a list (omit it to send to everyone).")
        if not raw:
            raise BroadcastError("'recipients' is empty; omit it to send to every running server.")
        if len(raw) > max_recipients:
            raise BroadcastError(
                f"'recipients' has {len(raw)} entries; the limit is {max_recipients}. "
                "Omit 'recipients' to send to every running server, split the list into "
                "several broadcasts, or raise c.NotificationsConfig.max_recipients."
            )
        seen: dict[Recipient, None] = {}
        for i, item in enumerate(raw):
            seen.setdefault(_recipient(item, i))
        recipients = tuple(seen)
    return BroadcastRequest(message, variant, auto_close, recipients)


def _configured_list(c: Any, name: str) -> list:
    return list(configured(c, "JupyterHub", name, []))


def configure(c: Any, *, service_name: str) -> None:
    """Register the delivery service and its ``access:servers``-only role."""
    services = _configured_list(c, "services")
    if not any(s.get("name") == service_name for s in services):
        # No api_token and no URL: nothing can authenticate as this service
        # except the short-lived tokens the hub issues per broadcast.
        services.append({"name": service_name, "display": False})
    c.JupyterHub.services = services

    roles = _configured_list(c, "load_roles")
    if not any(r.get("name") == SERVICE_ROLE for r in roles):
        roles.append(
            {
                "name": SERVICE_ROLE,
                "description": "Deliver broadcast notifications to single-user servers",
                # access:servers is the permission; reading its own name is
                # the identity every token carries (without it the hub warns
                # about a discarded scope on each use of the token)
                "scopes": ["access:servers", f"read:services:name!service={service_name}"],
                "services": [service_name],
            }
        )
    c.JupyterHub.load_roles = roles


__all__ = [
    "VARIANTS",
    "BroadcastError",
    "BroadcastRequest",
    "NotificationsConfig",
    "Recipient",
    "configure",
    "parse_broadcast",
    "server_scope",
    "token_scopes",
]

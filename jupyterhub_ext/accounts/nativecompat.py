"""NativeAuthenticator 1.3 on JupyterHub 6: make its login form work again.

JupyterHub 6 removed the statsd client from its handlers; NativeAuthenticator
1.3.0 (the newest release) still times every login with
``self.statsd.timer(...)``, so each ``POST /hub/login`` fails with
``AttributeError: 'LoginHandler' object has no attribute 'statsd'`` (500).
``apply()`` gives that handler a statsd that does nothing. It changes nothing
when JupyterHub still has statsd or NativeAuthenticator stops using it.
"""

from __future__ import annotations

from typing import Any


class _NullTimer:
    def start(self) -> _NullTimer:
        return self

    def stop(self, send: bool = True) -> None:
        return None


class NullStats:
    """The part of the statsd client API NativeAuthenticator calls; records nothing."""

    def timer(self, stat: str, rate: float = 1) -> _NullTimer:
        return _NullTimer()

    def incr(self, *args: Any, **kwargs: Any) -> None:
        return None

    def decr(self, *args: Any, **kwargs: Any) -> None:
        return None

    def gauge(self, *args: Any, **kwargs: Any) -> None:
        return None

    def timing(self, *args: Any, **kwargs: Any) -> None:
        return None


def uses_native(authenticator_class: Any) -> bool:
    """Whether a configured ``JupyterHub.authenticator_class`` is NativeAuthenticator."""
    if isinstance(authenticator_class, str):
        return authenticator_class == "native" or authenticator_class.startswith(
            "nativeauthenticator"
        )
    mro = getattr(authenticator_class, "__mro__", ())
    return any(k.__module__.startswith("nativeauthenticator") for k in mro)


def apply() -> bool:
    """Give NativeAuthenticator's login handler a no-op statsd if JupyterHub has none."""
    try:
        from nativeauthenticator import handlers
    except ImportError:
        return False
    from jupyterhub.handlers import BaseHandler

    if hasattr(BaseHandler, "statsd") or "statsd" in vars(handlers.LoginHandler):
        return False
    handlers.LoginHandler.statsd = NullStats()
    return True

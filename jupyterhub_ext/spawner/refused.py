"""SpawnRefused: a start that cannot go ahead, with a message for the person who asked.

Apart from the lifecycle so that features checking a start (profiles,
storage) can raise it without importing the spawner.
"""

from __future__ import annotations

from jupyterhub_ext.usage import metrics

try:
    from jupyterhub.spawner import SpawnException
except ImportError:  # JupyterHub < 6
    from tornado.web import HTTPError

    class SpawnException(HTTPError):  # type: ignore[no-redef]
        def __init__(self, message, *, reason, status_code=400, **_kw):
            self.message = message
            super().__init__(status_code, message, reason=reason)


class SpawnRefused(SpawnException):
    """A spawn that cannot go ahead; the message is shown on the spawn page and in the API."""

    def __init__(self, message: str, *, reason: str, status_code: int = 400) -> None:
        super().__init__(message, reason=reason, status_code=status_code)
        metrics.count_refused_spawn(reason)
        # what JupyterHub shows users (the spawn page, the progress API)
        self.jupyterhub_message = message

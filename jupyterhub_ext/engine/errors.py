"""Docker's exceptions, and the one way we turn them into a message for people."""

from __future__ import annotations

from docker.errors import APIError, DockerException, ImageNotFound, NotFound

__all__ = ["APIError", "DockerException", "ImageNotFound", "NotFound", "explain"]


def explain(e: BaseException) -> str:
    """The engine's own words for a failed call (its ``explanation``), else the exception."""
    text = getattr(e, "explanation", None)
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return str(text or e)

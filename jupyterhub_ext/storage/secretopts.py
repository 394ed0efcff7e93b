"""Secret volume driver options: ``${env:NAME}`` and ``${file:/path}`` placeholders.

A CIFS share needs a password in its mount options. The config text names
where the secret lives, never the secret itself::

    "driver_opts": {"o": "addr=nas,username=lab,password=${env:NAS_PASSWORD}"}

Placeholders are resolved only when a volume is created (and when an existing
volume's options are compared), and the resolved options are never kept on the
spawner, logged, or put in its state. Docker repeats mount options in its error
messages ("... data: addr=nas,password=...: permission denied"), so errors are
passed through :func:`redact` before anybody sees them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

# Anything starting with "${" is meant as a placeholder; malformed ones are
# refused instead of being sent to Docker literally.
_ANY_RE = re.compile(r"\$\{([^}]*)\}?")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MASK = "********"


class SecretError(ValueError):
    """A placeholder that is malformed or cannot be resolved; never holds the secret."""


def references(value: str) -> list[tuple[str, str]]:
    """The ``(kind, ref)`` placeholders in one option value; raise SecretError if malformed."""
    refs = []
    for m in _ANY_RE.finditer(value):
        body = m.group(1)
        if not m.group(0).endswith("}"):
            raise SecretError(f"placeholder {m.group(0)!r} is not closed with '}}'")
        kind, sep, ref = body.partition(":")
        if not sep or kind not in ("env", "file"):
            raise SecretError(
                f"unknown placeholder ${{{body}}}; use ${{env:NAME}} or ${{file:/absolute/path}}"
            )
        if kind == "env" and not _ENV_NAME_RE.match(ref):
            raise SecretError(f"${{env:{ref}}}: not a valid environment variable name")
        if kind == "file" and not ref.startswith("/"):
            raise SecretError(f"${{file:{ref}}}: the path must be absolute")
        refs.append((kind, ref))
    return refs


def has_secrets(opts: Mapping[str, str]) -> bool:
    return any(references(v) for v in opts.values())


def _read(kind: str, ref: str) -> str:
    if kind == "env":
        if ref not in os.environ:
            raise SecretError(f"environment variable {ref} is not set")
        return os.environ[ref]
    try:
        with open(ref, encoding="utf-8") as f:
            # files written by editors and secret stores end with a newline
            return f.read().rstrip("\r\n")
    except OSError as e:
        raise SecretError(f"cannot read secret file {ref}: {e.strerror}") from None


def resolve(opts: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Options with placeholders replaced, and the secret values (to redact later)."""
    secrets: list[str] = []

    def sub(m: re.Match) -> str:
        kind, _, ref = m.group(1).partition(":")
        value = _read(kind, ref)
        if value:
            secrets.append(value)
        return value

    out = {}
    for key, value in opts.items():
        references(value)  # refuse malformed placeholders before reading anything
        out[key] = _ANY_RE.sub(sub, value)
    return out, secrets


def check(opts: Mapping[str, str]) -> None:
    """Raise SecretError (naming the variable or file) if a placeholder cannot be resolved."""
    resolve(opts)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value masked; longest first so no suffix survives."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text

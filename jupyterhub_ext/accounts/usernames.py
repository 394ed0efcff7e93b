"""Which user names the hub accepts, enforced at every entrance.

Docker object names are made from user names by DockerSpawner's escaping,
which is not one-to-one for control characters (escapism writes a byte below
0x10 as ``-`` plus ONE hex digit): ``"lab\\fache"`` escapes to ``lab-cache``,
the name of another user's volume. For every other character the escaping is
one-to-one (a safe character, or ``-`` plus two hex digits per byte). So a
name made only of printable characters can never collide with another
accepted name; names with control or other non-printable characters are
refused wherever a name enters the hub: user creation (API and config),
login, NativeAuthenticator's sign-up form, and our rename. Volume owner
labels (``ownership.py``) are the second wall behind this one.
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Any

from tornado import web

RULE = (
    "user names may contain only printable characters (no control characters, "
    "line or paragraph separators, or other invisible characters)"
)


def problem(name: Any) -> str | None:
    """Why ``name`` is refused as a user name, or None when it is acceptable."""
    if not isinstance(name, str) or not name:
        return "a user name must be a non-empty string"
    for ch in name:
        # str.isprintable is False for every category C* (controls, format
        # characters such as zero-width joiners, surrogates, unassigned) and
        # for separators other than the plain space.
        if not ch.isprintable():
            code = f"U+{ord(ch):04X}"
            label = unicodedata.name(ch, "") or unicodedata.category(ch)
            return f"{RULE}; found {code} ({label})"
    return None


def check(name: Any) -> None:
    """Raise ``ValueError`` with a message a person can act on if ``name`` is refused."""
    why = problem(name)
    if why:
        raise ValueError(f"Invalid user name {name!r}: {why}")


def _guard_validate(original: Any) -> Any:
    @functools.wraps(original)
    def validate_username(self: Any, username: str) -> bool:
        if problem(username):
            self.log.warning("Refused user name %r: %s", username, RULE)
            return False
        return original(self, username)

    validate_username._jupyterhub_ext_guard = True  # type: ignore[attr-defined]
    return validate_username


def _guard_signup(original: Any) -> Any:
    @functools.wraps(original)
    async def post(self: Any) -> Any:
        name = self.get_body_argument("username", "", strip=False)
        why = problem(name)
        if name and why:
            # NativeAuthenticator would answer "something went wrong";
            # say what is wrong instead, before anything is created.
            raise web.HTTPError(400, f"Sign-up refused: {why}.")
        return await original(self)

    post._jupyterhub_ext_guard = True  # type: ignore[attr-defined]
    return post


def install() -> None:
    """Refuse non-printable names in every Authenticator and in Native's sign-up form.

    ``Authenticator.validate_username`` is what JupyterHub calls for API user
    creation, renames through its own PATCH, ``admin_users`` /
    ``allowed_users`` at start and every login; authenticators that override
    it (NativeAuthenticator does) call it through ``super()``. Idempotent.
    """
    from jupyterhub.auth import Authenticator

    if not getattr(Authenticator.validate_username, "_jupyterhub_ext_guard", False):
        Authenticator.validate_username = _guard_validate(Authenticator.validate_username)
    try:
        from nativeauthenticator.handlers import SignUpHandler
    except ImportError:
        return
    if not getattr(SignUpHandler.post, "_jupyterhub_ext_guard", False):
        SignUpHandler.post = _guard_signup(SignUpHandler.post)

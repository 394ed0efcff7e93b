"""User-name rule: printable names only (DockerSpawner's escaping collides on the others)."""

from __future__ import annotations

import pytest
from dockerspawner import DockerSpawner

from jupyterhub_ext.accounts import usernames


@pytest.mark.parametrize(
    "name",
    [
        "lab\fache",
        "a\x00b",
        "tab\tname",
        "line\nbreak",
        "ls\u2028ep",
        "ps\u2029ep",
        "zw\u200bsp",
        "bidi\u202eevil",
        "del\x7f",
        "",
        None,
    ],
)
def test_refused(name: object) -> None:
    assert usernames.problem(name)
    with pytest.raises(ValueError, match="user name"):
        usernames.check(name)


@pytest.mark.parametrize(
    "name", ["lab", "josé", "john.doe", "émile zola", "user@example.org", "李"]
)
def test_accepted(name: str) -> None:
    assert usernames.problem(name) is None
    usernames.check(name)


def test_message_names_the_character() -> None:
    assert "U+000C" in usernames.problem("lab\fache")


def test_the_collision_it_prevents() -> None:
    # the reason for the rule: escapism writes bytes < 0x10 with one hex digit
    escape = DockerSpawner._escape
    assert escape("lab\fache") == escape("lab") + "-cache"
    assert usernames.problem("lab\fache")


def test_install_guards_every_authenticator() -> None:
    from jupyterhub.auth import Authenticator
    from nativeauthenticator import NativeAuthenticator

    usernames.install()
    usernames.install()  # idempotent
    assert Authenticator().validate_username("lab") is True
    assert Authenticator().validate_username("lab\fache") is False
    # NativeAuthenticator overrides validate_username and calls super()
    # (its __init__ needs the hub's database; validation does not)
    native = NativeAuthenticator.__new__(NativeAuthenticator)
    assert native.validate_username("lab\x0bache") is False
    assert native.validate_username("lab") is True

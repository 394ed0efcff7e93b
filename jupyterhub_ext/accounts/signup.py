"""No takeover through the sign-up form: names the config trusts need accounts first.

NativeAuthenticator approves a sign-up at once when its name is in
``c.Authenticator.admin_users`` or ``allowed_users``, even when other sign-ups
wait for an admin's approval, and JupyterHub makes an ``admin_users`` name a
hub admin at login. So while sign-up is on, the first person to sign up under
such a name owns it: with an admin name, the whole hub (and, through the
Docker socket, the host).

- ``admin_users_from_env`` reads the admin names from the admin's own setting;
  nothing we ship names an admin.
- ``install`` makes the hub refuse to start while sign-up is on and such a
  name has no account. The check runs in ``check_allow_config``, which
  JupyterHub calls after the database is open and before anything listens.
- ``jupyterhub-ext-create-account`` (``main``) creates the account first:
  NativeAuthenticator's row, approved, with a bcrypt hash made the way
  NativeAuthenticator makes it, from a password read from a file or stdin.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from pathlib import Path
from typing import Any

COMMAND = "jupyterhub-ext-create-account"
ADMIN_ENV = "JUPYTERHUB_ADMIN_USERS"
MIN_PASSWORD = 10


class AccountsMissing(SystemExit):
    """The hub refuses to start; exits with status 1 (the message is in the log)."""

    def __init__(self, message: str, names: list[str]) -> None:
        super().__init__(1)
        self.message = message
        self.names = names

    def __str__(self) -> str:
        return self.message


def admin_users_from_env(var: str = ADMIN_ENV) -> set[str]:
    """The admin names in ``var`` (comma separated); a clear error when it is unset."""
    names = {n.strip() for n in os.environ.get(var, "").split(",")} - {""}
    if not names:
        raise SystemExit(
            f"{var} is not set. Set it to your own admin login name(s), comma "
            f"separated (e.g. {var}=jdoe in deploy/.env or the hub's environment). "
            "No admin name is built in: a well-known one such as 'admin' is the first "
            "name a stranger tries at the sign-up form."
        )
    return names


# -- the check at hub start ------------------------------------------------------


def _group_members(spec: Any) -> list[str]:
    # load_groups values: {"users": [...], ...}, or the older plain list
    return list(spec.get("users", ()) if isinstance(spec, dict) else spec or ())


def trusted_names(authenticator: Any) -> dict[str, str]:
    """Names the config gives something to, whoever signs up with them: name -> where.

    NativeAuthenticator approves ``admin_users`` and ``allowed_users`` names at
    sign-up without asking; names in ``load_roles`` and ``load_groups`` carry
    their roles and groups (``docker-sock`` is root on the host) to whoever
    owns the account, at once with open sign-up.
    """
    found: dict[str, str] = {}
    hub = getattr(authenticator, "parent", None)
    for role in getattr(hub, "load_roles", None) or ():
        for raw in role.get("users", ()):
            found[raw] = f"c.JupyterHub.load_roles (role {role.get('name')!r})"
    for group, spec in (getattr(hub, "load_groups", None) or {}).items():
        for raw in _group_members(spec):
            found[raw] = f"c.JupyterHub.load_groups (group {group!r})"
    for setting in ("allowed_users", "admin_users"):  # admin wins in the message
        for raw in getattr(authenticator, setting, None) or ():
            found[raw] = f"c.Authenticator.{setting}"
    return {authenticator.normalize_username(raw): where for raw, where in found.items()}


def missing_accounts(authenticator: Any) -> dict[str, str]:
    """The trusted names anyone could still claim at the sign-up form."""
    if not getattr(authenticator, "enable_signup", False):
        return {}
    from nativeauthenticator.orm import UserInfo

    db = authenticator.db
    return {
        name: setting
        for name, setting in sorted(trusted_names(authenticator).items())
        if UserInfo.find(db, name) is None
    }


def refusal_message(missing: dict[str, str], config_file: str = "jupyterhub_config.py") -> str:
    """What the hub log says when it refuses to start: which names, and what to do."""
    lines = ["Refusing to start: sign-up is open and these names have no account yet:"]
    for name, where in missing.items():
        lines.append(f"  {name!r} ({where})")
    first = next(iter(missing))
    lines += [
        "The first stranger to sign up under such a name would own it and what the "
        "config gives it (NativeAuthenticator approves admin_users and allowed_users "
        "names at once; admin_users become hub admins).",
        "Create each account first, with a password from a file only you can read:",
        f"  {COMMAND} -f {config_file} {first} --password-file /path/to/password",
        "Docker Compose (deploy/): "
        f"docker compose run --rm -T hub {COMMAND} {first} --password-file - < password.txt",
        "Or take the name out of that setting, or set c.NativeAuthenticator.enable_signup = False.",
    ]
    return "\n".join(lines)


def check_at_start(authenticator: Any) -> None:
    """Raise ``AccountsMissing`` (exit 1) while a trusted name is free to claim."""
    missing = missing_accounts(authenticator)
    if not missing:
        return
    parent = getattr(authenticator, "parent", None)
    message = refusal_message(missing, getattr(parent, "config_file", "") or "jupyterhub_config.py")
    authenticator.log.critical(message)
    raise AccountsMissing(message, list(missing))


def uses_native(authenticator_class: Any) -> bool:
    """Whether the configured authenticator is NativeAuthenticator or a subclass of it.

    A dotted name of the admin's own subclass is imported to find out
    (JupyterHub imports it moments later anyway).
    """
    from importlib import import_module

    from jupyterhub_ext.accounts.nativecompat import uses_native as named_native

    if isinstance(authenticator_class, str) and "." in authenticator_class:
        if not named_native(authenticator_class):
            module, _, name = authenticator_class.rpartition(".")
            try:
                authenticator_class = getattr(import_module(module), name)
            except (ImportError, AttributeError):
                return False  # JupyterHub reports it
    return named_native(authenticator_class)


def install() -> bool:
    """Patch NativeAuthenticator once: the check at start, and no sign-up of trusted names.

    ``check_allow_config`` runs ``check_at_start``. ``create_user`` (the
    sign-up form) refuses a trusted name: every one had an account when the
    hub started, so a sign-up under one means its account was deleted while
    the hub runs, and the name must not go to whoever asks first.
    """
    try:
        from nativeauthenticator import NativeAuthenticator
    except ImportError:
        return False
    original = NativeAuthenticator.check_allow_config
    if getattr(original, "_jupyterhub_ext_accounts", False):
        return False

    @functools.wraps(original)
    def check_allow_config(self: Any) -> None:
        original(self)
        check_at_start(self)

    check_allow_config._jupyterhub_ext_accounts = True  # type: ignore[attr-defined]
    NativeAuthenticator.check_allow_config = check_allow_config
    NativeAuthenticator.create_user = _guard_signup(NativeAuthenticator.create_user)
    return True


def _guard_signup(original: Any) -> Any:
    @functools.wraps(original)
    def create_user(self: Any, username: str, password: str, **kwargs: Any) -> Any:
        name = self.normalize_username(username)
        where = trusted_names(self).get(name)
        if where and self.get_user(name) is None:
            self.log.warning(
                "Sign-up refused for %r: a name in %s gets its account only from %s",
                name,
                where,
                COMMAND,
            )
            return None
        return original(self, username, password, **kwargs)

    return create_user


# -- jupyterhub-ext-create-account -----------------------------------------------


class AccountError(Exception):
    """Refused; the message says what to change."""


def read_password(path: str) -> str:
    """The password in a file ("-": stdin), without its final line break."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise AccountError(f"cannot read the password file: {e}") from e
    password = text[:-1] if text.endswith("\n") else text
    password = password[:-1] if password.endswith("\r") else password
    if not password:
        raise AccountError("the password file is empty")
    return password


def create_account(
    authenticator: Any, name: str, password: str, *, replace: bool = False
) -> dict[str, Any]:
    """Write an approved NativeAuthenticator account and the hub user; return what was done."""
    import bcrypt
    from jupyterhub import orm
    from nativeauthenticator.orm import UserInfo

    name = authenticator.normalize_username(name)
    if not authenticator.validate_username(name):
        raise AccountError(f"{name!r} is not a valid user name for this hub")
    # the hub's own rule, and never shorter than MIN_PASSWORD: these accounts
    # are usually admins, whose password is worth guessing
    length = max(authenticator.minimum_password_length, MIN_PASSWORD)
    if len(password) < length or not authenticator.is_password_strong(password):
        raise AccountError(
            f"the password is too weak: at least {length} characters"
            + (", and not a common password" if authenticator.check_common_password else "")
        )
    db = authenticator.db
    info = UserInfo.find(db, name)
    existed = info is not None
    if existed and not replace:
        raise AccountError(
            f"{name!r} already has an account. If you did not create it, someone may have "
            "claimed the name: check on /hub/authorize, or run again with --replace to set "
            "a new password"
        )
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
    if not existed:
        info = UserInfo(username=name, password=hashed, is_authorized=True)
        db.add(info)
    else:
        info.password = hashed
        info.is_authorized = True
    admin = name in {authenticator.normalize_username(n) for n in authenticator.admin_users}
    user = orm.User.find(db, name)
    if user is None:
        user = orm.User(name=name)
        db.add(user)
    if admin:
        user.admin = True
    db.commit()
    return {"name": name, "admin": admin, "replaced": existed}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=COMMAND,
        description="Create a NativeAuthenticator account (approved) in the hub's database, "
        "e.g. an admin's before the hub opens sign-up. Run it where the hub runs, with the "
        "hub's config; the hub may be stopped.",
    )
    p.add_argument("name", help="the login name (as in c.Authenticator.admin_users)")
    p.add_argument(
        "--password-file",
        required=True,
        metavar="FILE",
        help='file holding the password ("-": read it from stdin); never on the command line',
    )
    p.add_argument(
        "-f",
        "--config",
        default="jupyterhub_config.py",
        help="the hub's config file (default: jupyterhub_config.py in this directory)",
    )
    p.add_argument(
        "--replace", action="store_true", help="set a new password if the account exists"
    )
    return p


def _load_hub(config_file: str) -> Any:
    """The hub's authenticator, with the hub's config and database."""
    from jupyterhub.app import JupyterHub

    if not Path(config_file).is_file():
        raise AccountError(f"no hub config at {config_file} (give it with -f)")
    app = JupyterHub(config_file=config_file)
    # the hub's start-up warnings (deprecations, migrations) are noise here
    app.log.setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    app.load_config_file(config_file)
    app.init_db()
    auth = app.authenticator
    from nativeauthenticator import NativeAuthenticator

    if not isinstance(auth, NativeAuthenticator):
        raise AccountError(
            f"this hub logs in with {type(auth).__name__}, not NativeAuthenticator: "
            "accounts come from that login provider"
        )
    return auth


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        password = read_password(args.password_file)
        done = create_account(_load_hub(args.config), args.name, password, replace=args.replace)
    except AccountError as e:
        print(f"{COMMAND}: {e}", file=sys.stderr)
        return 2
    what = "new password set for" if done["replaced"] else "created"
    role = "admin account" if done["admin"] else "account"
    print(f"{role} {done['name']!r} {what} (approved); the hub may start now")
    return 0


if __name__ == "__main__":
    sys.exit(main())

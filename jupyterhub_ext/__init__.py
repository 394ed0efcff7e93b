"""jupyterhub_ext: a JupyterHub plugin library for hubs that run every user in Docker."""

from __future__ import annotations

from jupyterhub_ext.paths import static_path, template_path

__version__ = "0.1.0"


def setup(c) -> None:  # noqa: ANN001 - a traitlets Config
    """Wire jupyterhub_ext into a hub: call it at the end of jupyterhub_config.py.

    Registers our handlers and templates, and checks our configuration now,
    so a mistake stops the hub at start-up with a message naming the entry,
    not at someone's first spawn.
    """
    # the module is not named "setup": importing it would shadow this function
    from jupyterhub_ext.hubconfig import apply

    apply(c)


def admin_users_from_env(var: str = "JUPYTERHUB_ADMIN_USERS") -> set[str]:
    """Admin names from the environment (comma separated); stops the hub when unset.

    For ``c.Authenticator.admin_users`` in a config: no admin name is built in.
    """
    from jupyterhub_ext.accounts.signup import admin_users_from_env as read

    return read(var)


__all__ = ["__version__", "admin_users_from_env", "setup", "static_path", "template_path"]

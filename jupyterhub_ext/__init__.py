"""jupyterhub_ext: a JupyterHub plugin library for hubs that run every user in Docker."""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"


def template_path() -> str:
    """The directory of our page templates, for ``c.JupyterHub.template_paths``.

    In a wheel the templates ship inside the package; in a source checkout
    they live in ``share/templates`` at the top of the repository.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "share" / "templates"):
        if (candidate / "home.html").is_file():
            return str(candidate)
    raise FileNotFoundError(f"jupyterhub_ext templates not found next to {here}")


def static_path() -> str:
    """Our pages' script (``jhext.js``), served under ``/hub/jupyterhub-ext/static/``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "static", here.parent / "share" / "static"):
        if (candidate / "jhext.js").is_file():
            return str(candidate)
    raise FileNotFoundError(f"jupyterhub_ext static files not found next to {here}")


def setup(c) -> None:  # noqa: ANN001 - a traitlets Config
    """Wire jupyterhub_ext into a hub: call it at the end of jupyterhub_config.py.

    Registers our handlers and templates, and checks our configuration now,
    so a mistake stops the hub at start-up with a message naming the entry,
    not at someone's first spawn.
    """
    # the module is not named "setup": importing it would shadow this function
    from .hubsetup import apply

    apply(c)


def admin_users_from_env(var: str = "JUPYTERHUB_ADMIN_USERS") -> set[str]:
    """Admin names from the environment (comma separated); stops the hub when unset.

    For ``c.Authenticator.admin_users`` in a config: no admin name is built in.
    """
    from .accounts import admin_users_from_env as read

    return read(var)


__all__ = ["__version__", "admin_users_from_env", "setup", "static_path", "template_path"]

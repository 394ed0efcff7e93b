"""setup(c) composes with lazy list edits and authenticator-managed groups."""

from __future__ import annotations

from traitlets.config import Config

import jupyterhub_ext
from jupyterhub_ext.scopes import ADMIN_ROLE


def test_setup_keeps_roles_and_services_appended_before_it():
    c = Config()
    c.JupyterHub.load_roles.append({"name": "cron", "scopes": ["read:users"]})
    c.JupyterHub.services.append({"name": "cron"})
    jupyterhub_ext.setup(c)
    names = [r["name"] for r in c.JupyterHub.load_roles]
    assert "cron" in names and ADMIN_ROLE in names
    assert "cron" in [s["name"] for s in c.JupyterHub.services]


def test_groups_left_to_an_authenticator_that_manages_them():
    c = Config()
    c.GenericOAuthenticator.manage_groups = True
    jupyterhub_ext.setup(c)
    assert "load_groups" not in c.JupyterHub
    plain = Config()
    jupyterhub_ext.setup(plain)
    assert "docker-sock" in plain.JupyterHub.load_groups

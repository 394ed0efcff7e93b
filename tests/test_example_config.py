"""The example config is loaded into a real JupyterHub application and accepted."""

from __future__ import annotations

from pathlib import Path

import pytest
from jupyterhub.app import JupyterHub

import jupyterhub_ext
from jupyterhub_ext.spawner import ExtDockerSpawner
from jupyterhub_ext.storage.volumes import parse_volume_set

ROOT = Path(__file__).resolve().parent.parent


def load(tmp_path: Path, monkeypatch) -> JupyterHub:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JUPYTERHUB_ADMIN_USERS", "jdoe")
    app = JupyterHub()
    app.load_config_file(str(ROOT / "jupyterhub_config.example.py"))
    return app


def test_example_config_is_accepted(tmp_path, monkeypatch):
    app = load(tmp_path, monkeypatch)
    assert app.spawner_class is ExtDockerSpawner
    assert jupyterhub_ext.template_path() in app.template_paths
    specs = parse_volume_set(app.config.ExtDockerSpawner.volume_set)
    assert [v.key for v in specs][:2] == ["home", "cache"]
    assert app.config.ExtDockerSpawner.network_name == "host"
    assert "custom:jupyterhub-ext:manage-volumes" in app.custom_scopes
    # clean-up on delete loses data: the example keeps it off, explicitly
    assert app.config.ExtDockerSpawner.remove_volumes_on_delete is False


def test_example_config_gpu_and_docker_access(tmp_path, monkeypatch):
    app = load(tmp_path, monkeypatch)
    spawner_cfg = app.config.ExtDockerSpawner
    assert spawner_cfg.gpu_mode == "auto"
    assert spawner_cfg.docker_sock_group == "docker-sock"
    # setup(c) creates the built-in groups at hub start
    assert {"docker-sock", "docker-privileged"} <= set(app.load_groups)
    # the GPU values are ones the spawner accepts
    from jupyterhub_ext.gpu import GpuRequest

    req = GpuRequest.from_config(spawner_cfg.gpu_count, [], spawner_cfg.gpu_capabilities)
    assert req.count == -1 and req.capabilities == ("compute", "utility")


def test_example_config_serves_the_rename(tmp_path, monkeypatch):
    app = load(tmp_path, monkeypatch)
    routes = {h[0] for h in app.extra_handlers}
    assert r"/api/users/([^/]+)/rename" in routes and r"/rename" in routes
    assert "c.ExtDockerSpawner.helper_image" in (ROOT / "jupyterhub_config.example.py").read_text()


def test_example_config_names_no_admin(tmp_path, monkeypatch):
    """The admin name comes from the admin's setting; without it the hub stops, saying so."""
    assert load(tmp_path, monkeypatch).config.Authenticator.admin_users == {"jdoe"}
    monkeypatch.delenv("JUPYTERHUB_ADMIN_USERS")
    with pytest.raises(SystemExit, match="JUPYTERHUB_ADMIN_USERS is not set"):
        JupyterHub().load_config_file(str(ROOT / "jupyterhub_config.example.py"))
    text = (ROOT / "jupyterhub_config.example.py").read_text()
    assert '"admin"' not in text and "jupyterhub-ext-create-account" in text

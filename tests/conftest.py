"""Session fixtures: a real Docker engine, the locally built images, real hubs."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from hubctl import Hub, build_images, cleanup_prefix, docker_host
from swarmbed import swarm_bed  # noqa: F401  (the three-node Swarm test bed, issue 14)


@pytest.fixture(scope="session")
def docker_engine() -> str:
    url = docker_host()
    if url is None:
        pytest.skip(
            "no Docker engine answers and we cannot start one (needs root and dockerd): "
            "run scripts/docker-engine.sh start or set DOCKER_HOST"
        )
    os.environ["DOCKER_HOST"] = url
    return url


@pytest.fixture(scope="session")
def docker_client(docker_engine: str) -> docker.DockerClient:
    return docker.from_env(version="auto")


@pytest.fixture(scope="session")
def images(docker_engine: str) -> tuple[str, str]:
    return build_images()


@pytest.fixture(scope="session")
def lab_image(images: tuple[str, str]) -> str:
    return images[0]


@pytest.fixture(scope="session")
def run_prefix(docker_engine: str) -> Iterator[str]:
    """Name prefix of every container and volume this test run makes; removed at the end."""
    prefix = f"jhext-test-{secrets.token_hex(3)}"
    yield prefix
    cleanup_prefix(prefix)


@pytest.fixture
def make_hub(
    tmp_path: Path, lab_image: str, run_prefix: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Hub]]:
    """Start hubs with extra config; each is stopped (servers too) after the test."""
    hubs: list[Hub] = []
    counter = iter(range(1000))

    def _make(config: str = "", *, start: bool = True, **kwargs) -> Hub:
        n = next(counter)
        kwargs.setdefault("image", lab_image)
        kwargs.setdefault("prefix", f"{run_prefix}-{secrets.token_hex(2)}")
        hub = Hub(tmp_path / f"hub{n}", config=config, **kwargs)
        hubs.append(hub)
        return hub.start() if start else hub

    yield _make
    for hub in hubs:
        hub.stop()
        cleanup_prefix(hub.prefix)
        if request.node.rep_call_failed if hasattr(request.node, "rep_call_failed") else False:
            print(f"--- hub log {hub.log_file} ---\n{hub.log_tail(120)}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.when == "call":
        item.rep_call_failed = rep.failed
    return rep

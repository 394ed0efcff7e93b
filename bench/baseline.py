"""The baseline: plain DockerSpawner 14, made to work on the host network and nothing more.

Plain DockerSpawner cannot run with ``network_name='host'`` (it binds ports);
this adds only a free port and ``get_ip_and_port``, keeping DockerSpawner's
class-wide single-thread executor: the thing we compare against.
"""

from __future__ import annotations

import socket

from dockerspawner import DockerSpawner


class HostNetDockerSpawner(DockerSpawner):
    async def start(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.ip = "127.0.0.1"
        self.use_internal_ip = True  # no port bindings (host mode refuses them)
        return await super().start()

    async def get_ip_and_port(self):
        return "127.0.0.1", self.port

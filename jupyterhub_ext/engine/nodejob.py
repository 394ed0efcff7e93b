"""The Docker engine of one Swarm node, reached through one-off jobs on that node.

The hub talks to a manager, and a manager cannot inspect or remove a
worker's volumes, nor run a helper container there. :class:`NodeEngine`
offers the docker-py ``APIClient`` methods that volume reset and rename use
(``inspect_volume``, ``remove_volume``, ``containers``, ``create_container``,
``wait``, ...) and runs each one as a ``replicated-job`` pinned to the node:
the job mounts that node's Docker socket, makes the one API call with a few
lines of standard-library Python, and prints the answer, which the hub reads
from the job's logs; the job is removed afterwards. The feature code (the
ownership rule, reset, copy and verify) runs unchanged against it.

Each call costs about 0.6 s (a task start). Like every docker-py call, the
methods block: callers run them through :mod:`dockerpool` (short calls) or
:func:`calls.call_long` (``wait``).
"""

from __future__ import annotations

import base64
import json
import secrets
import struct
import time
from typing import Any
from urllib.parse import quote, urlencode

from requests import Response

from jupyterhub_ext.engine import APIClient
from jupyterhub_ext.engine.errors import APIError, NotFound
from jupyterhub_ext.engine.labels import LABEL_HELPER, LABEL_MANAGED

RESULT_MARK = "JHEXT-RESULT "
POLL_SECONDS = 0.05
DEFAULT_TIMEOUT = 120.0

# Runs inside the job: one HTTP request on the node's Docker socket.
_SCRIPT = r"""
import base64, http.client, json, socket, sys
req = json.loads(sys.argv[1])
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect("/var/run/docker.sock")
conn = Unix("localhost", timeout=None)
body = None if req.get("body") is None else json.dumps(req["body"]).encode()
headers = {"Content-Type": "application/json"} if body is not None else {}
conn.request(req["method"], req["path"], body=body, headers=headers)
resp = conn.getresponse()
data = resp.read()
answer = {"status": resp.status, "body": base64.b64encode(data).decode()}
print("JHEXT-RESULT " + json.dumps(answer))
"""


def demux(stream: bytes) -> bytes:
    """Docker's multiplexed stdout/stderr frames (8-byte headers) as one byte string."""
    out, i = bytearray(), 0
    while i + 8 <= len(stream):
        (size,) = struct.unpack(">I", stream[i + 4 : i + 8])
        out += stream[i + 8 : i + 8 + size]
        i += 8 + size
    return bytes(out) if i == len(stream) else stream


def parse_result(logs: bytes) -> tuple[int, bytes]:
    """(HTTP status, body) from a job's output; ValueError when there is none."""
    for line in reversed(logs.decode(errors="replace").splitlines()):
        at = line.find(RESULT_MARK)
        if at >= 0:
            found = json.loads(line[at + len(RESULT_MARK) :])
            return int(found["status"]), base64.b64decode(found["body"])
    raise ValueError("no result in the job's output")


def _error(status: int, body: bytes, what: str) -> APIError:
    try:
        message = json.loads(body).get("message") or body.decode(errors="replace")
    except ValueError:
        message = body.decode(errors="replace")
    response = Response()
    response.status_code = status
    cls = NotFound if status == 404 else APIError
    return cls(f"{what}: {message}", response=response, explanation=message)


class NodeEngine:
    """docker-py-like access to one node's engine, one job per call (see the module)."""

    def __init__(
        self,
        manager: APIClient,
        node_id: str,
        *,
        image: str,
        socket_path: str = "/var/run/docker.sock",  # on the node; "{node}": its hostname
        name_prefix: str = "jhext-node",
    ) -> None:
        self.manager = manager
        self.node_id = node_id
        self.image = image
        self._socket_path = socket_path
        self.name_prefix = name_prefix

    @property
    def socket_path(self) -> str:
        """The node's Docker socket (``{node}`` filled with the node's hostname, once)."""
        if "{node}" in self._socket_path:
            host = self.manager.inspect_node(self.node_id)["Description"]["Hostname"]
            self._socket_path = self._socket_path.replace("{node}", host)
        return self._socket_path

    def __repr__(self) -> str:
        return f"NodeEngine(node={self.node_id[:12]})"

    # -- one call -----------------------------------------------------------------

    def request(
        self, method: str, path: str, body: Any = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> tuple[int, bytes]:
        """Make one Docker API request on the node; (status, body)."""
        req = json.dumps({"method": method, "path": path, "body": body})
        name = f"{self.name_prefix}-{secrets.token_hex(4)}"
        svc = self.manager.create_service(
            {
                "ContainerSpec": {
                    "Image": self.image,
                    "Command": ["python3", "-c", _SCRIPT, req],
                    "User": "0:0",
                    "Labels": {LABEL_MANAGED: "true", LABEL_HELPER: "node-call"},
                    "Mounts": [
                        {
                            "Type": "bind",
                            "Source": self.socket_path,
                            "Target": "/var/run/docker.sock",
                        }
                    ],
                },
                "RestartPolicy": {"Condition": "none"},
                "Placement": {"Constraints": [f"node.id=={self.node_id}"]},
            },
            name=name,
            labels={LABEL_MANAGED: "true", LABEL_HELPER: "node-call"},
            mode={"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}},
        )
        try:
            self._wait_done(svc["ID"], f"{method} {path}", timeout)
            logs = b"".join(self.manager.service_logs(svc["ID"], stdout=True, stderr=True))
            return parse_result(logs)
        finally:
            try:
                self.manager.remove_service(svc["ID"])
            except NotFound:
                pass

    def _wait_done(self, service_id: str, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            tasks = self.manager.tasks(filters={"service": service_id})
            state = tasks[0]["Status"]["State"] if tasks else "new"
            if state == "complete":
                return
            if state in ("failed", "rejected", "shutdown", "orphaned"):
                err = tasks[0]["Status"].get("Err") or state
                raise APIError(f"{what} on node {self.node_id[:12]}: {err}")
            if time.monotonic() > deadline:
                raise APIError(f"{what} on node {self.node_id[:12]}: no answer in {timeout:.0f}s")
            time.sleep(POLL_SECONDS)

    def _json(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        status, data = self.request(method, path, body, **kw)
        if status >= 400:
            raise _error(status, data, f"{method} {path}")
        return json.loads(data) if data.strip() else None

    # -- the docker-py methods our features use --------------------------------------

    def inspect_volume(self, name: str) -> dict:
        return self._json("GET", f"/volumes/{quote(name, safe='')}")

    def volumes(self, filters: dict | None = None) -> dict:
        query = ""
        if filters:
            wrapped = {k: v if isinstance(v, list) else [v] for k, v in filters.items()}
            query = "?" + urlencode({"filters": json.dumps(wrapped)})
        return self._json("GET", f"/volumes{query}")

    def df(self, timeout: float = DEFAULT_TIMEOUT) -> dict:
        return self._json("GET", "/system/df", timeout=timeout)

    def remove_volume(self, name: str, force: bool = False) -> None:
        self._json("DELETE", f"/volumes/{quote(name, safe='')}?force={str(force).lower()}")

    def create_volume(
        self,
        name: str | None = None,
        driver: str | None = None,
        driver_opts: dict | None = None,
        labels: dict | None = None,
    ) -> dict:
        body = {"Name": name, "Driver": driver or "local", "DriverOpts": driver_opts or {}}
        if labels:
            body["Labels"] = labels
        return self._json("POST", "/volumes/create", body)

    def containers(self, all: bool = False, filters: dict | None = None, **_: Any) -> list:  # noqa: A002
        query = {"all": "1" if all else "0"}
        if filters:
            query["filters"] = json.dumps(
                {k: v if isinstance(v, list) else [v] for k, v in filters.items()}
            )
        return self._json("GET", f"/containers/json?{urlencode(query)}")

    def inspect_container(self, container: str) -> dict:
        return self._json("GET", f"/containers/{quote(container, safe='')}/json")

    def remove_container(self, container: str, v: bool = False, force: bool = False) -> None:
        q = urlencode({"v": str(v).lower(), "force": str(force).lower()})
        self._json("DELETE", f"/containers/{quote(container, safe='')}?{q}")

    def create_host_config(self, **kwargs: Any) -> dict:
        # pure: docker-py builds it for the manager's API version, which the nodes share
        return self.manager.create_host_config(**kwargs)

    def create_container(
        self, image: str, command: Any = None, name: str | None = None, **kwargs: Any
    ) -> dict:
        config = self.manager.create_container_config(image, command, **kwargs)
        path = "/containers/create" + (f"?name={quote(name, safe='')}" if name else "")
        return self._json("POST", path, dict(config))

    def start(self, container: str) -> None:
        self._json("POST", f"/containers/{quote(container, safe='')}/start")

    def wait(self, container: str, timeout: float | None = None) -> dict:
        # as long as the helper runs (a copy of a big volume): the job waits on the node
        return self._json(
            "POST", f"/containers/{quote(container, safe='')}/wait", timeout=timeout or 24 * 3600.0
        )

    def logs(self, container: str, stdout: bool = True, stderr: bool = True, **kw: Any) -> bytes:
        q = {"stdout": int(stdout), "stderr": int(stderr)}
        if kw.get("tail") is not None:
            q["tail"] = kw["tail"]
        status, data = self.request(
            "GET", f"/containers/{quote(container, safe='')}/logs?{urlencode(q)}"
        )
        if status >= 400:
            raise _error(status, data, "logs")
        return demux(data)

    def exec_create(self, container: str, cmd: list[str], user: str = "", **_: Any) -> dict:
        body = {"Cmd": cmd, "User": user, "AttachStdout": True, "AttachStderr": True}
        return self._json("POST", f"/containers/{quote(container, safe='')}/exec", body)

    def exec_start(self, exec_id: str, **_: Any) -> bytes:
        status, data = self.request(
            "POST", f"/exec/{exec_id}/start", {"Detach": False, "Tty": False}
        )
        if status >= 400:
            raise _error(status, data, "exec")
        return demux(data)

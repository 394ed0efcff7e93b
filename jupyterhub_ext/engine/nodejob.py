"""The Docker engine of one Swarm node, reached through one-off jobs on that node.

The hub talks to a manager, and a manager cannot inspect or remove a
worker's volumes, nor run a helper container there. :class:`NodeEngine`
offers the docker-py ``APIClient`` methods that volume reset and rename use
(``inspect_volume``, ``remove_volume``, ``containers``, ``create_container``,
``wait``, ...) and runs each one as a ``replicated-job`` pinned to the node:
the job mounts that node's Docker socket, makes the one API call with a few
lines of standard-library Python, and prints the answer in lines short enough
for Docker's log (``CHUNK``), which the hub reads from the job's logs and
reassembles; the job is removed afterwards. Its exited task container stays
on the node (Docker 20.10 keeps it after the service is removed): each job
first removes those of earlier jobs (``REAP_AFTER_SECONDS`` old). The feature code (the
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
from jupyterhub_ext.engine.labels import (
    LABEL_HELPER,
    LABEL_MANAGED,
    LABEL_NODE_HOSTNAME,
    LABEL_NODE_ID,
)

RESULT_MARK = "JHEXT-RESULT "
POLL_SECONDS = 0.05
DEFAULT_TIMEOUT = 120.0

# a result line stays well under the 16 KiB at which Docker splits log lines
CHUNK = 8000
# exited node-call containers older than this are removed by the next job on the
# node (a job's task container outlives its removed service); younger ones may
# still have their logs read by the hub
REAP_AFTER_SECONDS = 120

# Runs inside the job: one HTTP request on the node's Docker socket. It first
# removes the containers earlier jobs left; "select": "volumes" keeps of a
# /system/df answer only what the usage scan reads (the full one is large).
_SCRIPT = r"""
import base64, http.client, json, socket, sys, time, urllib.parse
req = json.loads(sys.argv[1])
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect("/var/run/docker.sock")
def call(method, path, body=None):
    conn = Unix("localhost", timeout=None)
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()
try:
    f = json.dumps({"label": [req["reap_label"]], "status": ["exited"]})
    st, old = call("GET", "/containers/json?all=1&filters=" + urllib.parse.quote(f))
    for c in json.loads(old) if st == 200 else []:
        if c.get("Created", 0) < time.time() - req["reap_after"]:
            call("DELETE", "/containers/" + c["Id"])
except Exception as e:
    print("reaping failed: " + str(e), file=sys.stderr)
if req.get("many"):
    # several GETs in one job (the usage scan's stats of a node's servers)
    res = []
    for path in req["many"]:
        st, body = call("GET", path)
        res.append([st, json.loads(body) if st == 200 else body.decode(errors="replace")])
    status, data = 200, json.dumps(res).encode()
else:
    status, data = call(req["method"], req["path"], req.get("body"))
if req.get("select") == "volumes" and status == 200:
    vols = json.loads(data).get("Volumes") or []
    keep = [{k: v.get(k) for k in ("Name", "Labels", "UsageData")} for v in vols]
    data = json.dumps({"Volumes": keep}).encode()
out = base64.b64encode(data).decode()
n = req["chunk"]
parts = [out[i:i + n] for i in range(0, len(out), n)] or [""]
for i, part in enumerate(parts):
    print("JHEXT-RESULT", status, i, len(parts), part, flush=True)
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
    """(HTTP status, body) from a job's output (``status index count chunk`` lines);
    ValueError when it is missing or incomplete."""
    status, count, chunks = None, None, {}
    for line in demux(logs).decode(errors="replace").splitlines():
        at = line.find(RESULT_MARK)
        if at < 0:
            continue
        fields = line[at + len(RESULT_MARK) :].split(" ", 3)
        if len(fields) < 3:
            continue
        status, index, count = int(fields[0]), int(fields[1]), int(fields[2])
        chunks[index] = fields[3].strip() if len(fields) > 3 else ""
    if count is None or status is None:
        raise ValueError("no result in the job's output")
    if len(chunks) != count or set(chunks) != set(range(count)):
        raise ValueError(f"the job's output is incomplete ({len(chunks)} of {count} parts)")
    return status, base64.b64decode("".join(chunks[i] for i in range(count)))


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

    def node_labels(self) -> dict[str, str]:
        """The labels that say a volume lives on this node (as the node's agent
        writes them on volumes it creates for a service mount)."""
        host = self.manager.inspect_node(self.node_id)["Description"]["Hostname"]
        return {LABEL_NODE_ID: self.node_id, LABEL_NODE_HOSTNAME: host}

    def __repr__(self) -> str:
        return f"NodeEngine(node={self.node_id[:12]})"

    # -- one call -----------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        select: str = "",
        many: list[str] | None = None,
    ) -> tuple[int, bytes]:
        """Make one Docker API request on the node; (status, body). ``many``: GET
        each of these paths instead, in the same job; the body is a JSON list of
        ``[status, answer]``."""
        req = json.dumps(
            {
                "method": method,
                "path": path,
                "body": body,
                "select": select,
                "many": many or [],
                "chunk": CHUNK,
                "reap_label": f"{LABEL_HELPER}=node-call",
                "reap_after": REAP_AFTER_SECONDS,
            }
        )
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
        """``docker system df``, of which only ``Volumes`` (name, labels, size) comes back:
        a node's full answer (every container and image) is too large for a job's log."""
        return self._json("GET", "/system/df", timeout=timeout, select="volumes")

    def container_usage(self, ids: list[str], timeout: float = DEFAULT_TIMEOUT) -> dict:
        """Container ID -> ``{"inspect": ..., "stats": ...}`` (one-shot ``docker stats``)
        for each of ``ids`` that answered, all in one job on the node."""
        paths = []
        for cid in ids:
            c = quote(cid, safe="")
            paths += [f"/containers/{c}/json", f"/containers/{c}/stats?stream=false&one-shot=true"]
        status, data = self.request("GET", "/_ping", timeout=timeout, many=paths)
        if status >= 400:
            raise _error(status, data, "container usage")
        answers = json.loads(data)
        out = {}
        for i, cid in enumerate(ids):
            (st_i, inspect), (st_s, stats) = answers[2 * i], answers[2 * i + 1]
            if st_i == 200 and st_s == 200:
                out[cid] = {"inspect": inspect, "stats": stats}
        return out

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

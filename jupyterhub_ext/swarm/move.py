"""Move a user's local volumes from their Swarm node to another: copy, verify, then remove.

For a node going away, or to balance users. The server must be stopped; the
caller holds the user's lock. Per volume of the set that lives on the node
(plain local volumes):

1. the source must be this user's (the one ownership rule), the target name
   free on the target node;
2. the target volume is created on the target node with the same labels;
3. two helper containers copy it: one on the source node serves a ``tar`` of
   the volume (read-only mount) on the node's network to the one holder of a
   random token, one on the target node receives and unpacks it (owners,
   modes, times, links);
4. ``treeverify`` describes both trees, each on its own node; they must be
   identical (checksums, modes, owners, links), or the copy is removed and
   the original kept.

Only when every volume is verified are the originals removed and the node in
the spawner's state changed. Copy and verify run within
``c.ExtSwarmSpawner.swarm_move_timeout``: past it the copies are removed and
the originals kept, as after any failure. Every Docker call goes through
:class:`jupyterhub_ext.engine.nodejob.NodeEngine` (a job on each node).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from jupyterhub_ext.engine import Mount, calls, ownership
from jupyterhub_ext.engine.errors import APIError, NotFound
from jupyterhub_ext.engine.labels import LABEL_HELPER, LABEL_NODE_HOSTNAME, LABEL_NODE_ID
from jupyterhub_ext.engine.nodejob import NodeEngine
from jupyterhub_ext.rename import treeverify
from jupyterhub_ext.rename.volcopy import VERIFY_SOURCE
from jupyterhub_ext.swarm import servicespec as S

PORT_RANGE = (20000, 40000)

# on the source node: serve one tar stream to the holder of the token
_SEND = r"""
import hmac, socket, subprocess, sys
token, port = sys.argv[1].encode(), int(sys.argv[2])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", port))
srv.listen(4)
srv.settimeout(300)
while True:
    conn, _ = srv.accept()
    conn.settimeout(30)
    got = b""
    while len(got) < len(token):
        part = conn.recv(len(token) - len(got))
        if not part:
            break
        got += part
    if hmac.compare_digest(got, token):
        break
    conn.close()
conn.settimeout(None)
# pax keeps nanosecond times and extended attributes; gnu format rounds times
cmd = ["tar", "-C", "/src", "--format=posix", "--xattrs", "--xattrs-include=*",
       "--numeric-owner", "-cpf", "-", "."]
tar = subprocess.Popen(cmd, stdout=subprocess.PIPE)
while True:
    chunk = tar.stdout.read(1 << 20)
    if not chunk:
        break
    conn.sendall(chunk)
conn.close()
sys.exit(tar.wait())
"""

# on the target node: fetch the stream and unpack it
_RECEIVE = r"""
import socket, subprocess, sys, time
token, host, port = sys.argv[1].encode(), sys.argv[2], int(sys.argv[3])
for _ in range(300):
    try:
        conn = socket.create_connection((host, port), timeout=5)
        break
    except OSError:
        time.sleep(0.2)
else:
    sys.exit("source not reachable at %s:%d" % (host, port))
conn.settimeout(None)
conn.sendall(token)
cmd = ["tar", "-C", "/dst", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", "-"]
tar = subprocess.Popen(cmd, stdin=subprocess.PIPE)
while True:
    chunk = conn.recv(1 << 20)
    if not chunk:
        break
    tar.stdin.write(chunk)
tar.stdin.close()
sys.exit(tar.wait())
"""


class MoveError(RuntimeError):
    """A move that cannot go ahead or did not verify; nothing of the user's is lost.

    ``kind``: ``invalid`` (the request: no such node, not a Swarm server),
    ``conflict`` (something in the way) or ``failed`` (a copy or its check).
    """

    def __init__(self, message: str, kind: str = "failed") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class MoveResult:
    source_node: str
    target_node: str
    volumes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"from": self.source_node, "to": self.target_node, "volumes": self.volumes}


async def _manifest(api: NodeEngine, image: str, volume: str, name: str) -> dict:
    result = await calls.run_helper(
        api,
        image=image,
        name=name,
        entrypoint=["python3", "-c", VERIFY_SOURCE],
        command=["manifest", "/v"],
        mounts=[Mount(target="/v", source=volume, type="volume", read_only=True, no_copy=True)],
        labels={LABEL_HELPER: "move-verify"},
    )
    if result.exit_code != 0:
        raise MoveError(f"describing {volume} failed: {result.output.strip()[-300:]}")
    return json.loads(result.output.strip().splitlines()[-1])


async def _copy(
    src: NodeEngine, dst: NodeEngine, source_addr: str, volume: str, image: str, prefix: str
) -> None:
    token = secrets.token_hex(16)
    port = PORT_RANGE[0] + secrets.randbelow(PORT_RANGE[1] - PORT_RANGE[0])
    send = calls.run_helper(
        src,
        image=image,
        name=f"{prefix}-move-send-{secrets.token_hex(3)}",
        entrypoint=["python3", "-c", _SEND],
        command=[token, str(port)],
        mounts=[Mount(target="/src", source=volume, type="volume", read_only=True, no_copy=True)],
        labels={LABEL_HELPER: "move-send"},
        network_mode="host",
    )
    receive = calls.run_helper(
        dst,
        image=image,
        name=f"{prefix}-move-receive-{secrets.token_hex(3)}",
        entrypoint=["python3", "-c", _RECEIVE],
        command=[token, source_addr, str(port)],
        mounts=[Mount(target="/dst", source=volume, type="volume", no_copy=True)],
        labels={LABEL_HELPER: "move-receive"},
        network_mode="host",
    )
    sent, received = await asyncio.gather(send, receive)
    for what, r in (("sending", sent), ("receiving", received)):
        if r.exit_code != 0:
            raise MoveError(
                f"{what} {volume} failed (exit {r.exit_code}): {r.output.strip()[-300:]}"
            )


async def move_volumes(spawner: Any, target_node: str) -> MoveResult:
    """Move ``spawner``'s local volumes to ``target_node`` (ID or hostname); see the module."""
    if not hasattr(spawner, "swarm_node_socket"):
        raise MoveError("only servers of ExtSwarmSpawner live on a Swarm node", "invalid")
    manager = spawner.client
    nodes = await calls.call(manager, "nodes")
    target = next((n for n in nodes if target_node in (n["ID"], S.node_name(n))), None)
    if target is None:
        raise MoveError(f"no node {target_node!r} in the swarm", "invalid")
    problem = S.node_problem(target)
    if problem:
        raise MoveError(f"cannot move to it: {problem}", "invalid")
    if not spawner.node_id:
        raise MoveError(
            "this server has never run: its volumes are made where it first starts", "conflict"
        )
    if target["ID"] == spawner.node_id:
        raise MoveError(f"the volumes are on {S.node_name(target)} already", "conflict")
    source = await calls.call(manager, "inspect_node", spawner.node_id)
    problem = S.node_problem(source)
    if problem:
        # the copy runs as jobs on the source node, and a drained or paused node
        # takes no task at all: retire a node by moving its users first
        raise MoveError(
            f"the volumes cannot be read: {problem}. The copy runs on that node: set it "
            "active while you move its users (docker node update --availability active), "
            "then drain it",
            "conflict",
        )
    src = spawner.volume_engine()
    dst = spawner.node_engine(target["ID"])
    result = MoveResult(S.node_name(source), S.node_name(target))
    limit = getattr(spawner, "swarm_move_timeout", 0)
    moved = await _copy_all(spawner, src, dst, source, target, limit)
    # every copy verified: only now the originals go (outside the deadline, so
    # a move never stops half-way through removing them)
    for volume in moved:
        await calls.call(src, "remove_volume", volume)
    result.volumes = moved
    spawner.node_id = target["ID"]
    return result


async def _copy_all(
    spawner: Any, src: NodeEngine, dst: NodeEngine, source: dict, target: dict, limit: float
) -> list[str]:
    """Copy and verify every local volume of the set, within ``limit`` seconds (0:
    none); on any failure or the deadline the copies are removed, the originals kept."""
    names = spawner.volume_names()
    moving = [(s, names[s.key]) for s in spawner.volume_specs if s.plain_local and s.per_user]
    created: list[str] = []  # volumes made on the target, verified or not
    moved: list[str] = []
    try:
        async with asyncio.timeout(limit or None) as within:
            for _spec, volume in moving:
                if await _move_one(spawner, src, dst, (source, target), volume, created):
                    moved.append(volume)
    except BaseException as e:
        for volume in created:  # the originals are untouched: drop the copies
            await _drop_copy(src, dst, volume)
        if isinstance(e, TimeoutError) and within.expired():
            raise MoveError(
                f"the move did not finish within {limit:g} s "
                "(c.ExtSwarmSpawner.swarm_move_timeout): the copies on the target node "
                f"were removed, the originals kept on {S.node_name(source)}",
                "timeout",
            ) from None
        raise
    return moved


async def _drop_copy(src: NodeEngine, dst: NodeEngine, volume: str, patience: float = 20) -> None:
    """Remove the copy of ``volume`` on the target, and the copy's helpers on both nodes.

    A move cut off by its deadline may leave a helper container behind: one
    whose create call was under way when the move was cancelled (the call
    completes in its thread). It holds the volume, so the removal is retried
    for a while, removing such helpers each time.
    """
    deadline = time.monotonic() + patience
    while True:
        for engine in (src, dst):
            held = await calls.call(engine, "containers", all=True, filters={"volume": volume})
            for c in held:
                if (c.get("Labels") or {}).get(LABEL_HELPER, "").startswith("move-"):
                    try:
                        await calls.call(engine, "remove_container", c["Id"], force=True)
                    except NotFound:
                        pass
        try:
            await calls.call(dst, "remove_volume", volume, force=True)
            return
        except NotFound:
            return
        except APIError as e:
            if e.status_code != 409 or time.monotonic() > deadline:
                raise
        await asyncio.sleep(1.0)


async def _move_one(
    spawner: Any, src: NodeEngine, dst: NodeEngine, nodes: tuple, volume: str, created: list
) -> bool:
    """Copy and verify one volume (its target name added to ``created`` before it is
    made); False when it does not exist (nothing to move). ``nodes``: the source
    and target node (inspected)."""
    source, target = nodes
    info = await calls.volume_or_none(src, volume)
    if info is None:
        return False
    why = ownership.volume_refusal(
        volume,
        info.get("Labels"),
        owner=spawner.owner(),
        scope="user",
        adopt_unlabelled=spawner.adopt_unlabelled,
    )
    if why:
        raise MoveError(why, "conflict")
    if await calls.volume_or_none(dst, volume) is not None:
        raise MoveError(f"a volume named {volume} already exists on the target node", "conflict")
    # the name was free: from here on a volume of that name there is our copy
    # (noted before the call, which a deadline may cut off after it has acted)
    created.append(volume)
    await calls.call(
        dst,
        "create_volume",
        name=volume,
        driver=info.get("Driver") or "local",
        # the same labels, but the node labels name the node the copy is on
        labels={
            **(info.get("Labels") or {}),
            LABEL_NODE_ID: target["ID"],
            LABEL_NODE_HOSTNAME: S.node_name(target),
        },
    )
    image = src.image
    await _copy(src, dst, S.node_address(source), volume, image, spawner.prefix)
    before = await _manifest(
        src, image, volume, f"{spawner.prefix}-move-check-{secrets.token_hex(3)}"
    )
    after = await _manifest(
        dst, image, volume, f"{spawner.prefix}-move-check-{secrets.token_hex(3)}"
    )
    diff = treeverify.compare(before, after)
    if not diff.get("identical"):
        raise MoveError(
            f"the copy of {volume} differs from the original; the original is kept: "
            + "; ".join(diff.get("differences", [])[:5])
        )
    return True

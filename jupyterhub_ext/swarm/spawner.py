"""ExtSwarmSpawner: each server a Docker Swarm service, with everything ExtDockerSpawner decides.

The container is built by ExtDockerSpawner's own code (volume sets, group
grants, GPU groups, profiles, the admin's ``extra_host_config``), then
translated into a service by :mod:`jupyterhub_ext.swarm.servicespec`. What
is Swarm's own:

- **Where data lives.** Plain local volumes exist on one node. The first
  start lets Swarm place the server; the node is kept in the spawner's state
  and later starts are constrained to it (the volumes carry it too, in
  labels the node fills in). With none recorded, the user's volumes are
  looked for on every node first. If it is down or drained, the
  start fails at once with a message naming it - never a fresh, empty home
  elsewhere. Volume sets whose entries all use a network driver are not
  pinned.
- **Volumes are created by the node** that runs the task, from the service
  mount's ``VolumeOptions`` (our owner labels, the entry's driver and
  options), not by the hub through the manager. Existing ones are checked
  against their owner labels on that node (a job there: before the service
  is created when the node is known, right after placement at a first
  start); those the node just made get the entry's owner/group/mode there.
- **GPUs** are generic resources (``NVIDIA-GPU``) nodes advertise; a GPU
  server reserves them and the scheduler hands it free ones. None free
  anywhere: the spawn fails with a message instead of a task pending forever.
- **What Swarm cannot do** (privileged, devices, device requests) is refused
  with a message, at hub start where the config says so and at spawn.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping
from typing import Any

from traitlets import Float, Unicode, default

from jupyterhub_ext.audit import audit
from jupyterhub_ext.engine import calls, ownership
from jupyterhub_ext.engine.errors import APIError, NotFound, explain
from jupyterhub_ext.engine.labels import (
    LABEL_CREATED_BY,
    LABEL_NODE_HOSTNAME,
    LABEL_NODE_ID,
    NODE_HOSTNAME_TEMPLATE,
    NODE_ID_TEMPLATE,
)
from jupyterhub_ext.engine.nodejob import NodeEngine
from jupyterhub_ext.spawner import hooks, hostconfig
from jupyterhub_ext.spawner.lifecycle import ExtDockerSpawner
from jupyterhub_ext.spawner.refused import SpawnRefused
from jupyterhub_ext.storage.mixin import NotOwnedError, StorageError
from jupyterhub_ext.swarm import servicespec as S

# environment our GPU decision sets for --gpus; on Swarm the runtime reads the
# scheduler's DOCKER_RESOURCE_* instead, and NVIDIA_VISIBLE_DEVICES=all would
# hand the server every GPU of its node
_GPU_ENV_DROPPED = ("NVIDIA_VISIBLE_DEVICES",)
POLL_SECONDS = 0.25
# nodes asked at once for a user's volumes when no node is recorded
NODE_LOOKUP_CONCURRENCY = 4
# the node of a user's data survives a rename (which clears spawner state)
hooks.persistent_state.add("swarm_node")


class ExtSwarmSpawner(ExtDockerSpawner):
    """ExtDockerSpawner's servers as Docker Swarm services (entry point ``ext-swarm``).

    Point ``c.DockerSpawner.client_kwargs`` / ``DOCKER_HOST`` at a manager
    node. See docs/deployment/swarm.md.
    """

    object_type = "service"
    object_id_key = "ID"

    swarm_network = Unicode(
        "",
        config=True,
        help="""Attachable overlay network the servers join.

        Set it when the hub runs on that network too (as a service of the
        stack): the hub then reaches each server by its service name
        (endpoint mode ``dnsrr``; this kernel-independent mode needs no
        routing mesh). Empty: the server's port is published on the node it
        runs on (``mode=host``) and the hub reaches it at the node's
        address. With ``network_name = "host"`` servers use the node's own
        network and a port the hub picks.
        """,
    )
    swarm_node_socket = Unicode(
        "/var/run/docker.sock",
        config=True,
        help="""Path of the Docker socket on each node (``{node}``: the node's
        hostname). The Docker calls the hub makes on a node run as one-off
        jobs there that use its socket (:mod:`jupyterhub_ext.engine.nodejob`):
        the ownership check of a pinned server's volumes before each start,
        the look-up of a user's volumes on every node when no node is
        recorded (a first start, a restored hub database),
        owner/group/mode of volumes the node creates, reset, rename, move,
        and the usage scan's volume sizes. The ``docker-sock`` group grant
        mounts it too.""",
    )
    swarm_move_timeout = Float(
        3600.0,
        min=0.0,
        config=True,
        help="""Seconds an admin's move of a user's volumes to another node
        (``POST /hub/api/users/{name}/move-volumes``) may take to copy and
        verify them. Past it the move fails (504, with a message), the copies
        on the target node are removed and the originals kept where they were;
        the user's next start goes to the old node. The request waits for the
        whole move: allow for the size of your users' volumes (a copy crosses
        the nodes' network, then both trees are read to verify it). 0: no
        limit.""",
    )
    swarm_gpu_resource = Unicode(
        S.DEFAULT_GPU_RESOURCE,
        config=True,
        help="""The generic resource nodes advertise GPUs as (dockerd's
        ``node-generic-resources``, e.g. ``["NVIDIA-GPU=GPU-0b1c..."]``). A
        GPU server reserves ``gpu_count`` of them; the scheduler picks free
        ones on a node that has them and passes their IDs to the container
        as ``DOCKER_RESOURCE_NVIDIA-GPU``.""",
    )

    @default("docker_privileged_group")
    def _no_privileged_group(self) -> str:
        # a service cannot be privileged: no group grants it by default
        return ""

    @default("gpu_count")
    def _one_gpu(self) -> int:
        # generic resources are counted: "all" has no meaning across nodes
        return 1

    @default("host_network_ip")
    def _all_addresses(self) -> str:
        # with network_name = "host" the server listens on its node, which the
        # hub reaches at the node's address (get_ip_and_port), not on loopback
        return "0.0.0.0"

    @default("pull_policy")
    def _nodes_pull(self) -> str:
        # each node gets the image itself (from the stack's registry)
        return "skip"

    @default("remove")
    def _services_are_removed(self) -> bool:
        return True

    # -- state: the node that holds this server's local volumes ----------------

    node_id: str = ""

    def get_state(self) -> dict:
        state = super().get_state()
        if self.node_id:
            state["swarm_node"] = self.node_id
        return state

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.node_id = state.get("swarm_node", "") or ""

    def clear_state(self) -> None:
        # the server is gone, its data is not: keep the node
        node = self.node_id
        super().clear_state()
        self.node_id = node

    def volume_engine(self) -> Any:
        """The engine of the node that holds this server's volumes (a job per call)."""
        node = self.volume_node()
        return self.node_engine(node) if node else self.client

    def volume_node(self) -> str:
        """The ID of the node that holds this server's local volumes ("": none yet, or
        only network volumes)."""
        return self.node_id if (self.node_id and self.pinned()) else ""

    def node_engine(self, node_id: str, manager: Any = None) -> NodeEngine:
        """Docker calls on ``node_id``, one job each, through ``manager`` (default:
        the spawner's client; the usage scan passes its own)."""
        return NodeEngine(
            manager if manager is not None else self.client,
            node_id,
            image=self.helper_image or self.image,
            socket_path=self.swarm_node_socket,
            name_prefix=f"{self.prefix}-node-call",
        )

    def pinned(self) -> bool:
        """Whether this server's data lives on one node (any plain local volume)."""
        return any(spec.plain_local for spec in self.volume_specs)

    async def node_constraints(self) -> list[str]:
        """Placement constraints: the node of the user's data, checked to be up."""
        if not (self.node_id and self.pinned()):
            return []
        try:
            node = await self.docker("inspect_node", self.node_id)
        except NotFound:
            self._refuse_node(
                f"the node that holds your files ({self.node_id[:12]}) left the swarm"
            )
        problem = S.node_problem(node)
        if problem:
            self._refuse_node(problem)
        self._node_name = S.node_name(node)
        return [f"node.id=={self.node_id}"]

    _node_name = ""

    def volumes_to_check(self) -> dict[str, str | None]:
        """Docker name -> scope of every named volume the server mounts (None: the
        admin's own ``volumes``, checked as on one host)."""
        names = self.volume_names()
        wanted: dict[str, str | None] = {names[s.key]: s.scope for s in self.volume_specs}
        for source in hostconfig.named_volume_sources(self.volume_binds):
            wanted.setdefault(source, None)
        return wanted

    async def check_node_volumes(self) -> None:
        """Refuse the start when a volume that exists on the pinned node is not this user's.

        Swarm mounts an existing volume of the mount's name as it is (its
        ``VolumeOptions`` only apply to a volume the node creates), so whoever
        holds a Docker socket on that node could hand this user a volume of
        their own. One job on the node lists all the set's volumes at once
        (the name filter matches parts of names: exact names are kept here)
        and each is checked by the one ownership rule, as on one host. Called
        after the node is known to be up, before the service is created. At
        the first start there is no node to ask yet: :meth:`settle_volumes`
        checks on the node Swarm picked.
        """
        self._missing: set[str] = set()
        if not self.volume_node():
            return
        wanted = self.volumes_to_check()
        found = await self._node_volumes(wanted)
        for name, scope in wanted.items():
            if name not in found:
                self._missing.add(name)  # the node creates it, with our labels
                continue
            why = self.volume_refusal(name, found[name].get("Labels"), scope)
            if why:
                node = self._node_name or self.node_id
                self._refuse_volume(f"on node {node}, {why}", name)

    # names the pinned node did not have before this start (it creates them)
    _missing: frozenset[str] | set[str] = frozenset()
    _start_token = ""

    async def _node_volumes(self, wanted: Mapping[str, Any]) -> dict[str, dict]:
        """The volumes among ``wanted`` on the node of this server's data (one job)."""
        t0 = time.monotonic()
        listing = await calls.call(self.volume_engine(), "volumes", filters={"name": list(wanted)})
        # the name filter matches parts of names: keep the exact ones
        found = {v.get("Name"): v for v in (listing or {}).get("Volumes") or []}
        self.log.info(
            "Checked %d volume(s) of %s on node %s in %.2fs",
            len(wanted),
            self._log_name,
            self._node_name or self.node_id[:12],
            time.monotonic() - t0,
        )
        return {name: found[name] for name in wanted if name in found}

    async def settle_volumes(self, first_start: bool) -> None:
        """Right after the task runs on its node: what only that node can tell.

        - Volumes the node created for this start (they carry this start's
          token in their labels) get the entry's owner, group and mode
          (storage/volperms.py, through jobs on the node), as on one host.
        - At the first start (no node was known before), volumes that were
          already on the node Swarm picked are checked by the ownership rule;
          a refusal removes the service before the hub hands it to anyone.

        One job lists the volumes; it runs only at a first start, or when the
        node was to create a volume that needs permissions.
        """
        names = self.volume_names()
        perms = {names[s.key]: s for s in self.volume_specs if s.permissions() is not None}
        if not self.volume_node() or not (first_start or self._missing & perms.keys()):
            return
        if not self._node_name:
            self._node_name = S.node_name(await self.docker("inspect_node", self.node_id))
        wanted = self.volumes_to_check()
        found = await self._node_volumes(wanted)
        mine = {
            name
            for name, vol in found.items()
            if (vol.get("Labels") or {}).get(LABEL_CREATED_BY) == self._start_token
        }
        if first_start:
            for name in found.keys() - mine:
                why = self.volume_refusal(name, found[name].get("Labels"), wanted[name])
                if why:
                    await self.remove_object()
                    # none of this user's data is there: the next start is placed anew
                    node = self._node_name or self.node_id
                    self.node_id = self._node_name = ""
                    self._refuse_mounted_volume(why, name, node)
        for name in sorted(mine & perms.keys()):
            spec = perms[name]
            try:
                await self._set_volume_permissions(
                    spec, name, *spec.permissions(), engine=self.volume_engine()
                )
            except StorageError:
                await self.remove_object()
                raise

    def _refuse_mounted_volume(self, why: str, name: str, node: str) -> None:
        self.log.error("Refused volume for %s on node %s: %s", self._log_name, node, why)
        audit(self._requester(), "mount-volume", self._log_name, "refused", volume=name, reason=why)
        raise NotOwnedError(
            f"Cannot start: on node {node}, {why}. The server was stopped before anyone "
            "could reach it. " + ownership.ADMIN_HINT.format(name=name)
        )

    async def find_data_node(self) -> None:
        """No node recorded (a first start, or state lost: the hub's database
        restored, state cleared): look for this user's volumes on every node.

        Found on one node: the start is pinned there, so Swarm cannot place
        the server beside a fresh, empty home. On more than one: refused,
        naming them (an administrator decides which is the user's). One job
        per usable node, ``NODE_LOOKUP_CONCURRENCY`` at a time; nodes down or
        drained cannot run one and are named in the log.
        """
        if self.node_id or not self.pinned():
            return
        t0 = time.monotonic()
        names = self.volume_names()
        wanted = {names[s.key]: s.scope for s in self.volume_specs if s.plain_local and s.per_user}
        nodes = await self.docker("nodes")
        usable = [n for n in nodes if not S.node_problem(n)]
        limit = asyncio.Semaphore(NODE_LOOKUP_CONCURRENCY)

        async def mine_on(node: Mapping[str, Any]) -> list[str]:
            async with limit:
                engine = self.node_engine(node["ID"])
                listing = await calls.call(engine, "volumes", filters={"name": list(wanted)})
            vols = (listing or {}).get("Volumes") or []
            return [
                v["Name"]
                for v in vols
                if v.get("Name") in wanted
                and not self.volume_refusal(v["Name"], v.get("Labels"), wanted[v["Name"]])
            ]

        found = await asyncio.gather(*(mine_on(n) for n in usable))
        holders = {S.node_name(n): n["ID"] for n, vols in zip(usable, found, strict=True) if vols}
        unasked = [S.node_problem(n) for n in nodes if S.node_problem(n)]
        self.log.info(
            "Looked for the volumes of %s on %d node(s) in %.2fs: %s%s",
            self._log_name,
            len(usable),
            time.monotonic() - t0,
            ", ".join(sorted(holders)) or "none found",
            f" (not asked: {'; '.join(unasked)})" if unasked else "",
        )
        if len(holders) > 1:
            self._refuse_start(
                "Cannot start: volumes of yours exist on more than one node of the "
                f"cluster ({', '.join(sorted(holders))}), and the hub has no record of "
                "which holds your files, so it will not pick one. Ask an administrator "
                "to remove the copies that are not yours to keep.",
                "node-ambiguous",
            )
        if holders:
            self.node_id = next(iter(holders.values()))

    def _refuse_node(self, problem: str) -> None:
        self._refuse_start(
            f"Cannot start: your files are on one node of the cluster, and {problem}. "
            "Starting elsewhere would give you an empty home. Try again when the node "
            "is back, or ask an administrator to move your volumes to another node.",
            "node-unavailable",
        )

    def _refuse_start(self, message: str, reason: str) -> None:
        audit(self._requester(), "spawn", self._log_name, "refused", reason=message)
        raise SpawnRefused(message, reason=reason, status_code=503)

    # -- what the node does instead of the hub -----------------------------------

    async def ensure_volumes(self) -> None:
        """Only the quota refusal: the node that runs the task creates the volumes.

        The service's volume mounts carry our owner labels and the entry's
        driver options (``VolumeOptions``); the hub talks to a manager, which
        cannot create volumes on other nodes. Existing volumes on the pinned
        node are checked by :meth:`check_node_volumes` once the node is known
        to be up. Sizes come from the usage scan, which measures every node
        that holds volumes.
        """
        for spec in self.volume_specs:
            if spec.on_hard_limit == "refuse":
                self._check_quota(spec)

    async def drop_container_with_other_grants(self) -> None:
        """Services are made anew at every start (``remove`` is always on)."""

    async def volume_options(self) -> dict[str, dict[str, Any]]:
        """``VolumeOptions`` of each volume of the set, by Docker name.

        Secret driver options (``${env:...}``, ``${file:...}``) are resolved
        here, as for a volume the hub creates; the service spec then holds
        them, readable by whoever may inspect services (Docker admins).
        """
        names = self.volume_names()
        out = {}
        for spec in self.volume_specs:
            opts, _secrets = await self._resolved_opts(spec)
            # this start's token: settle_volumes tells the volumes the node made now
            labels = {**self.labels_for(spec), LABEL_CREATED_BY: self._start_token}
            if spec.plain_local:
                # Swarm's templates: the node's agent writes its own ID and name
                labels[LABEL_NODE_ID] = NODE_ID_TEMPLATE
                labels[LABEL_NODE_HOSTNAME] = NODE_HOSTNAME_TEMPLATE
            out[names[spec.key]] = S.volume_options(labels, spec.driver, opts)
        return out

    # -- GPUs: generic resources, not device requests -------------------------------

    async def host_config_fragments(self) -> list[Mapping[str, Any]]:
        frags = await super().host_config_fragments()
        return [{k: v for k, v in f.items() if k != "device_requests"} for f in frags]

    async def extra_environment(self) -> dict[str, str]:
        # "void" (no GPU) stays: a CUDA image's own NVIDIA_VISIBLE_DEVICES=all
        # would otherwise show a CPU-only server every GPU of a GPU node
        env = await super().extra_environment()
        return {k: v for k, v in env.items() if k not in _GPU_ENV_DROPPED or v == "void"}

    async def gpu_report(self) -> Any:
        """GPU auto-detection on Swarm: what the nodes advertise as generic resources."""
        from jupyterhub_ext import gpu

        nodes = await self.docker("nodes")
        counts = S.gpu_count_of_nodes(nodes, self.swarm_gpu_resource)
        detail = ", ".join(f"{n}: {c}" for n, c in sorted(counts.items())) or "no node has GPUs"
        return gpu.EngineGpuReport(bool(counts), via="swarm", detail=detail, source="swarm-nodes")

    def gpu_reservation(self) -> int:
        plan = self._spawn_grants
        if plan is None or not plan.gpu.enabled or plan.gpu.request is None:
            return 0
        count = plan.gpu.request.count
        if count < 0:
            raise SpawnRefused(
                'gpu_count "all" cannot be reserved on Docker Swarm: set a number '
                "(c.ExtSwarmSpawner.gpu_count = 1).",
                reason="swarm-unsupported",
            )
        return max(1, count)

    # -- the service ----------------------------------------------------------------

    def object_labels(self, obj: Mapping[str, Any]) -> Mapping[str, str] | None:
        return (obj.get("Spec") or {}).get("Labels")

    def endpoint(self) -> str:
        return "host-port" if not (self.swarm_network or self.host_network) else "dnsrr"

    async def create_object(self) -> dict:
        # a start cancelled during the create removes the service it made
        return await self.create_supervised(self._create_service())

    async def _create_service(self) -> dict:
        kwargs = await self.container_create_kwargs()
        await self.find_data_node()
        constraints = await self.node_constraints()
        await self.check_node_volumes()
        self._first_start = not self.volume_node()
        self._start_token = secrets.token_hex(8)
        try:
            spec = S.service_create_kwargs(
                kwargs,
                name=self.object_name,
                service_labels=kwargs.get("labels") or {},
                volume_options=await self.volume_options(),
                network=self.swarm_network,
                port=self.port,
                endpoint=self.endpoint(),
                constraints=constraints,
                gpus=self.gpu_reservation(),
                gpu_resource=self.swarm_gpu_resource,
            )
        except S.SwarmSpecError as e:
            audit(self._requester(), "spawn", self._log_name, "refused", reason=str(e))
            raise SpawnRefused(str(e), reason="swarm-unsupported") from e
        self.log.debug("Creating service %s: %s", self.object_name, spec)
        return await self.docker("create_service", **spec)

    _first_start = False

    async def tasks(self) -> list[dict]:
        return await self.docker("tasks", filters={"service": self.object_name})

    async def current_task(self) -> dict | None:
        """The service's newest task (a service of ours never has more than one running)."""
        try:
            found = await self.tasks()
        except NotFound:
            return None
        return max(found, key=lambda t: t.get("CreatedAt", ""), default=None)

    async def start_object(self) -> None:
        """Wait for the task to run; fail at once when the scheduler cannot place it."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            task = await self.current_task()
            if task is not None:
                state, err = S.task_state(task)
                if state == "running":
                    self.node_id = task.get("NodeID") or self.node_id
                    await self.settle_volumes(self._first_start)
                    return
                if state in S.FINAL:
                    raise RuntimeError(f"service {self.object_name}: task {state}: {err}")
                reason = S.pending_reason(task)
                if reason:
                    await self._refuse_unplaceable(reason)
            if time.monotonic() > deadline:
                raise TimeoutError(f"service {self.object_name} not running after start_timeout")
            await asyncio.sleep(POLL_SECONDS)

    async def _refuse_unplaceable(self, reason: str) -> None:
        await self.remove_object()
        gpus = self.gpu_reservation()
        if gpus:
            message = (
                f"No node of the cluster has {gpus} free GPU(s) now "
                f"({self.swarm_gpu_resource}): all are in use. Try again later, "
                "or start a server without GPUs."
            )
            why = "gpu-unavailable"
        else:
            message = f"No node of the cluster can run this server now: {reason}"
            why = "node-unavailable"
        audit(self._requester(), "spawn", self._log_name, "refused", reason=message)
        raise SpawnRefused(message, reason=why, status_code=503)

    async def poll(self) -> int | str | None:
        if not self.object_id:
            return 0
        task = await self.current_task()
        if task is None:
            return 0
        state, err = S.task_state(task)
        if state == "running" or state in S.WAITING:
            return None
        return f"task {state}: {err}" if err else 0

    async def server_exit_reason(self) -> str | None:
        task = await self.current_task()
        if task is None:
            return f"service {self.object_name} is gone"
        state, err = S.task_state(task)
        if state == "running" or state in S.WAITING:
            return None
        return f"service {self.object_name}: task {state} before its server answered: {err}"

    async def stop_object(self) -> None:
        """A service has no stop: removing it stops its task."""

    async def remove_object(self) -> None:
        """Stop the task, wait until its container is gone, then remove the service.

        Removing a service returns before its container has stopped; a reset
        or rename right after "stopped" would find the volumes still in use.
        """
        sid = self.object_id or self.object_name
        try:
            spec = await self.docker("inspect_service", sid)
            await self.docker(
                "update_service",
                sid,
                version=spec["Version"]["Index"],
                mode={"Replicated": {"Replicas": 0}},
                fetch_current_spec=True,
            )
            await self._wait_tasks_gone(sid)
            await self.docker("remove_service", sid)
        except NotFound:
            pass
        except APIError as e:
            self.log.warning("Removing service %s: %s", self.object_name, explain(e))
            raise

    async def _wait_tasks_gone(self, sid: str, patience: float = 60.0) -> None:
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            tasks = await self.docker("tasks", filters={"service": sid})
            if all(S.task_state(t)[0] in S.FINAL for t in tasks):
                return
            await asyncio.sleep(POLL_SECONDS)
        self.log.warning("Task of %s still running after %.0fs; removing it", sid, patience)

    @property
    def internal_hostname(self) -> str:
        return self.object_name

    async def get_ip_and_port(self) -> tuple[str, int]:
        if self.swarm_network and not self.host_network:
            return self.object_name, self.port
        task = await self.current_task()
        if task is None:
            raise RuntimeError(f"service {self.object_name} has no task")
        node = await self.docker("inspect_node", task["NodeID"])
        address = S.node_address(node)
        if self.host_network:
            return address, self.port
        port = S.published_port(task, self.port)
        if port is None:
            raise RuntimeError(f"service {self.object_name}: port {self.port} not published")
        return address, port


__all__ = ["ExtSwarmSpawner"]

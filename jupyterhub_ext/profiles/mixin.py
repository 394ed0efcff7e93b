"""The spawner side of profiles: traits, the spawn form, GPU placement, admission, state.

ExtDockerSpawner mixes this in; the pure decisions are in :mod:`jupyterhub_ext.profiles.rules`.

GPU placement: which devices are held is read from Docker itself (the
``jupyterhub-ext.gpu-devices`` label of live containers), so it survives a hub
restart or crash. The read, the choice and the container's creation happen
under one asyncio lock per engine, so two spawns of *this hub process* never
get the same GPU; the lock is held until the create call has returned, even
when the start is cancelled meanwhile (``spawner.lifecycle.create_object``).
Two hub processes on one engine are not coordinated.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import html
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from traitlets import Dict, HasTraits, Int, List, TraitError, Unicode, Union, default, validate

from jupyterhub_ext import gpu
from jupyterhub_ext.audit import audit
from jupyterhub_ext.engine import dockerpool
from jupyterhub_ext.engine.errors import ImageNotFound
from jupyterhub_ext.engine.labels import (
    LABEL_GPU_DEVICES,
    LABEL_MANAGED,
    LABEL_MEM_GUARANTEE,
    LABEL_PROFILE,
)
from jupyterhub_ext.profiles import rules as P
from jupyterhub_ext.spawner import grants

_placement_locks: dict[str, asyncio.Lock] = {}
_engine_memory: dict[str, tuple[float, int]] = {}
MEMORY_CACHE_SECONDS = 60.0


def placement_lock(engine: str) -> asyncio.Lock:
    """One lock per engine in this hub process (GPU and memory decisions + create)."""
    lock = _placement_locks.get(engine)
    if lock is None:
        lock = _placement_locks[engine] = asyncio.Lock()
    return lock


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # values without a usable ==
        return a is b


class ProfilesMixin(HasTraits):
    """Profiles, a free GPU per GPU server, and the memory admission check."""

    profiles = List(
        Dict(),
        help="""
        Spawn profiles users choose from on the spawn page (or with
        ``{"profile": "<slug>"}`` in the REST API's ``user_options``). A list of dicts:

        - ``slug`` (required): lower-case id; ``display_name``, ``description``: shown.
        - ``image``, ``mem_limit``, ``mem_guarantee`` (``"4G"``, bytes), ``cpu_limit``:
          what the server gets (unset: the spawner's own setting).
          ``mem_guarantee`` becomes the container's memory reservation and is what
          the admission check counts.
        - ``gpus``: ``0`` (default), a number of whole GPUs, or ``"all"``. With
          ``gpu_devices`` each GPU server gets free devices of its own. On
          Swarm a number of GPUs the scheduler reserves on one node.
        - ``environment``: extra environment variables.
        - ``groups``: hub groups whose members may choose it (empty: everyone).
        - ``default: True``: preselected, and what a start without a choice gets
          (an admin starting someone's server gets *that user's* default).
          Without one, the first profile the user may choose.

        Checked at hub start (unknown key, two defaults, bad sizes or GPU
        counts, an image missing on the engine stop the hub with a message
        naming the entry). Empty (default): no profiles, no form.
        """,
    ).tag(config=True)

    gpu_devices = List(
        Unicode(),
        help="""
        The host's GPUs (indexes like ``"0"`` or UUIDs like ``"GPU-3a23..."``).
        When set, each GPU server is given the least-loaded free devices by ID,
        read from the labels of the running containers (so a hub restart keeps
        the allocation). Empty (default): the devices the engine lists as CDI
        devices (Docker 28.2+), else no allocation (``gpu_count`` as before).
        One host only: on Swarm the scheduler allocates GPUs, and a Swarm hub
        with this set does not start.
        """,
    ).tag(config=True)

    gpu_sharing = Int(
        1,
        min=1,
        help="""
        How many servers may share one GPU of ``gpu_devices``. 1 (default):
        each GPU server gets GPUs of its own and a spawn with none free is
        refused at once; N: up to N servers per GPU, least-loaded first.
        One host only (a Swarm hub with N > 1 does not start).
        """,
    ).tag(config=True)

    admission_memory_reserve = Union(
        [Int(), Unicode()],
        default_value=None,
        allow_none=True,
        help="""
        Memory of the Docker host kept back for the system (``"2G"``, bytes).
        When set, a spawn is refused, with the numbers, if the
        ``mem_guarantee`` of the running servers plus the new one would exceed
        the engine's memory less this reserve. ``None`` (default): no check.
        One engine only: on Swarm the scheduler admits servers by their memory
        reservation on each node, and a Swarm hub with this set does not start.
        """,
    ).tag(config=True)

    @validate("profiles")
    def _validate_profiles(self, proposal: Any) -> Any:
        try:
            P.parse_profiles(proposal.value)
        except P.ProfileError as e:
            raise TraitError(str(e)) from None
        return proposal.value

    @validate("admission_memory_reserve")
    def _validate_reserve(self, proposal: Any) -> Any:
        try:
            P.parse_mem(proposal.value, where="admission_memory_reserve")
        except P.ProfileError as e:
            raise TraitError(str(e)) from None
        return proposal.value

    _profile: P.Profile | None = None
    # trait -> (value before the profile, value the profile set): undone at the next spawn
    _profile_undo: dict[str, tuple[Any, Any]] = {}  # noqa: RUF012 (replaced, never mutated)
    _gpu_held: tuple[str, ...] = ()
    _placement_ms: float | None = None

    @property
    def parsed_profiles(self) -> list[P.Profile]:
        return P.parse_profiles(self.profiles)

    def user_groups_now(self) -> set[str]:
        return grants.user_group_names(self.user.db, self.user.id)

    # -- choosing ------------------------------------------------------------------

    def choose_profile(self, user_options: Mapping[str, Any] | None) -> P.Profile | None:
        """The profile of this spawn from ``user_options`` and the owner's groups.

        Raises ProfileChoiceError (403 / 400). None when no profiles are configured.
        """
        if not self.profiles:
            return None
        opts = dict(user_options or {})
        extra = sorted(k for k in opts if k != "profile" and not self._option_handled(k))
        if extra:
            raise P.ProfileChoiceError(
                403,
                f"Server options may not set {', '.join(extra)}: choose a profile "
                f'({{"profile": "<slug>"}}); what each gives is set by the administrator.',
            )
        return P.choose(self.parsed_profiles, self.user_groups_now(), opts.get("profile"))

    def _option_handled(self, key: str) -> bool:
        # an admin's own apply_user_options still sees its keys (the allow-list guards it)
        hook = self.apply_user_options
        if isinstance(hook, Mapping):
            return key in hook
        return callable(hook)

    def apply_profile(self, profile: P.Profile | None) -> None:
        """Set the profile's image, limits and environment on top of the admin's settings.

        What the previous spawn's profile set is undone first, unless something
        else (``group_overrides``, applied before this) has set that trait since:
        a profile sits on top of the config and the group overrides of this spawn.
        """
        for name, (before, ours) in self._profile_undo.items():
            if _same(getattr(self, name), ours):
                setattr(self, name, before)
        self._profile_undo = {}
        self._profile = profile
        if profile is None:
            return
        if profile.image:
            self._set_for_profile("image", profile.image)
        if profile.mem_limit is not None:
            self._set_for_profile("mem_limit", profile.mem_limit)
        if profile.mem_guarantee is not None:
            self._set_for_profile("mem_guarantee", profile.mem_guarantee)
        if profile.cpu_limit is not None:
            self._set_for_profile("cpu_limit", profile.cpu_limit)
        if profile.environment:
            self._set_for_profile("environment", {**self.environment, **profile.environment})

    def _set_for_profile(self, name: str, value: Any) -> None:
        before = copy.deepcopy(getattr(self, name))
        setattr(self, name, value)
        self._profile_undo[name] = (before, copy.deepcopy(getattr(self, name)))

    def profile_gpu_decision(self, decision: gpu.GpuDecision, mode: str) -> gpu.GpuDecision:
        """The profile's ``gpus`` on top of the group decision (``gpu_mode = off`` wins)."""
        p = self._profile
        if p is None or mode == "off":
            return decision
        if not p.needs_gpu:
            return gpu.GpuDecision(False, f"profile {p.slug!r} has no GPUs")
        return decision

    def profile_gpu_request(self, request: gpu.GpuRequest) -> tuple[gpu.GpuRequest, bool]:
        """(request, forced on): a GPU profile asks for its count, as if gpu_mode were on."""
        p = self._profile
        if p is None or not p.needs_gpu:
            return request, False
        count = -1 if p.gpus == "all" else int(p.gpus)
        return dataclasses.replace(request, count=count, device_ids=()), True

    # -- the spawn form ------------------------------------------------------------

    async def get_options_form(self) -> str:
        if not self.profiles:
            return await super().get_options_form()  # type: ignore[misc]
        return self.render_profiles_form(self.user_groups_now())

    def render_profiles_form(self, user_groups: set[str]) -> str:
        """Cards with a radio button each: a plain HTML form, no JavaScript needed."""
        mine = P.allowed(self.parsed_profiles, user_groups)
        if not mine:
            return (
                '<div class="alert alert-warning" role="alert">No server profile is open '
                "to you; ask an administrator to add you to a group that has one.</div>"
            )
        previous = (self.user_options or {}).get("profile")
        chosen = next((p for p in mine if p.slug == previous), None) or P.default_for(
            mine, user_groups
        )
        e = html.escape
        cards = []
        for p in mine:
            pid = f"jhext-profile-{p.slug}"
            facts = [f"<li>Image: <code>{e(p.image or self.image)}</code></li>"]
            facts += [f"<li>{e(r)}</li>" for r in p.resources()]
            cards.append(
                f"""
  <div class="col">
    <div class="card h-100 jhext-profile" data-slug="{e(p.slug)}">
      <div class="card-body">
        <div class="form-check">
          <input class="form-check-input" type="radio" name="profile" id="{pid}"
                 value="{e(p.slug)}" aria-describedby="{pid}-desc"
                 {"checked" if p is chosen else ""} required>
          <label class="form-check-label fw-semibold stretched-link" for="{pid}">{
                    e(p.display_name)
                }</label>
        </div>
        <div id="{pid}-desc">
          <p class="card-text mb-1">{e(p.description)}</p>
          <ul class="small text-body-secondary mb-0">{"".join(facts)}</ul>
        </div>
      </div>
    </div>
  </div>"""
            )
        return f"""
<style>
  .jhext-profile:has(input:checked) {{ border-color: var(--bs-primary); border-width: 2px; }}
</style>
<fieldset class="jhext-profiles mb-3">
  <legend class="fs-5">Choose a server profile</legend>
  <div class="row row-cols-1 row-cols-md-2 g-3">{"".join(cards)}
  </div>
</fieldset>
"""

    @default("options_from_form")
    def _profiles_options_from_form(self) -> Any:
        fallback = super()._default_options_from_form()  # type: ignore[misc]

        def options_from_form(formdata: dict) -> dict:
            if not self.profiles:
                return fallback(formdata)
            value = (formdata.get("profile") or [""])[0]
            # only the slug: nothing else in a form reaches user_options
            return {"profile": value} if value else {}

        return options_from_form

    # -- placement: GPUs and memory ---------------------------------------------------

    def placement_devices(self, decision: gpu.GpuDecision) -> list[str]:
        """The GPUs to allocate from: ``gpu_devices``, else the engine's CDI GPU devices."""
        if self.gpu_devices:
            return list(self.gpu_devices)
        report = decision.report
        if report is not None and report.via == gpu.VIA_CDI:
            return [d for d in report.cdi_devices if d.split("=", 1)[0] in gpu.CDI_GPU_KINDS]
        return []

    def mem_guarantee_bytes(self) -> int | None:
        try:
            return P.parse_mem(self.mem_guarantee)
        except P.ProfileError:
            return None

    async def engine_memory(self, engine: str) -> int:
        now = time.monotonic()
        hit = _engine_memory.get(engine)
        if hit and now - hit[0] < MEMORY_CACHE_SECONDS:
            return hit[1]
        info = await self.docker("info")  # type: ignore[attr-defined]
        total = int(info.get("MemTotal") or 0)
        _engine_memory[engine] = (now, total)
        return total

    @contextlib.asynccontextmanager
    async def placement(self) -> AsyncIterator[None]:
        """Decide GPUs and check memory, then create the container, under one lock.

        The container carries its GPUs and guarantee as labels, so the next
        decision (even after a hub restart) sees them.
        """
        plan = await self.spawn_grants()  # type: ignore[attr-defined]
        decision = plan.gpu
        devices = self.placement_devices(decision) if decision.enabled else []
        allocate = bool(devices) and decision.request is not None
        allocate = allocate and not decision.request.device_ids
        guarantee = self.mem_guarantee_bytes()
        reserve = P.parse_mem(self.admission_memory_reserve)
        check_mem = reserve is not None and bool(guarantee)
        self._gpu_held = ()
        if not (allocate or check_mem):
            yield
            return
        client = await self.docker_client()  # type: ignore[attr-defined]
        engine = gpu.engine_key(client)
        async with placement_lock(engine):
            t0 = time.perf_counter()
            found = await self.docker(  # type: ignore[attr-defined]
                "containers", all=True, filters={"label": LABEL_MANAGED}
            )
            labels = P.live_labels(found, self.object_name)  # type: ignore[attr-defined]
            if allocate:
                load = P.device_load(labels)
                req = decision.request
                wanted: int | str = "all" if req.count < 0 else req.count
                picked = P.pick_devices(devices, load, wanted, self.gpu_sharing)
                if picked is None:
                    others = [p for p in self.visible_profiles() if not p.needs_gpu]
                    message = P.no_gpu_message(wanted, devices, load, self.gpu_sharing, others)
                    self._refuse_placement(message, "no-free-gpu")
                self._gpu_held = tuple(picked)
                new_req = dataclasses.replace(req, device_ids=tuple(picked), count=0)
                self._spawn_grants = dataclasses.replace(  # type: ignore[attr-defined]
                    plan, gpu=dataclasses.replace(decision, request=new_req)
                )
            if check_mem:
                total = await self.engine_memory(engine)
                held = [
                    int(lab[LABEL_MEM_GUARANTEE])
                    for lab in labels
                    if str(lab.get(LABEL_MEM_GUARANTEE, "")).isdigit()
                ]
                why = P.admission_refusal(total, reserve, held, guarantee)
                if why:
                    self._refuse_placement(why, "no-memory")
            self._placement_ms = (time.perf_counter() - t0) * 1000
            self.log.info(  # type: ignore[attr-defined]
                "Placement for %s: GPUs %s, decided in %.1f ms",
                self._log_name,  # type: ignore[attr-defined]
                ",".join(self._gpu_held) or "-",
                self._placement_ms,
            )
            yield

    def _refuse_placement(self, message: str, reason: str) -> None:
        from jupyterhub_ext.spawner.refused import SpawnRefused

        audit(self._requester(), "spawn", self._log_name, "refused", reason=message)  # type: ignore[attr-defined]
        raise SpawnRefused(message, reason=reason, status_code=503)

    def visible_profiles(self) -> list[P.Profile]:
        return P.allowed(self.parsed_profiles, self.user_groups_now())

    def profile_labels(self) -> dict[str, str]:
        labels: dict[str, str] = {}
        if self._profile is not None:
            labels[LABEL_PROFILE] = self._profile.slug
        if self._gpu_held:
            labels[LABEL_GPU_DEVICES] = ",".join(self._gpu_held)
        guarantee = self.mem_guarantee_bytes()
        if guarantee:
            labels[LABEL_MEM_GUARANTEE] = str(guarantee)
        return labels

    def profile_host_config(self) -> dict[str, Any]:
        """``mem_guarantee`` as the container's memory reservation (Docker's soft limit)."""
        guarantee = self.mem_guarantee_bytes()
        return {"mem_reservation": guarantee} if guarantee else {}

    # -- state ----------------------------------------------------------------------

    def get_state(self) -> dict:
        state = super().get_state()  # type: ignore[misc]
        if self._profile is not None:
            state["profile"] = self._profile.slug
        if self._gpu_held:
            state["gpu_devices"] = list(self._gpu_held)
        return state

    def load_state(self, state: dict) -> None:
        super().load_state(state)  # type: ignore[misc]
        slug = state.get("profile")
        if slug and self.profiles:
            self._profile = next((p for p in self.parsed_profiles if p.slug == slug), None)
        self._gpu_held = tuple(state.get("gpu_devices") or ())

    def clear_state(self) -> None:
        super().clear_state()  # type: ignore[misc]
        self._gpu_held = ()

    # -- what do I get? -------------------------------------------------------------------

    async def grants_model(self) -> dict[str, Any]:
        """What this server has (running: read from its container) or would get."""
        groups = self.user_groups_now()
        access = grants.decide_access(
            groups,
            sock_group=self.docker_sock_group,  # type: ignore[attr-defined]
            privileged_group=self.docker_privileged_group,  # type: ignore[attr-defined]
        )
        model: dict[str, Any] = {
            "name": self.name,  # type: ignore[attr-defined]
            "running": bool(self.active),  # type: ignore[attr-defined]
            "profile": None,
            "profile_granted_by": [],
        }
        profile = self._chosen_profile(groups, model)
        info = None
        if self.active and self.object_id:  # type: ignore[attr-defined]
            with contextlib.suppress(Exception):
                info = await self.docker("inspect_container", self.object_id)  # type: ignore[attr-defined]
        if info is not None:
            slug = (info["Config"].get("Labels") or {}).get(LABEL_PROFILE)
            profile = next((p for p in self.parsed_profiles if p.slug == slug), None)
            model.update(_container_grants(info, self.docker_sock_host_path))  # type: ignore[attr-defined]
        else:
            model.update(self._next_start_grants(profile, access))
        if profile is not None:
            model["profile"] = {"slug": profile.slug, "display_name": profile.display_name}
            model["profile_granted_by"] = profile.granted_by(groups)
        model["granted_by"] = {
            "docker_sock": access.docker_sock,
            "privileged": access.privileged,
        }
        return model

    def _chosen_profile(self, groups: set[str], model: dict[str, Any]) -> P.Profile | None:
        """The profile the next start would use; a refused choice goes into ``model``."""
        if not self.profiles:
            return None
        try:
            return P.choose(self.parsed_profiles, groups, (self.user_options or {}).get("profile"))
        except P.ProfileChoiceError as e:
            model["profile_error"] = e.message
            return None

    def _next_start_grants(
        self, profile: P.Profile | None, access: grants.AccessDecision
    ) -> dict[str, Any]:
        """What a stopped server would get at its next start."""
        return dict(
            image=(profile.image if profile and profile.image else None)
            or self._profile_undo.get("image", (self.image,))[0],  # type: ignore[attr-defined]
            mem_limit=profile.mem_limit if profile else P.parse_mem(self.mem_limit),
            mem_guarantee=profile.mem_guarantee if profile else self.mem_guarantee_bytes(),
            cpu_limit=profile.cpu_limit if profile else self.cpu_limit,
            gpus=bool(profile.needs_gpu) if profile else None,
            gpu_devices=[],
            docker_sock=bool(access.docker_sock),
            privileged=bool(access.privileged),
            source="next-start",
        )


def _container_grants(info: Mapping[str, Any], docker_sock_host_path: str) -> dict[str, Any]:
    """What a running server has, read from its container's inspect answer."""
    hc = info["HostConfig"]
    cpu = None
    if hc.get("NanoCpus"):
        cpu = hc["NanoCpus"] / 1e9
    elif hc.get("CpuQuota") and hc.get("CpuPeriod"):
        cpu = hc["CpuQuota"] / hc["CpuPeriod"]
    binds = " ".join(hc.get("Binds") or [])
    devices = [d for r in hc.get("DeviceRequests") or [] for d in (r.get("DeviceIDs") or [])]
    return dict(
        image=info["Config"].get("Image"),
        mem_limit=hc.get("Memory") or None,
        mem_guarantee=hc.get("MemoryReservation") or None,
        cpu_limit=cpu,
        gpus=bool(hc.get("DeviceRequests")),
        gpu_devices=devices,
        docker_sock=docker_sock_host_path in binds,
        privileged=bool(hc.get("Privileged")),
        source="container",
    )


# -- hub start ----------------------------------------------------------------------------


def check_at_hub_start(c: Any, setting: Any) -> list[P.Profile]:
    """Validate ``profiles`` when the config loads; refuse images missing on the engine.

    ``setting(c, name, default)`` reads a spawner trait as ExtDockerSpawner sees
    it (configutil.spawner_setting). The image check is one ``inspect_image`` per
    image in the Docker pool, with the connect deadline; it runs while JupyterHub
    loads its config, before the hub serves anyone. An engine that does not
    answer is logged, not fatal (the hub may start before Docker).
    """
    import logging

    log = logging.getLogger("jupyterhub_ext.profiles.rules")
    profiles = P.parse_profiles(setting(c, "profiles", []))
    if not profiles:
        return profiles
    P.check_gpu_profiles(profiles, list(setting(c, "gpu_devices", [])))
    P.parse_mem(setting(c, "admission_memory_reserve", None), where="admission_memory_reserve")
    images = sorted({p.image for p in profiles if p.image})
    if not images:
        return profiles
    timeout = float(setting(c, "docker_connect_timeout", dockerpool.DEFAULT_CONNECT_TIMEOUT))
    pool_size = int(setting(c, "docker_pool_size", dockerpool.DEFAULT_POOL_SIZE))
    client = dockerpool.client(
        pool_size,
        tls_config=setting(c, "tls_config", {}) or None,
        connect_timeout=timeout,
        **dict(setting(c, "client_kwargs", {}) or {}),
    )

    def missing_images() -> list[str]:
        out = []
        for image in images:
            try:
                client.inspect_image(image)
            except ImageNotFound:
                out.append(image)
        return out

    try:
        missing = dockerpool.executor(pool_size).submit(missing_images).result(timeout + 5)
    except Exception as e:  # engine down or slow: spawns will say so
        log.warning("Could not check the profiles' images on the Docker engine: %s", e)
        return profiles
    if missing:
        where = [f"profile {p.slug!r} (image {p.image!r})" for p in profiles if p.image in missing]
        raise P.ProfileError(
            f"{'; '.join(where)}: image not present on the Docker engine. "
            f"Pull or build it first (docker pull {missing[0]})."
        )
    return profiles

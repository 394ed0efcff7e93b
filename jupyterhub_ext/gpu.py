"""GPUs for single-user containers: what to ask Docker for, and whether the engine can give it.

The decision (``decide_gpu``), the device requests and the environment are pure
functions. Detection asks the engine what it reports (``docker info``: an
``nvidia`` runtime, CDI GPU devices) - one API call, no container, no pull -
and caches the answer per engine for ``interval`` seconds, sharing one
in-flight check between concurrent spawns. A probe container (a configured
image that must already be on the engine; it is never pulled) is available for
hosts where the engine's report is not enough, e.g. the NVIDIA hook installed
without a registered runtime, which ``docker info`` does not show.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from jupyterhub_ext.engine import APIClient, DeviceRequest
from jupyterhub_ext.engine.errors import APIError, NotFound, explain
from jupyterhub_ext.engine.labels import LABEL_GPU_PROBE

MODES = ("off", "on", "auto")

# the NVIDIA defaults when NVIDIA_DRIVER_CAPABILITIES is unset
DEFAULT_CAPABILITIES = ("compute", "utility")
# the capabilities Docker's nvidia device driver knows (besides "gpu" / "nvidia")
NVIDIA_CAPABILITIES = ("compute", "compat32", "graphics", "utility", "video", "display", "all")
# CDI kinds that are GPUs
CDI_GPU_KINDS = ("nvidia.com/gpu", "amd.com/gpu")
CDI_DEFAULT_KIND = "nvidia.com/gpu"


VIA_RUNTIME = "nvidia-runtime"
VIA_CDI = "cdi"
VIA_PROBE = "probe"


class GpuConfigError(ValueError):
    """A GPU setting that cannot work; the message names the setting."""


# -- configuration ------------------------------------------------------------


def parse_gpu_count(value: Any) -> int:
    """``"all"`` -> -1 (Docker's "every GPU"), a positive int (or its string) -> that int."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "all":
            return -1
        if text.isdigit():
            value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GpuConfigError(f"gpu_count must be 'all' or a positive integer, not {value!r}")
    return value


def check_capabilities(caps: Iterable[str]) -> tuple[str, ...]:
    out = tuple(str(c).strip().lower() for c in caps if str(c).strip())
    unknown = [c for c in out if c not in NVIDIA_CAPABILITIES]
    if unknown:
        raise GpuConfigError(
            f"gpu_capabilities: unknown {', '.join(unknown)}; "
            f"use some of {', '.join(NVIDIA_CAPABILITIES)}"
        )
    return out


@dataclass(frozen=True)
class GpuRequest:
    """What a GPU server gets: every GPU (count -1), a count, or given device IDs."""

    count: int = -1
    device_ids: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES

    @classmethod
    def from_config(
        cls, count: Any, device_ids: Sequence[Any] = (), capabilities: Iterable[str] = ()
    ) -> GpuRequest:
        ids = tuple(str(d).strip() for d in device_ids if str(d).strip())
        return cls(
            count=0 if ids else parse_gpu_count(count),
            device_ids=ids,
            capabilities=check_capabilities(capabilities),
        )

    def describe(self) -> str:
        if self.device_ids:
            return "devices " + ",".join(self.device_ids)
        return "all GPUs" if self.count < 0 else f"{self.count} GPU(s)"


def device_requests(req: GpuRequest, via: str = VIA_RUNTIME) -> list[DeviceRequest]:
    """The Docker device requests for ``req``; CDI-only engines get CDI device names."""
    if via == VIA_CDI:
        if req.device_ids:
            names = [d if "=" in d else f"{CDI_DEFAULT_KIND}={d}" for d in req.device_ids]
        elif req.count < 0:
            names = [f"{CDI_DEFAULT_KIND}=all"]
        else:
            names = [f"{CDI_DEFAULT_KIND}={i}" for i in range(req.count)]
        return [DeviceRequest(driver="cdi", device_ids=names)]
    # what `docker run --gpus` sends: capability "gpu" selects the nvidia driver,
    # the others become NVIDIA_DRIVER_CAPABILITIES inside
    caps = [["gpu", *[c for c in req.capabilities if c != "gpu"]]]
    if req.device_ids:
        return [DeviceRequest(device_ids=list(req.device_ids), capabilities=caps)]
    return [DeviceRequest(count=req.count, capabilities=caps)]


def gpu_environment(req: GpuRequest | None, via: str = VIA_RUNTIME) -> dict[str, str]:
    """Environment matching the request; ``None`` (no GPUs) hides GPUs explicitly.

    ``void`` makes an engine whose *default* runtime is nvidia (with an image
    that sets ``NVIDIA_VISIBLE_DEVICES=all``) behave like plain runc, so
    someone without the grant gets no GPUs by accident.
    """
    if req is None:
        return {"NVIDIA_VISIBLE_DEVICES": "void"}
    if via == VIA_CDI:
        # the CDI spec carries its own environment (and sets the legacy variable to void)
        return {}
    if req.device_ids:
        visible = ",".join(req.device_ids)
    elif req.count < 0:
        visible = "all"
    else:
        visible = ",".join(str(i) for i in range(req.count))
    env = {"NVIDIA_VISIBLE_DEVICES": visible}
    if req.capabilities:
        env["NVIDIA_DRIVER_CAPABILITIES"] = ",".join(req.capabilities)
    return env


# -- what the engine offers ---------------------------------------------------


@dataclass(frozen=True)
class EngineGpuReport:
    """One answer to "can this engine give containers GPUs?"."""

    available: bool
    via: str = ""
    detail: str = ""
    source: str = "engine-info"  # or "probe", "error"
    runtimes: tuple[str, ...] = ()
    default_runtime: str = ""
    cdi_spec_dirs: tuple[str, ...] = ()
    cdi_devices: tuple[str, ...] = ()
    elapsed_ms: float = 0.0
    checked_at: float = field(default=0.0, compare=False)


def report_from_info(info: Mapping[str, Any]) -> EngineGpuReport:
    """Read ``docker info`` (APIClient.info()): nvidia runtime or CDI GPU devices."""
    runtimes = tuple(sorted((info.get("Runtimes") or {}).keys()))
    default_runtime = str(info.get("DefaultRuntime") or "")
    spec_dirs = tuple(info.get("CDISpecDirs") or ())
    # DiscoveredDevices: Docker 28.2+ (API 1.50) lists CDI devices as {"Source": "cdi", "ID": ...}
    devices = tuple(
        str(d.get("ID"))
        for d in info.get("DiscoveredDevices") or ()
        if isinstance(d, Mapping) and str(d.get("Source", "")).lower() == "cdi" and d.get("ID")
    )
    cdi_gpus = tuple(d for d in devices if d.split("=", 1)[0] in CDI_GPU_KINDS)
    nvidia = [r for r in runtimes if "nvidia" in r.lower()]
    common = dict(
        runtimes=runtimes,
        default_runtime=default_runtime,
        cdi_spec_dirs=spec_dirs,
        cdi_devices=devices,
    )
    if nvidia:
        return EngineGpuReport(
            True, VIA_RUNTIME, f"the engine has the {nvidia[0]!r} runtime", **common
        )
    if cdi_gpus:
        return EngineGpuReport(
            True, VIA_CDI, f"the engine lists CDI GPU devices {', '.join(cdi_gpus)}", **common
        )
    parts = [f"runtimes: {', '.join(runtimes) or 'none'}"]
    if spec_dirs:
        parts.append(f"CDI enabled ({', '.join(spec_dirs)}) but no GPU devices listed")
    else:
        parts.append("no CDI GPU devices")
    return EngineGpuReport(
        False, "", "the engine reports no GPU support (" + "; ".join(parts) + ")", **common
    )


def info_check(client: APIClient) -> EngineGpuReport:
    """Blocking: one ``docker info`` call."""
    t0 = time.perf_counter()
    report = report_from_info(client.info())
    return _stamped(report, t0)


def probe_check(
    client: APIClient,
    image: str,
    command: Sequence[str] = ("nvidia-smi", "-L"),
    *,
    timeout: float = 60,
    name_prefix: str = "jupyterhub-ext",
) -> EngineGpuReport:
    """Blocking: run ``command`` in ``image`` with every GPU requested; exit 0 = GPUs work.

    The image must already be on the engine: it is never pulled. The container
    has no network and is always removed.
    """
    t0 = time.perf_counter()
    base = report_from_info(client.info())
    keep = dict(
        runtimes=base.runtimes,
        default_runtime=base.default_runtime,
        cdi_spec_dirs=base.cdi_spec_dirs,
        cdi_devices=base.cdi_devices,
        source="probe",
    )
    try:
        client.inspect_image(image)
    except NotFound:
        detail = (
            f"GPU probe image {image!r} is not on the engine (it is never pulled): "
            f"run `docker pull {image}` on the Docker host or change gpu_probe_image"
        )
        return _stamped(EngineGpuReport(False, detail=detail, **keep), t0)
    cid = _create_probe(client, image, command, base.via or VIA_RUNTIME, name_prefix)
    try:
        # stamped before the removal: elapsed_ms is the probe's own time
        return _stamped(_run_probe(client, cid, timeout, keep), t0)
    finally:
        try:
            client.remove_container(cid, force=True)
        except APIError:
            pass


def _create_probe(
    client: APIClient, image: str, command: Sequence[str], via: str, name_prefix: str
) -> str:
    """Create (not start) the probe container, every GPU requested, no network; its id."""
    req = GpuRequest(count=-1, capabilities=("utility",))
    host_config = client.create_host_config(
        device_requests=device_requests(req, via), network_mode="none"
    )
    container = client.create_container(
        image,
        command=list(command),
        name=f"{name_prefix}-gpu-probe-{secrets.token_hex(4)}",
        labels={LABEL_GPU_PROBE: "true"},
        host_config=host_config,
    )
    return container["Id"]


def _run_probe(
    client: APIClient, cid: str, timeout: float, keep: Mapping[str, Any]
) -> EngineGpuReport:
    """Start the probe container, wait for it, and read the answer from its exit code."""
    try:
        client.start(cid)
    except APIError as e:
        return EngineGpuReport(False, detail=f"GPU probe refused: {explain(e)}", **keep)
    try:
        code = client.wait(cid, timeout=timeout)["StatusCode"]
    except Exception as e:  # requests' ReadTimeout, ConnectionError
        detail = f"GPU probe did not finish in {timeout}s ({e})"
        return EngineGpuReport(False, detail=detail, **keep)
    out = client.logs(cid).decode(errors="replace").strip()
    first = out.splitlines()[0] if out else ""
    if code == 0:
        return EngineGpuReport(True, VIA_PROBE, f"GPU probe ok: {first}".strip(), **keep)
    return EngineGpuReport(False, detail=f"GPU probe exited {code}: {first}".strip(), **keep)


def _stamped(report: EngineGpuReport, t0: float) -> EngineGpuReport:
    return replace(
        report, elapsed_ms=(time.perf_counter() - t0) * 1000, checked_at=time.monotonic()
    )


def engine_key(client: APIClient) -> str:
    """Which engine a client talks to (docker-py names every unix socket http+docker://localhost)."""
    adapter = getattr(client, "_custom_adapter", None)
    return str(getattr(adapter, "socket_path", None) or client.base_url)


class GpuDetector:
    """Cached engine checks: one per engine and method, re-done after ``interval`` seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cache: dict[Any, tuple[float, EngineGpuReport]] = {}
        self._inflight: dict[Any, asyncio.Future] = {}

    def forget(self) -> None:
        self._cache.clear()

    def cached(self, key: Any, interval: float) -> EngineGpuReport | None:
        hit = self._cache.get(key)
        if hit and self._clock() - hit[0] < interval:
            return hit[1]
        return None

    async def report(
        self,
        key: Any,
        check: Callable[[], EngineGpuReport],
        interval: float,
        run: Callable[[Callable[[], EngineGpuReport]], Awaitable[EngineGpuReport]],
    ) -> EngineGpuReport:
        """The cached report for ``key``, or run ``check`` (blocking) through ``run``.

        A failing check is not cached: the next spawn asks again.
        """
        hit = self.cached(key, interval)
        if hit is not None:
            return hit
        pending = self._inflight.get(key)
        if pending is None:
            pending = self._inflight[key] = asyncio.ensure_future(self._check(key, check, run))
            pending.add_done_callback(lambda _f: self._inflight.pop(key, None))
        return await asyncio.shield(pending)

    async def _check(self, key: Any, check: Callable, run: Callable) -> EngineGpuReport:
        t0 = time.perf_counter()
        try:
            report = await run(check)
        except Exception as e:
            return EngineGpuReport(
                False,
                detail=f"could not ask the Docker engine about GPUs: {e}",
                source="error",
                elapsed_ms=(time.perf_counter() - t0) * 1000,
            )
        self._cache[key] = (self._clock(), report)
        return report


detector = GpuDetector()


# -- the decision ---------------------------------------------------------------


@dataclass(frozen=True)
class GpuDecision:
    enabled: bool
    reason: str
    request: GpuRequest | None = None
    via: str = VIA_RUNTIME
    granted_by: tuple[str, ...] = ()
    report: EngineGpuReport | None = None

    def host_config(self) -> dict[str, Any]:
        if not self.enabled or self.request is None:
            return {}
        return {"device_requests": device_requests(self.request, self.via)}

    def environment(self) -> dict[str, str]:
        return gpu_environment(self.request if self.enabled else None, self.via)

    def summary(self) -> str:
        if not self.enabled:
            return f"off ({self.reason})"
        return f"{self.request.describe() if self.request else 'on'} ({self.reason})"


def needs_report(mode: str, user_groups: Iterable[str], gpu_groups: Sequence[str]) -> bool:
    """Whether deciding needs the engine's answer (never for off or a non-member)."""
    if mode == "off":
        return False
    return not gpu_groups or bool(set(user_groups) & set(gpu_groups))


def decide_gpu(
    mode: str,
    request: GpuRequest,
    *,
    user_groups: Iterable[str] = (),
    gpu_groups: Sequence[str] = (),
    report: EngineGpuReport | None = None,
) -> GpuDecision:
    """GPUs or not for one spawn. Pure: the report comes from the detector."""
    if mode not in MODES:
        raise GpuConfigError(f"gpu_mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "off":
        return GpuDecision(False, "gpu_mode is off")
    granted: tuple[str, ...] = ()
    if gpu_groups:
        granted = tuple(g for g in gpu_groups if g in set(user_groups))
        if not granted:
            return GpuDecision(False, f"not in gpu_groups {', '.join(gpu_groups)}")
    via = report.via if report and report.via in (VIA_RUNTIME, VIA_CDI) else VIA_RUNTIME
    if mode == "on":
        reason = "gpu_mode is on"
        if report is not None and not report.available:
            # the engine has the last word at container start; see start_failure_message
            reason += f"; warning: {report.detail}"
        return GpuDecision(True, reason, request, via, granted, report)
    # auto
    if report is None or not report.available:
        why = report.detail if report else "no engine report"
        return GpuDecision(False, f"auto: {why}", report=report)
    return GpuDecision(True, f"auto: {report.detail}", request, via, granted, report)


GPU_ERROR_MARKERS = (
    "could not select device driver",
    "nvidia-container-cli",
    "nvidia-container-runtime",
    "unresolvable cdi devices",
    "cdi device injection",
    'unknown or invalid runtime name: "nvidia"',
)


def start_failure_message(error: str, decision: GpuDecision | None) -> str | None:
    """A message a person can act on when the engine refused a GPU container; else None."""
    if decision is None or not decision.enabled:
        return None
    if not any(m in error.lower() for m in GPU_ERROR_MARKERS):
        return None
    engine = ""
    if decision.report is not None and decision.report.source != "error":
        r = decision.report
        engine = f" The engine reports runtimes {', '.join(r.runtimes) or 'none'}"
        if r.cdi_devices:
            engine += f" and CDI devices {', '.join(r.cdi_devices)}."
        else:
            engine += " and no CDI devices."
    fix_host = (
        "an administrator can install the NVIDIA Container Toolkit on the Docker host "
        "(`nvidia-ctk runtime configure --runtime=docker`, then restart Docker)"
    )
    if decision.reason.startswith("auto"):
        return (
            f"This server was given GPUs because GPU auto-detection found them "
            f"({decision.reason[len('auto: ') :]}), but the Docker engine cannot start a "
            f"container with GPUs: {error.strip()}.{engine} To fix it, {fix_host}, "
            f"set c.ExtDockerSpawner.gpu_probe_image to an image with nvidia-smi so that "
            f"detection runs a real check, or set c.ExtDockerSpawner.gpu_mode = 'off'."
        )
    return (
        f"This server asks for GPUs (gpu_mode is 'on'), but the Docker engine cannot provide "
        f"them: {error.strip()}.{engine} To fix it, {fix_host}, or set "
        f"c.ExtDockerSpawner.gpu_mode = 'auto' (GPUs only where the engine offers them) "
        f"or 'off'."
    )

"""Find what holds the hub's event loop: a watchdog thread the hub's config loads.

The benchmark adds to the hub's config (``config_snippet``)::

    import loopwatch; loopwatch.install("/path/stalls.jsonl")

A daemon thread then hands the running loop a no-op callback every few ms
(``call_soon_threadsafe``). While one is late by more than ``threshold`` the
thread samples the main thread's Python stack (``sys._current_frames``) about
every millisecond (in practice every GIL switch interval, 5 ms, when the loop
runs Python code). When the callback finally runs it writes one JSON line:
when the stall began, how long it was, and the distinct stacks seen with their
counts. ``summarize`` reads the file back and attributes each stall to the
innermost frame of our package, or else to the library frame it sat in.

This is a profiling aid of the benchmark; it never runs in the product.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import threading
import time
from pathlib import Path

OURS = "jupyterhub_ext"


def _stack(frame) -> tuple[str, ...]:
    # walked by hand, outermost first: traceback.extract_stack reads source
    # lines and would hold the GIL the stalled loop is waiting for
    out = []
    while frame is not None and len(out) < 60:
        code = frame.f_code
        out.append(f"{code.co_filename}:{frame.f_lineno} {code.co_name}")
        frame = frame.f_back
    return tuple(reversed(out))


def _schedstat(task: str) -> tuple[int, int]:
    """Nanoseconds the thread ran on a CPU and waited in the run queue (``schedstat``)."""
    try:
        with open(f"{task}/schedstat") as f:
            run, wait, _ = f.read().split()
        return int(run), int(wait)
    except OSError:
        return 0, 0


def _kernel_state(task: str) -> str:
    """``R``/``S``/``D`` and, when not running, the kernel function it waits in (wchan)."""
    try:
        with open(f"{task}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if state == "R":
            return "R"
        with open(f"{task}/wchan") as f:
            return f"{state}:{f.read().strip() or '?'}"
    except (OSError, IndexError):
        return "?"


def _watch(
    loop: asyncio.AbstractEventLoop,
    main_id: int,
    task: str,
    path: Path,
    threshold: float,
    interval: float,
) -> None:
    with open(path, "a", buffering=1) as out:
        while not loop.is_closed():
            done = threading.Event()
            ran0, waited0 = _schedstat(task)
            sent = time.perf_counter()
            try:
                loop.call_soon_threadsafe(done.set)
            except RuntimeError:  # loop closed meanwhile
                return
            if done.wait(threshold):
                time.sleep(interval)
                continue
            samples: collections.Counter[tuple[str, ...]] = collections.Counter()
            states: collections.Counter[str] = collections.Counter()
            while not done.wait(0.001):
                frame = sys._current_frames().get(main_id)
                if frame is not None:
                    samples[_stack(frame)] += 1
                states[_kernel_state(task)] += 1
                if loop.is_closed():
                    return
            lag = time.perf_counter() - sent
            ran, waited = _schedstat(task)
            rec = {
                "at": time.time() - lag,
                "lag": round(lag, 4),
                # of the stall: on a CPU, runnable but waiting for one, and
                # (the rest) blocked in the kernel
                "cpu": round((ran - ran0) / 1e9, 4),
                "runqueue": round((waited - waited0) / 1e9, 4),
                "states": dict(states.most_common(4)),
                "stacks": [[n, list(s)] for s, n in samples.most_common(5)],
            }
            out.write(json.dumps(rec) + "\n")


def install(path: str, threshold: float = 0.015, interval: float = 0.005) -> None:
    """Start the watchdog on the running loop (call from the hub's config file)."""
    loop = asyncio.get_running_loop()
    task = f"/proc/self/task/{threading.get_native_id()}"
    args = (loop, threading.get_ident(), task, Path(path), threshold, interval)
    threading.Thread(target=_watch, args=args, name="loopwatch", daemon=True).start()


def config_snippet(path: Path, threshold: float = 0.015) -> str:
    """Lines for a hub config that load this module from bench/ and start it."""
    here = Path(__file__).resolve().parent
    return (
        f"\nimport sys as _s; _s.path.insert(0, {str(here)!r})\n"
        f"import loopwatch as _lw; _lw.install({str(path)!r}, threshold={threshold})\n"
    )


def culprit(stack: list[str]) -> str:
    """The innermost frame of our package, else the innermost frame outside asyncio/selectors."""
    for line in reversed(stack):
        if f"/{OURS}/" in line:
            return "ours " + line.split(f"/{OURS}/", 1)[1]
    for line in reversed(stack):
        if "/asyncio/" not in line and "selectors.py" not in line and "/loopwatch.py" not in line:
            name = line.split("site-packages/", 1)[-1]
            return "other " + name
    return "other (idle?) " + (stack[-1] if stack else "")


def entry(stack: list[str]) -> str:
    """Whose work a sample is: ``ours <innermost frame of our package>``, else the
    first JupyterHub/DockerSpawner/SQLAlchemy frame the loop's callback entered."""
    for line in reversed(stack):
        if f"/{OURS}/" in line:
            return "ours " + line.split(f"/{OURS}/", 1)[1]
    inner = stack
    for i, line in enumerate(stack):
        if "/asyncio/events.py" in line:
            inner = stack[i + 1 :]
    for line in inner:
        if "site-packages/" in line and "/tornado/" not in line:
            return "other " + line.split("site-packages/", 1)[1]
    return "other " + (inner[0].split("site-packages/")[-1] if inner else "(loop itself)")


def by_entry(recs: list[dict]) -> collections.Counter[str]:
    """Stall seconds by whose work it is, each stall shared by its samples' counts."""
    out: collections.Counter[str] = collections.Counter()
    for r in recs:
        n = sum(c for c, _ in r["stacks"])
        for c, stack in r["stacks"]:
            out[entry(stack)] += r["lag"] * c / n
    return out


def summarize(path: Path, top: int = 15, since: float = 0, until: float = float("inf")) -> str:
    """Stalls by length, each with its dominant stack's culprit; totals per culprit."""
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    recs = [r for r in recs if since <= r["at"] <= until]
    if not recs:
        return "no stalls over the threshold"
    recs.sort(key=lambda r: -r["lag"])
    lines = [f"{len(recs)} stalls; longest first:"]
    per: collections.Counter[str] = collections.Counter()
    per_cpu: collections.Counter[str] = collections.Counter()
    for r in recs:
        who = culprit(r["stacks"][0][1]) if r["stacks"] else "(no sample)"
        per[who] += r["lag"]
        per_cpu[who] += r.get("cpu", 0)
    for r in recs[:top]:
        tops = [f"{n}x {culprit(s)}" for n, s in r["stacks"][:3]]
        where = " ".join(f"{k} {v}" for k, v in r.get("states", {}).items())
        lines.append(
            f"  {r['lag'] * 1000:7.1f} ms (cpu {r.get('cpu', 0) * 1000:.0f}, runqueue "
            f"{r.get('runqueue', 0) * 1000:.0f}; {where})  " + " | ".join(tops)
        )
    cpu = sum(r.get("cpu", 0) for r in recs)
    rq = sum(r.get("runqueue", 0) for r in recs)
    total = sum(r["lag"] for r in recs)
    lines.append(
        f"all stalls {total:.3f} s: on a CPU {cpu:.3f}, waiting for a CPU {rq:.3f}, "
        f"blocked in the kernel {total - cpu - rq:.3f}"
    )
    lines.append("stall time (and of it on a CPU) by culprit of the dominant stack (s):")
    lines += [f"  {t:7.3f} {per_cpu[who]:7.3f}  {who}" for who, t in per.most_common(top)]
    entries = by_entry(recs)
    ours = sum(t for who, t in entries.items() if who.startswith("ours"))
    lines.append(f"stall time by whose work the samples show (s; ours {ours:.3f} of {total:.3f}):")
    lines += [f"  {t:7.3f}  {who}" for who, t in entries.most_common(top)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 15))

"""Free ports for servers on the host network."""

from __future__ import annotations

import socket
import threading

_lock = threading.Lock()
_reserved: set[int] = set()


def reserve_port(ip: str = "127.0.0.1") -> int:
    """A port nobody listens on now and that we have not handed out already.

    With host networking every server shares the host's ports, so two servers
    spawning at once must never get the same one.
    """
    with _lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((ip, 0))
                port = s.getsockname()[1]
            if port not in _reserved:
                _reserved.add(port)
                return port
    raise RuntimeError("no free port found after 100 tries")


def release_port(port: int | None) -> None:
    with _lock:
        _reserved.discard(port)


def claim_port(port: int) -> None:
    """Mark a port in use that was not handed out here (a reused container's)."""
    with _lock:
        _reserved.add(port)


def reserved() -> frozenset[int]:
    """Ports handed out and not yet released."""
    with _lock:
        return frozenset(_reserved)

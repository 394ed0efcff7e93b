"""Recent broadcasts in a JSON-lines file, so the history survives hub restarts.

One JSON object per line, oldest first. A line ends only at a newline (LF):
every other character Unicode treats as a line break (U+2028, U+2029, U+0085,
and the C0 controls JSON escapes anyway) is written as its JSON ``\\u``
escape, and the file is split on LF alone, so no message can split or corrupt
an entry, whatever tool reads the file. Appending is one ``write`` of one
line; when the file holds twice the configured size it is rewritten with the
newest ``size`` entries (to a temporary file, then renamed over the old one,
so a crash never leaves half a history). A damaged line is skipped, not fatal.

The methods block (file I/O): call them from the hub through
``dockerpool.run`` so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

log = logging.getLogger("jupyterhub_ext.notifications.history")

# Line breaks for str.splitlines() and many editors and log shippers that JSON
# (with ensure_ascii=False) writes raw; inside a JSON string their escape
# means the same character.
_RAW_BREAKS = {"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_ESCAPE_BREAKS = str.maketrans(_RAW_BREAKS)


def encode_line(entry: dict[str, Any]) -> str:
    """One entry as one JSON line: no line break in it but the final LF."""
    return json.dumps(entry, ensure_ascii=False, sort_keys=True).translate(_ESCAPE_BREAKS) + "\n"


class HistoryStore:
    """Append-only store of broadcast records, trimmed to the newest ``size``."""

    def __init__(self, path: str | os.PathLike[str], size: int = 200) -> None:
        if size < 1:
            raise ValueError("history size must be at least 1")
        self.path = Path(path)
        self.size = size
        self._lock = threading.Lock()
        # file work stays off the hub's event loop, one operation at a time
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="jhext-history")

    def _read(self) -> list[dict[str, Any]]:
        try:
            # newline="": no translation of \r; split on \n alone (not splitlines)
            with open(self.path, encoding="utf-8", newline="") as f:
                lines = f.read().split("\n")
        except FileNotFoundError:
            return []
        entries = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                log.warning("Skipping damaged line %d of %s", n, self.path)
                continue
            if isinstance(entry, dict):
                entries.append(entry)
        return entries

    def append(self, entry: dict[str, Any]) -> None:
        """Add one record (a JSON-serialisable dict)."""
        line = encode_line(entry)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8", newline="") as f:
                f.write(line)
            entries = self._read()
            if len(entries) > 2 * self.size:
                self._rewrite(entries[-self.size :])

    def _rewrite(self, entries: list[dict[str, Any]]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            for e in entries:
                f.write(encode_line(e))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    async def append_async(self, entry: dict[str, Any]) -> None:
        """``append`` off the event loop, in this store's own thread."""
        await asyncio.get_running_loop().run_in_executor(self._pool, self.append, entry)

    async def recent_async(self, limit: int | None = None) -> list[dict[str, Any]]:
        """``recent`` off the event loop, in this store's own thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.recent, limit)

    def recent(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The newest records first, at most ``limit`` (default: the configured size)."""
        with self._lock:
            entries = self._read()
        n = self.size if limit is None else max(0, min(limit, self.size))
        return list(reversed(entries[-n:])) if n else []


__all__ = ["HistoryStore"]

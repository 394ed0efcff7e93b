#!/usr/bin/env python3
"""Turn jupyterhub_ext audit lines into JSON, one object per line, and filter them.

    audit-to-json.py [--actor NAME] [--target NAME] [--action ACTION]
                     [--result RESULT] [--since YYYY-MM-DD] [FILE ...]

Reads the audit log (or the hub's log: lines without an audit record are
skipped) from the files given or from stdin. Each audit record is
``actor=... action=... target=... result=... key=value ...``, values either
plain words or JSON; the output keeps them, plus ``time`` when the line starts
with one. ``--target`` also matches a user's servers (``alice`` matches
``alice/gpu``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any

_DECODER = json.JSONDecoder()
_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=")
# "2025-01-15 10:00:00,123" (logging's asctime) or "[I 2025-01-15 10:00:00.123 ..." (the hub's log)
_TIME = re.compile(r"(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2})")


def parse_record(line: str) -> dict[str, Any] | None:
    """The fields of one audit line, or None if the line holds no audit record."""
    start = line.find("actor=")
    if start < 0 or "action=" not in line[start:]:
        return None
    out: dict[str, Any] = {}
    m = _TIME.search(line[:start])
    if m:
        out["time"] = m.group(1).replace("T", " ")
    i, n = start, len(line)
    while i < n:
        m = _KEY.match(line, i)
        if not m:
            # not key=value: the record is over (or the line is not ours)
            break
        key, j = m.group(1), m.end()
        try:
            value, end = _DECODER.raw_decode(line, j)
            if end < n and line[end] != " ":
                raise ValueError("not a whole value")  # e.g. 7c4e... or 2025-01-15
        except ValueError:
            end = line.find(" ", j)
            end = n if end < 0 else end
            value = line[j:end]
        j = end
        out[key] = value
        while j < n and line[j] == " ":
            j += 1
        i = j
    return out if {"actor", "action", "target", "result"} <= out.keys() else None


def records(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        rec = parse_record(line.rstrip("\n"))
        if rec is not None:
            yield rec


def _target_matches(target: Any, wanted: str) -> bool:
    targets = target if isinstance(target, list) else [target]
    return any(str(t) == wanted or str(t).startswith(wanted + "/") for t in targets)


def keep(rec: dict[str, Any], args: argparse.Namespace) -> bool:
    if args.actor and rec.get("actor") != args.actor:
        return False
    if args.action and rec.get("action") != args.action:
        return False
    if args.result and rec.get("result") != args.result:
        return False
    if args.target and not _target_matches(rec.get("target"), args.target):
        return False
    if args.since and rec.get("time", "") < args.since:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*", help="audit log files (default: stdin)")
    p.add_argument("--actor")
    p.add_argument("--target")
    p.add_argument("--action")
    p.add_argument("--result")
    p.add_argument("--since", help="YYYY-MM-DD (lines with a time only)")
    args = p.parse_args(argv)
    streams = [open(f, encoding="utf-8", errors="replace") for f in args.files] or [sys.stdin]
    for stream in streams:
        with stream:
            for rec in records(stream):
                if keep(rec, args):
                    print(json.dumps(rec, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

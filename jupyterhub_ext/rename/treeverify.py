"""Describe a directory tree exactly, and compare two trees.

This file runs *inside* a helper container (``python3 -c <this source>``) with
nothing but the standard library, so it must not import from jupyterhub_ext.
It is also an ordinary module, so tests use the same code on the host.

Per entry (path relative to the root, the root itself is ``.``): type, mode
bits, owner, group, modification time in nanoseconds, extended attributes;
regular files add size, SHA-256 and - when hard-linked - the first path of
their link group, so "these two names are one file" is compared too; symlinks
add their target; device nodes their device number. Access and change times
are not compared: reading a tree changes the first, no copy can keep the second.

Command line: ``manifest ROOT`` prints the manifest as JSON;
``compare SRC DST`` prints a summary and exits 0 when the trees are identical,
1 when they differ.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

MAX_REPORTED = 20
_CHUNK = 1 << 20


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while True:
            block = f.read(_CHUNK)
            if not block:
                return h.hexdigest()
            h.update(block)


def _xattrs(path: str) -> dict[str, str] | str:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:  # not supported on this file system or file type
        return f"unsupported:{e.errno}"
    out = {}
    for name in sorted(names):
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False).hex()
        except OSError as e:
            out[name] = f"unreadable:{e.errno}"
    return out


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISREG, "file"),
        (stat.S_ISDIR, "dir"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "chardev"),
        (stat.S_ISBLK, "blockdev"),
    ):
        if test(mode):
            return name
    return "other"


def manifest(root: str) -> dict[str, dict[str, Any]]:
    """Every entry under ``root`` (and ``root`` itself), keyed by relative path."""
    entries: dict[str, dict[str, Any]] = {}
    first_of_inode: dict[tuple[int, int], str] = {}

    def describe(path: str, rel: str) -> None:
        st = os.lstat(path)
        kind = _kind(st.st_mode)
        rec: dict[str, Any] = {
            "type": kind,
            "mode": stat.S_IMODE(st.st_mode),
            "uid": st.st_uid,
            "gid": st.st_gid,
            "mtime_ns": st.st_mtime_ns,
            "xattrs": _xattrs(path),
        }
        if kind == "file":
            rec["size"] = st.st_size
            rec["sha256"] = _sha256(path)
            if st.st_nlink > 1:
                rec["link_group"] = first_of_inode.setdefault((st.st_dev, st.st_ino), rel)
        elif kind == "symlink":
            rec["target"] = os.readlink(path)
        elif kind in ("chardev", "blockdev"):
            rec["rdev"] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
        entries[rel] = rec

    describe(root, ".")
    # Sorted, top-down: both trees are walked in the same order, so the first
    # path of each hard-link group is the same name on both sides.
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            describe(path, os.path.relpath(path, root))
    return entries


def compare(src: dict[str, dict[str, Any]], dst: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Summary of the differences between two manifests (empty list: identical)."""
    differences: list[str] = []
    count = 0
    for rel in sorted(set(src) | set(dst)):
        a, b = src.get(rel), dst.get(rel)
        if a == b:
            continue
        count += 1
        if len(differences) >= MAX_REPORTED:
            continue
        if a is None:
            differences.append(f"{rel}: only in the copy")
        elif b is None:
            differences.append(f"{rel}: missing from the copy")
        else:
            fields = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            detail = ", ".join(f"{k} {a.get(k)!r} != {b.get(k)!r}" for k in fields)
            differences.append(f"{rel}: {detail}")
    files = [e for e in src.values() if e["type"] == "file"]
    return {
        "identical": count == 0,
        "entries": len(src),
        "files": len(files),
        "bytes": sum(e["size"] for e in files),
        "difference_count": count,
        "differences": differences,
    }


def manifests(*roots: str) -> list[dict[str, dict[str, Any]]]:
    """The manifests of several trees, made at the same time.

    One thread per tree: reading and SHA-256 release the GIL, so the two
    trees of a check are read and hashed on two cores (and two disks' queues)
    at once instead of one after the other.
    """
    with ThreadPoolExecutor(len(roots)) as pool:
        return list(pool.map(manifest, roots))


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "manifest":
        json.dump(manifest(argv[1]), sys.stdout, sort_keys=True)
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        result = compare(*manifests(argv[1], argv[2]))
        json.dump(result, sys.stdout, sort_keys=True)
        return 0 if result["identical"] else 1
    print("usage: manifest ROOT | compare SRC DST", file=sys.stderr)
    return 2


if __name__ == "__main__":
    # ``python3 -c SOURCE args...``: sys.argv[0] is "-c"
    sys.exit(main(sys.argv[1:]))

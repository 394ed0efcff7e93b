#!/usr/bin/env python3
"""Build the demo / test single-user images without any registry.

Debian rootfs from mmdebstrap -> ``docker import`` -> Dockerfile that installs
wheels downloaded on this host (pip inside ``docker build`` cannot verify this
network's TLS). Images are tagged by a hash of their inputs, so a second run
with unchanged inputs does nothing.

Prints two lines: the lab image (with jupyterlab-notifications-extension) and
the plain image (the same without the extension).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import docker

HERE = Path(__file__).resolve().parent
IMAGE_DIR = HERE.parent / "images" / "singleuser"
SUITE = "bookworm"
MIRROR = os.environ.get("JHEXT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PACKAGES = ["python3", "python3-venv", "ca-certificates", "procps", "curl", "tini"]
IMAGE_PYTHON = "3.11.2"  # Debian 12's python3
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jupyterhub-ext"

LAB_REPO = "jupyterhub-ext/singleuser"
PLAIN_REPO = "jupyterhub-ext/singleuser-plain"
BASE_REPO = "jupyterhub-ext/debian-base"


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _log(msg: str) -> None:
    print(f"[build_image] {msg}", file=sys.stderr, flush=True)


def _has_image(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        return False
    return True


def ensure_base(client: docker.DockerClient) -> str:
    tag = _digest(SUITE, MIRROR, *PACKAGES)
    ref = f"{BASE_REPO}:{tag}"
    if _has_image(client, ref):
        return ref
    _log(f"building Debian {SUITE} rootfs with mmdebstrap (one-off, ~1 min)")
    with tempfile.TemporaryDirectory() as tmp:
        tar = Path(tmp) / "rootfs.tar"
        subprocess.run(
            [
                "mmdebstrap",
                "--variant=minbase",
                "--include=" + ",".join(PACKAGES),
                SUITE,
                str(tar),
                MIRROR,
            ],
            check=True,
            stdout=sys.stderr,
        )
        client.api.import_image_from_file(str(tar), repository=BASE_REPO, tag=tag)
    return ref


def ensure_wheels(requirements: list[Path]) -> Path:
    key = _digest(IMAGE_PYTHON, *(p.read_bytes() for p in requirements))
    dest = CACHE / f"wheels-{key}"
    if (dest / ".complete").exists():
        return dest
    _log("downloading wheels on the host")
    dest.mkdir(parents=True, exist_ok=True)
    # resolve for the image's Python (Debian's 3.11.2), not the host's
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--dest",
        str(dest),
        "--python-version",
        IMAGE_PYTHON,
        "--only-binary=:all:",
    ]
    for req in requirements:
        cmd += ["-r", str(req)]
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    (dest / ".complete").touch()
    return dest


def build() -> tuple[str, str]:
    client = docker.from_env(version="auto", timeout=600)
    inputs = sorted(IMAGE_DIR.iterdir())
    requirements = [IMAGE_DIR / "requirements.txt", IMAGE_DIR / "extension-requirements.txt"]
    base = ensure_base(client)
    tag = _digest(base, Path(__file__).read_bytes(), *(p.read_bytes() for p in inputs))
    lab, plain = f"{LAB_REPO}:{tag}", f"{PLAIN_REPO}:{tag}"
    if _has_image(client, lab) and _has_image(client, plain):
        return lab, plain
    wheels = ensure_wheels(requirements)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Path(tmp)
        for p in inputs:
            shutil.copy(p, ctx / p.name)
        shutil.copytree(wheels, ctx / "wheels")
        for target, ref in (("plain", plain), ("lab", lab)):
            _log(f"docker build --target {target} -> {ref}")
            repo, _, t = ref.partition(":")
            for chunk in client.api.build(
                path=str(ctx),
                tag=ref,
                target=target,
                buildargs={"BASE": base},
                rm=True,
                decode=True,
                # RUN steps need no network (wheels are local); host mode
                # also works on engines started without a default bridge
                network_mode="host",
            ):
                if "error" in chunk:
                    raise RuntimeError(f"docker build failed: {chunk['error']}")
                line = chunk.get("stream", "").rstrip()
                if line:
                    _log(line)
    return lab, plain


if __name__ == "__main__":
    for ref in build():
        print(ref)

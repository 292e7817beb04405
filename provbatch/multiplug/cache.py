"""The build cache shared by the compiled-language loaders (Rust, Nim).

One shape for every compiled language: hash the inputs of a build -> a cache
directory named by that hash -> take a file lock -> build unless an artifact
is already there -> load. Several processes loading the same plugin at once
build it once; the others wait on the lock and then find the artifact.

The cache root is ``$PROVBATCH_CACHE`` when set, else the user's cache
directory (``~/.cache/provbatch`` on Linux). Nothing is ever written next to
the plugin's source.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Callable, Iterable

log = logging.getLogger("provbatch.build")


def cache_root() -> Path:
    """Root of the build cache (created on demand)."""
    env = os.environ.get("PROVBATCH_CACHE")
    if env:
        root = Path(env).expanduser()
    else:
        import platformdirs

        root = Path(platformdirs.user_cache_dir("provbatch"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def hash_inputs(parts: Iterable[bytes | str]) -> str:
    """sha256 over an ordered sequence of build inputs (sources, manifest, toolchain versions)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_build(lang: str, key: str, artifact_name: str, build: Callable[[Path], None]) -> tuple[Path, bool]:
    """Return the artifact for ``key``, building it under a lock if absent.

    ``build(build_dir)`` must create ``build_dir / artifact_name``; it should
    write to a temporary name and rename, so a crash never leaves a torn
    artifact. Returns ``(artifact_path, built_now)``.
    """
    from filelock import FileLock

    build_dir = cache_root() / lang / key
    artifact = build_dir / artifact_name
    if artifact.exists():
        return artifact, False
    build_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(build_dir) + ".lock"):
        if artifact.exists():  # another process built it while we waited
            log.info("%s build %s: built by another process", lang, key[:12])
            return artifact, False
        log.info("%s build %s: no cached build, building", lang, key[:12])
        build(build_dir)
        if not artifact.exists():
            raise RuntimeError(f"build finished without producing {artifact}")
        return artifact, True

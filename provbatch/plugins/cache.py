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
from typing import Any, Callable, Iterable, Mapping

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


def cached_build(
    lang: str,
    key: str,
    artifact_name: str,
    build: Callable[[Path], None],
    reason: str = "no cached build",
) -> tuple[Path, bool]:
    """Return the artifact for ``key``, building it under a lock if absent.

    ``build(build_dir)`` must create ``build_dir / artifact_name``; it should
    write to a temporary name and rename, so a crash never leaves a torn
    artifact. ``reason`` is logged when a build happens (see
    :func:`rebuild_reason`). Returns ``(artifact_path, built_now)``.
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
        log.info("%s build %s: %s, building", lang, key[:12], reason)
        build(build_dir)
        if not artifact.exists():
            raise RuntimeError(f"build finished without producing {artifact}")
        return artifact, True


# --------------------------------------------------------------------------- why a rebuild happens


def _source_record(lang: str, source: str) -> Path:
    name = hashlib.sha1(source.encode()).hexdigest()[:20]
    return cache_root() / lang / "sources" / f"{name}.json"


def rebuild_reason(lang: str, source: str, parts: Mapping[str, str]) -> str:
    """Why the build of ``source`` is needed: "no cached build", or which named input changed.

    ``parts`` are the named digests the cache key is made of (e.g. ``source``,
    ``manifest``, ``toolchain``); they are compared with those recorded by
    :func:`remember_build` for the same source path.
    """
    import json

    try:
        previous = json.loads(_source_record(lang, source).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "no cached build"
    changed = [name for name in parts if previous.get(name) != parts[name]]
    if not changed:
        return "no cached build (the previous build was removed)"
    return " and ".join(f"{name} changed" for name in changed)


def remember_build(lang: str, source: str, parts: Mapping[str, str]) -> None:
    """Record the inputs of the last build of ``source``, for :func:`rebuild_reason`."""
    import json

    record = _source_record(lang, source)
    record.parent.mkdir(parents=True, exist_ok=True)
    temporary = record.with_name(f"{record.name}.tmp{os.getpid()}")
    temporary.write_text(json.dumps({"source_path": source, **parts}, indent=1), encoding="utf-8")
    os.replace(temporary, record)


# --------------------------------------------------------------------------- shipping artifacts to workers


def artifact_bytes(spec: Any) -> bytes:
    """The bytes of the driver's built artifact, checked against ``spec.artifact_sha256``.

    What a distributed backend puts in its object store (``spec.with_blob(...)``)
    so that a worker on another node can load the plugin without building it.
    """
    data = Path(spec.artifact).read_bytes()
    if spec.artifact_sha256 and hashlib.sha256(data).hexdigest() != spec.artifact_sha256:
        raise RuntimeError(f"{spec.artifact}: changed since it was built (sha256 mismatch)")
    return data


def _blob_bytes(blob: Any) -> bytes:
    if isinstance(blob, (bytes, bytearray, memoryview)):
        return bytes(blob)
    import ray  # an ObjectRef (the only other kind of blob a backend sets)

    return bytes(ray.get(blob))


def local_artifact(spec: Any, lang: str) -> Path:
    """The spec's artifact as a file on this node, never by building it.

    Returns ``spec.artifact`` when it exists here with the expected sha256;
    otherwise writes ``spec.artifact_blob`` into this node's cache, under the
    same ``<lang>/<key>/<name>`` the driver used (atomic rename, sha256
    checked), and returns that path.
    """
    from ..errors import PluginLoadError

    original = Path(spec.artifact)
    if original.is_file() and (not spec.artifact_sha256 or file_sha256(original) == spec.artifact_sha256):
        return original
    local = cache_root() / lang / original.parent.name / original.name
    if local.is_file() and (not spec.artifact_sha256 or file_sha256(local) == spec.artifact_sha256):
        return local
    if spec.artifact_blob is None:
        raise PluginLoadError(
            f"{spec.source}: the built plugin {original} is missing on this node and was not shipped "
            f"(workers never build; run the build on this node first or use a backend that ships artifacts)"
        )
    data = _blob_bytes(spec.artifact_blob)
    if spec.artifact_sha256 and hashlib.sha256(data).hexdigest() != spec.artifact_sha256:
        raise PluginLoadError(f"{spec.source}: the shipped build does not match its sha256")
    local.parent.mkdir(parents=True, exist_ok=True)
    temporary = local.with_name(f"{local.name}.tmp{os.getpid()}")
    temporary.write_bytes(data)
    os.replace(temporary, local)
    log.info("%s: wrote the shipped build to %s", spec.source, local)
    return local

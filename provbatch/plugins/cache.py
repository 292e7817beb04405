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
import json
import logging
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import PluginLoadError, UnsafePathError
from ..files import (
    atomic_write,
    check_private,
    private_dir,
    private_root,
    read_private,
    safe_component,
    sha256_file,
)

log = logging.getLogger("provbatch.build")

#: how the cache is named in messages (see :mod:`provbatch.files`)
WHAT = "build cache"
#: in each entry directory: the sha256 of every artifact provbatch built there
RECORD = "artifacts.json"


def cache_root() -> Path:
    """Root of the build cache: created ``0700``, refused unless it is the user's alone."""
    env = os.environ.get("PROVBATCH_CACHE")
    if env:
        root = Path(env).expanduser()
    else:
        import platformdirs

        root = Path(platformdirs.user_cache_dir("provbatch"))
    return private_root(root, WHAT)


def cache_dir(*parts: str) -> Path:
    """A private directory inside the cache (``rust/target``, ``rerun/<uuid>``), made or checked."""
    return private_dir(cache_root(), *parts, what=WHAT)


def entry_dir(lang: str, key: str) -> Path:
    """The directory of one build: ``<cache>/<lang>/<key>``."""
    return cache_dir(lang, key)


def hash_inputs(parts: Iterable[bytes | str]) -> str:
    """sha256 over an ordered sequence of build inputs (sources, manifest, toolchain versions)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (see :func:`provbatch.files.sha256_file`)."""
    return sha256_file(path)


# --------------------------------------------------------------------------- artifacts: recorded, verified

#: per process: (path, inode, size, mtime, ctime) -> sha256 already verified, so that the
#: loader's look-up right after :func:`cached_build` does not hash the library twice
_verified: dict[tuple[str, int, int, int, int], str] = {}


def _stamp(path: Path, st: os.stat_result) -> tuple[str, int, int, int, int]:
    return (str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _recorded(build_dir: Path) -> dict[str, str]:
    try:
        data = json.loads(read_private(build_dir / RECORD, WHAT))
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError):
        return {}  # a torn or foreign record: every artifact counts as unrecorded, so it is rebuilt
    artifacts = data.get("artifacts") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in artifacts.items()} if isinstance(artifacts, dict) else {}


def record_artifact(artifact: Path) -> str:
    """Record the sha256 of an artifact provbatch just built (under the entry's lock); made ``0600``.

    Called by :func:`cached_build` for the artifact it asked for, and by a build
    that leaves the same library under a second name (Nim).
    """
    st = os.lstat(artifact)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(f"{artifact}: the build left no regular file (in the {WHAT})")
    os.chmod(artifact, 0o600)
    st = check_private(artifact, WHAT)
    digest = sha256_file(artifact)
    recorded = _recorded(artifact.parent)
    recorded[artifact.name] = digest
    atomic_write(artifact.parent / RECORD, json.dumps({"artifacts": recorded}, indent=1, sort_keys=True) + "\n")
    _verified[_stamp(artifact, os.lstat(artifact))] = digest
    return digest


def verify_artifact(artifact: Path) -> tuple[str | None, str | None]:
    """``(sha256, None)`` when ``artifact`` is the file provbatch built; ``(None, why not)`` when it
    must be rebuilt; ``(None, None)`` when it is missing. Raises :class:`UnsafePathError` for a
    link, a file of another user or one others can write: those are refused, not rebuilt over."""
    try:
        st = os.lstat(artifact)
    except FileNotFoundError:
        return None, None
    if stat.S_ISLNK(st.st_mode):
        check_private(artifact, WHAT, st)  # raises: a link
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(f"{artifact}: not a regular file (in the {WHAT}); remove it (rm -rf {artifact})")
    recorded = _recorded(artifact.parent).get(artifact.name)
    if recorded is None:  # never loaded: rebuilt over, whatever its owner or mode
        return None, "no sha256 recorded for it (built by an older provbatch, or not by provbatch)"
    check_private(artifact, WHAT, st)
    known = _verified.get(_stamp(artifact, st))
    if known == recorded:
        return known, None
    actual = sha256_file(artifact)
    if actual != recorded:
        return None, (f"sha256 {actual[:12]}... differs from the {recorded[:12]}... recorded when provbatch "
                      f"built it (replaced or corrupted)")
    _verified[_stamp(artifact, st)] = actual
    return actual, None


def verified_sha256(artifact: str | Path) -> str:
    """The sha256 of an artifact :func:`cached_build` returned, checked against its record."""
    digest, problem = verify_artifact(Path(artifact))
    if digest is None:
        raise PluginLoadError(f"{artifact}: {problem or 'missing'} (in the {WHAT})")
    return digest


def _lock(path: Path) -> Any:
    """A file lock beside an entry; never through a planted link (the lock file is truncated)."""
    from filelock import FileLock

    if os.path.islink(path):
        check_private(path, WHAT)  # raises: a link
    return FileLock(str(path))


def cached_build(
    lang: str,
    key: str,
    artifact_name: str,
    build: Callable[[Path], None],
    reason: str = "no cached build",
) -> tuple[Path, bool]:
    """Return the artifact for ``key``, building it under a lock if absent or not the one provbatch built.

    ``build(build_dir)`` must create ``build_dir / artifact_name``; it should
    write to a temporary name and rename, so a crash never leaves a torn
    artifact. Its sha256 is then recorded in the entry (:data:`RECORD`); a
    later load compares the file with it and rebuilds, saying why, when it
    differs. ``reason`` is logged when a build happens (see
    :func:`rebuild_reason`). Returns ``(artifact_path, built_now)``.
    """
    build_dir = entry_dir(lang, safe_component(key, WHAT))
    artifact = build_dir / safe_component(artifact_name, WHAT)
    digest, problem = verify_artifact(artifact)
    if digest is not None:
        return artifact, False
    if problem is not None:
        (log.warning if "differs" in problem else log.info)("%s build %s: %s: %s; rebuilding", lang, key[:12], artifact, problem)
    with _lock(build_dir.with_name(build_dir.name + ".lock")):
        digest, problem_now = verify_artifact(artifact)
        if digest is not None:  # another process built it while we waited
            log.info("%s build %s: built by another process", lang, key[:12])
            return artifact, False
        if problem_now is not None:
            artifact.unlink()
        if problem is None:
            log.info("%s build %s: %s, building", lang, key[:12], reason)
        build(build_dir)
        if not os.path.lexists(artifact):
            raise RuntimeError(f"build finished without producing {artifact}")
        record_artifact(artifact)
        return artifact, True


# --------------------------------------------------------------------------- why a rebuild happens


def _source_record(lang: str, source: str) -> Path:
    name = hashlib.sha1(source.encode()).hexdigest()[:20]
    return cache_dir(lang, "sources") / f"{name}.json"


def rebuild_reason(lang: str, source: str, parts: Mapping[str, str]) -> str:
    """Why the build of ``source`` is needed: "no cached build", or which named input changed.

    ``parts`` are the named digests the cache key is made of (e.g. ``source``,
    ``manifest``, ``toolchain``); they are compared with those recorded by
    :func:`remember_build` for the same source path.
    """
    try:
        previous = json.loads(read_private(_source_record(lang, source), WHAT))
    except (OSError, ValueError, UnsafePathError):
        return "no cached build"
    changed = [name for name in parts if previous.get(name) != parts[name]]
    if not changed:
        return "no cached build (the previous build was removed)"
    return " and ".join(f"{name} changed" for name in changed)


def remember_build(lang: str, source: str, parts: Mapping[str, str]) -> None:
    """Record the inputs of the last build of ``source``, for :func:`rebuild_reason`."""
    atomic_write(_source_record(lang, source), json.dumps({"source_path": source, **parts}, indent=1))


# --------------------------------------------------------------------------- shipping artifacts to workers


def artifact_bytes(spec: Any) -> bytes:
    """The bytes of the driver's built artifact, checked against ``spec.artifact_sha256``.

    What a distributed backend puts in its object store (``spec.with_blob(...)``)
    so that a worker on another node can load the plugin without building it.
    """
    data = Path(spec.artifact).read_bytes()
    if not spec.artifact_sha256 or hashlib.sha256(data).hexdigest() != spec.artifact_sha256:
        raise RuntimeError(f"{spec.artifact}: changed since it was built (sha256 mismatch)")
    return data


def _blob_bytes(blob: Any) -> bytes:
    if isinstance(blob, (bytes, bytearray, memoryview)):
        return bytes(blob)
    import ray  # an ObjectRef (the only other kind of blob a backend sets)

    return bytes(ray.get(blob))


def _is_the_build(candidate: Path, expected: str) -> tuple[bool, str | None]:
    """Whether ``candidate`` holds the driver's build: ``(True, None)``, or ``(False, why not)``
    (``None`` when it is simply not there)."""
    try:
        st = os.lstat(candidate)
    except FileNotFoundError:
        return False, None
    try:
        check_private(candidate, WHAT, st)
    except UnsafePathError as exc:
        return False, str(exc).split(": ", 1)[-1]
    if not stat.S_ISREG(st.st_mode):
        return False, "not a regular file"
    known = _verified.get(_stamp(candidate, st))
    if (known or sha256_file(candidate)) != expected:
        return False, "its sha256 is not the one the driver built"
    _verified[_stamp(candidate, st)] = expected
    return True, None


def local_artifact(spec: Any, lang: str) -> Path:
    """The spec's artifact as a file on this node whose sha256 is the driver's; never built here.

    Returns ``spec.artifact`` when it is here with the sha256 the driver
    recorded at the build; otherwise this node's copy under the same
    ``<lang>/<key>/<name>`` in its cache, or, failing that, writes the
    shipped ``spec.artifact_blob`` there (sha256 checked first, atomic
    rename, ``0600``). A spec without a sha256 is refused: a worker loads
    only a build it can check.
    """
    expected = spec.artifact_sha256
    if not expected:
        raise PluginLoadError(f"{spec.source}: the plugin spec carries no sha256 of the built plugin; "
                              f"a worker loads only a build it can check")
    original = Path(spec.artifact)
    local = entry_dir(lang, safe_component(original.parent.name, WHAT)) / safe_component(original.name, WHAT)
    refused = []
    for candidate in dict.fromkeys([original, local]):
        ok, why = _is_the_build(candidate, expected)
        if ok:
            return candidate
        if why:
            refused.append(f"{candidate}: {why}")
    if spec.artifact_blob is None:
        found = "; ".join(refused) + ", and no build was shipped" if refused else (
            f"the built plugin {original} is missing on this node and was not shipped")
        raise PluginLoadError(f"{spec.source}: {found} (workers never build; run the build on this node "
                              f"first or use a backend that ships artifacts)")
    data = _blob_bytes(spec.artifact_blob)
    if hashlib.sha256(data).hexdigest() != expected:
        raise PluginLoadError(f"{spec.source}: the shipped build does not match its sha256")
    if os.path.lexists(local):
        check_private(local, WHAT)
    atomic_write(local, data)
    record_artifact(local)
    log.info("%s: wrote the shipped build to %s", spec.source, local)
    return local

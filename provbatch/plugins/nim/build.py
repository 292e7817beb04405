"""Building a Nim plugin into a shared library, in the build cache.

``build_plugin(path)`` compiles ``path`` with ``nim c --app:lib`` and
provbatch's bridge first on the Nim path (so ``import nimpy`` is ours) into
a CPython extension module for the running Python (its headers on the C
include path), and returns the library. Builds are cached (see :mod:`..cache`):

- the cache key hashes the plugin's path and source, the bridge's sources,
  the nim version, the compile flags and the Python the extension is built
  for (the log says which one changed when a rebuild happens);
- the modules the plugin imports from outside the Nim library and the bridge
  (a helper beside the plugin) and the config files nim read are recorded in
  ``deps.json`` with their hashes after each build; the artifact's name
  carries a digest of their current contents, so editing a helper rebuilds.

Everything (nimcache, library, build log) goes to the cache directory: nim
runs with the cache directory as its working directory and absolute
``--nimcache``/``-o`` paths, and nothing is written beside the plugin.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from ...errors import PluginLoadError
from ...files import read_private
from ..cache import (
    WHAT,
    cached_build,
    entry_dir,
    file_sha256,
    hash_inputs,
    rebuild_reason,
    record_artifact,
    remember_build,
)

log = logging.getLogger("provbatch.build")

LANG = "nim"
NIM_MISSING = "nim not found: install it with apt-get install -y nim"
#: orc: cycles in a state are collected; threads off: the bridge runs the Nim code
#: of a library in one thread at a time (its lock); noSignalHandler: Python keeps
#: its own SIGINT/SIGSEGV handlers; useMalloc: Nim allocates with the process's
#: malloc (Nim's own allocator gives a page back and takes it again on every call
#: that allocates one string: 10 % of a trivial call).
COMPILE_FLAGS: tuple[str, ...] = (
    "c",
    "--app:lib",
    "-d:release",
    "--gc:orc",
    "--threads:off",
    "-d:noSignalHandler",
    "-d:useMalloc",
    "--colors:off",
    "--hint:all:off",
    "--hint:Processing:on",
    "--processing:filenames",
)
_ERROR = re.compile(r"^(?P<file>.+?)\((?P<line>\d+), (?P<col>\d+)\) Error: (?P<msg>.*)$")
_MISSING_MODULE = re.compile(r"^cannot open file: (?P<module>\S+)$")
_INSTANTIATION = re.compile(r"^(?P<file>.+?)\((?P<line>\d+), (?P<col>\d+)\) template/generic instantiation")
_C_ERROR = re.compile(r"^(?P<file>[^:\s]+):(?P<line>\d+):(?:\d+:)? (?:fatal )?error: (?P<msg>.*)$")
_PROCESSING = re.compile(r"(?:import|include): (?P<file>/.+?) \[Processing\]$")


def python_include() -> str:
    """The directory of ``Python.h`` of the running Python: the bridge compiles against it."""
    include = sysconfig.get_paths()["include"]
    if not os.path.isfile(os.path.join(include, "Python.h")):
        raise PluginLoadError(
            f"{include}/Python.h not found: the Python development headers are needed to build Nim plugins "
            f"(apt-get install -y python3-dev for the system Python)"
        )
    return include


def python_target() -> str:
    """The Python an extension is built for: its version and ABI (a part of the cache key)."""
    return f"{sys.implementation.cache_tag} {sysconfig.get_config_var('SOABI')} {sys.version}"


def bridge_dir() -> Path:
    """The directory holding our ``nimpy.nim``: $PROVBATCH_NIM_BRIDGE, else a copy shipped
    as package data (``provbatch/plugins/nim/bridge``), else the repository's
    ``nim_plugins/bridge``."""
    env = os.environ.get("PROVBATCH_NIM_BRIDGE")
    here = Path(__file__).resolve().parent
    candidates = [Path(env)] if env else [here / "bridge", here.parents[2] / "nim_plugins" / "bridge"]
    for path in candidates:
        if (path / "nimpy.nim").is_file():
            return path.resolve()  # nim reports the files it reads by resolved path (bridge is a link)
    raise PluginLoadError(
        f"{candidates[-1]}: provbatch's Nim bridge (nimpy.nim) not found; set PROVBATCH_NIM_BRIDGE to its directory"
    )


def bridge_files() -> list[Path]:
    root = bridge_dir()
    return sorted(p for p in root.rglob("*.nim") if p.is_file())


def nim_executable(plugin: Path | None = None) -> str:
    nim = shutil.which("nim")
    if nim is None:
        raise PluginLoadError(f"{plugin}: {NIM_MISSING}" if plugin else NIM_MISSING)
    return nim


@functools.lru_cache(maxsize=4)
def _version_of(nim: str, mtime: float) -> str:
    out = subprocess.run([nim, "--version"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0].strip() if out else "unknown"


def nim_version(nim: str) -> str:
    """First line of ``nim --version`` (e.g. "Nim Compiler Version 1.6.10 [Linux: amd64]")."""
    return _version_of(nim, os.stat(nim).st_mtime)


#: directories searched for imported Nim modules (e.g. nimble packages), os.pathsep-separated
NIM_PATH_ENV = "PROVBATCH_NIM_PATH"


def search_paths(given: Any = None) -> list[str]:
    """``--path:`` directories for nim: the ``nim_path`` option (a path or a list), then
    ``$PROVBATCH_NIM_PATH``; absolute, so that the cache key names them exactly."""
    if given is None:
        given = []
    elif isinstance(given, (str, os.PathLike)):
        given = [given]
    paths = [os.fspath(p) for p in given] + [p for p in os.environ.get(NIM_PATH_ENV, "").split(os.pathsep) if p]
    return list(dict.fromkeys(os.path.abspath(os.path.expanduser(p)) for p in paths))


def key_parts(path: Path, nim: str, paths: list[str] | None = None) -> dict[str, str]:
    """Named digests of everything known before building that decides the library's bytes."""
    root = bridge_dir()
    bridge: list[bytes | str] = []
    for file in bridge_files():
        bridge += [str(file.relative_to(root)), file.read_bytes()]
    parts = {
        "source": hash_inputs([str(path), path.read_bytes()]),
        "bridge": hash_inputs(bridge),
        "toolchain": hash_inputs([nim_version(nim)]),
        "flags": hash_inputs(["provbatch-nim-2", *COMPILE_FLAGS]),
        "python": hash_inputs([python_target(), python_include()]),
    }
    if paths:  # the files read from them are dependencies (deps.json); the directories are inputs
        parts["nim_path"] = hash_inputs(paths)
    return parts


# ---------------------------------------------------------------- dependencies beside the plugin


def _deps_digest(files: list[str]) -> str:
    """Digest of the current contents of the recorded dependency files."""
    parts: list[bytes | str] = []
    for file in sorted(files):
        try:
            parts += [file, file_sha256(file)]
        except OSError:
            parts += [file, "missing"]
    return hash_inputs(parts)


def recorded_dependencies(build_dir: Path) -> dict[str, str]:
    """The files (path -> sha256) the last build in ``build_dir`` read besides the plugin; {} when none is recorded.

    Also what the run record stores of a Nim plugin (provenance.capture): one reader of deps.json.
    """
    try:
        return json.loads(read_private(build_dir / "deps.json", WHAT))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def artifact_name(build_dir: Path) -> tuple[str, str | None]:
    """Name of the library for the current state of the recorded dependencies,
    and why it must be built when a recorded dependency changed."""
    recorded = recorded_dependencies(build_dir)
    name = f"lib-{_deps_digest(list(recorded))[:16]}.so"
    if recorded and not (build_dir / name).exists():
        changed = [f for f, sha in recorded.items() if not os.path.exists(f) or file_sha256(f) != sha]
        return name, f"{', '.join(changed) or 'a dependency'} changed"
    return name, None


def _dependencies(output: str, plugin: Path, bridge: Path, build_dir: Path) -> list[str]:
    """Files nim read that the cache key does not cover: local imports and config files."""
    files = [m.group("file") for m in map(_PROCESSING.search, output.splitlines()) if m]
    system = next((f for f in files if f.endswith("/system.nim")), None)
    nim_lib = str(Path(system).parent) + os.sep if system else None
    local = {
        f for f in files
        if f != str(plugin) and not f.startswith(str(bridge) + os.sep)
        and not (nim_lib and f.startswith(nim_lib))
    }
    for json_file in (build_dir / "nimcache").glob("*.json"):
        try:
            local.update(json.loads(json_file.read_text()).get("configFiles", []))
        except (OSError, ValueError):
            pass
    return sorted(f for f in local if os.path.isfile(f))


# ---------------------------------------------------------------- errors


def compile_error(output: str, plugin: Path, log_path: Path) -> str:
    """One line: ``file:line: message`` of the first error (placed in the plugin when
    the error is inside a macro or generic it instantiated) and the full log's path."""
    last_in_plugin: str | None = None
    for line in output.splitlines():
        instantiation = _INSTANTIATION.match(line)
        if instantiation and instantiation.group("file") == str(plugin):
            last_in_plugin = f"{plugin}:{instantiation.group('line')}"
            continue
        error = _ERROR.match(line)
        if error:
            where = f"{error.group('file')}:{error.group('line')}"
            if error.group("file") != str(plugin) and last_in_plugin:
                where = last_in_plugin
            missing = _MISSING_MODULE.match(error.group("msg"))
            if missing:
                module = missing.group("module")
                package = module.split("/")[0]
                return (f"{where}: cannot import module '{module}': it is not in Nim's standard library nor beside "
                        f"the plugin; if it comes from a nimble package, install it (e.g. nimble install {package}) and "
                        f"give the directory holding it with --nim-path DIR or {NIM_PATH_ENV} (full build log: {log_path})")
            return f"{where}: {error.group('msg')} (full build log: {log_path})"
    c_error = next(filter(None, map(_C_ERROR.match, output.splitlines())), None)
    if c_error:  # nim's C output did not compile (an {.emit.}, a bad importc header)
        detail = f"C compiler error: {c_error.group('msg')}"
    else:
        other = next((line.strip() for line in output.splitlines() if "Error:" in line), None)
        detail = other or (output.strip().splitlines() or ["nim failed without output"])[-1]
    if len(detail) > 300:
        detail = detail[:297] + "..."
    return f"{plugin}: nim build failed: {detail} (full build log: {log_path})"


# ---------------------------------------------------------------- building


def _compile(plugin: Path, nim: str, build_dir: Path, name: str, paths: list[str] | None = None) -> None:
    bridge = bridge_dir()
    tmp = build_dir / f"{name}.{os.getpid()}.tmp"
    command = [
        nim, *COMPILE_FLAGS,
        f"--nimcache:{build_dir / 'nimcache'}",
        f"-o:{tmp}",
        f"--path:{bridge}",
        f"--passC:-I{python_include()}",
        *(f"--path:{p}" for p in paths or []),
        str(plugin),
    ]
    proc = subprocess.run(command, cwd=build_dir, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
    output = proc.stdout + proc.stderr
    log_path = build_dir / "build.log"
    log_path.write_text(" ".join(command) + "\n\n" + output)
    if proc.returncode != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        raise PluginLoadError(compile_error(output, plugin, log_path))
    deps = _dependencies(output, plugin, bridge, build_dir)
    os.replace(tmp, build_dir / name)
    rebuilt_name = f"lib-{_deps_digest(deps)[:16]}.so"
    if rebuilt_name != name and not os.path.lexists(build_dir / rebuilt_name):
        os.link(build_dir / name, build_dir / rebuilt_name)
        record_artifact(build_dir / rebuilt_name)  # cached_build records `name`
    manifest = build_dir / f"deps.json.{os.getpid()}.tmp"
    manifest.write_text(json.dumps({"files": {f: file_sha256(f) for f in deps}}, indent=1))
    os.replace(manifest, build_dir / "deps.json")


def build_plugin(plugin: Path, nim_path: Any = None) -> tuple[Path, bool]:
    """The plugin's library in the build cache, built if needed: ``(path, built_now)``.

    ``nim_path``: directories searched for imported modules (see :func:`search_paths`)."""
    nim = nim_executable(plugin)
    paths = search_paths(nim_path)
    try:
        parts = key_parts(plugin, nim, paths)
    except OSError as exc:
        raise PluginLoadError(f"{plugin}: cannot read plugin: {exc}") from exc
    key = hash_inputs([f"{name}={digest}" for name, digest in sorted(parts.items())])
    build_dir = entry_dir(LANG, key)  # the directory cached_build uses for this key
    name, deps_reason = artifact_name(build_dir)
    reason = deps_reason or rebuild_reason(LANG, str(plugin), parts)
    artifact, built = cached_build(LANG, key, name, lambda directory: _compile(plugin, nim, directory, name, paths), reason=reason)
    if built:
        remember_build(LANG, str(plugin), parts)
        # the name the next load will look for (the dependencies are known now)
        current, _ = artifact_name(build_dir)
        if (build_dir / current).exists():
            artifact = build_dir / current
    return artifact, built

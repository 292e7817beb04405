"""Loader for Rust plugins: a single ``.rs`` file, or a crate directory with a ``Cargo.toml``.

The plugin is built with maturin against pyo3 into the build cache (see
:mod:`..cache` and :mod:`.build`) and imported as an extension module:

* the cache key hashes the sources, the manifest, the toolchain versions,
  the pyo3 version and the target Python, so an unchanged plugin loads from
  the cache without running cargo, and every rebuild logs why it happened;
* all plugins share one cargo target directory (``<cache>/rust/target``), so
  pyo3 and common crates compile once;
* the module is imported as ``_provbatch_rust_<key>.<name>``: a name unique
  per build, so two versions of one plugin can live in one process;
* the ``#[classattr]`` constants of the ``Constants`` class (name set by the
  ``constants_class`` option) become module attributes, so the module looks
  like a Python plugin to the rest of provbatch.

Workers load the built library through :meth:`RustLoader.load_spec`, which
never builds: the file is taken from the cache, or written there from the
bytes a distributed backend shipped (``spec.artifact_blob``).
"""

from __future__ import annotations

import builtins
import dataclasses
import functools
import importlib.machinery
import importlib.util
import logging
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from ...errors import PluginLoadError
from ..base import Loader, PluginSpec, finish_module
from ..cache import (
    artifact_bytes,
    cache_dir,
    cached_build,
    hash_inputs,
    local_artifact,
    rebuild_reason,
    remember_build,
    verified_sha256,
)
from . import build as rust_build

__all__ = ["RustLoader", "artifact_bytes"]

log = logging.getLogger("provbatch.build")

LANG = "rust"
DEFAULT_CONSTANTS_CLASS = "Constants"
_CONSTANT_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_KNOWN_OPTIONS = {"constants_class"}


def shared_target_dir(pyo3: rust_build.Pyo3Choice | None = None) -> Path:
    """The cargo target directory shared by every Rust plugin build against one pyo3 line.

    Plugins built with an older pyo3 (legacy GIL-ref code, an author's pin) get a
    target directory of their own, so that the two pyo3 builds never evict each other.
    """
    if pyo3 is None or pyo3.version == rust_build.PYO3_VERSION and not pyo3.spec:
        return cache_dir(LANG, "target")
    return cache_dir(LANG, f"target-pyo3-{re.sub(r'[^0-9A-Za-z.]+', '_', pyo3.version)}")


def import_name(key: str, module_name: str) -> str:
    """The ``sys.modules`` name of one build: unique per build, ends in the pyo3 module's name.

    Python calls ``PyInit_<last component>``, so the last component must be
    the name given in ``#[pymodule]``; the package part carries the key.
    """
    return f"_provbatch_rust_{key[:16]}.{module_name}"


def load_extension(path: Path, name: str) -> ModuleType:
    """Import the extension module at ``path`` as ``name`` (or return it if this process has it)."""
    existing = sys.modules.get(name)
    if existing is not None:
        return existing
    loader = importlib.machinery.ExtensionFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, str(path), loader=loader)
    if spec is None:  # pragma: no cover - only for paths importlib cannot handle
        raise PluginLoadError(f"{path}: cannot import the built Rust plugin")
    module = importlib.util.module_from_spec(spec)
    try:
        loader.exec_module(module)
    except ImportError as exc:
        raise PluginLoadError(
            f"{path}: cannot import the built Rust plugin as '{name}': {exc} "
            f"(the #[pymodule] must be named like the crate's [lib] name)"
        ) from exc
    sys.modules[name] = module
    return module


def _constant_value(value: Any) -> Any:
    """Rust arrays and tuples arrive as lists/tuples: sequences become lists of str or of tuples.

    ``[&str; N]`` -> ``["a", "b"]``; ``[(&str, &str, &str, &str); N]`` or
    ``[[&str; 4]; N]`` -> list of 4-tuples, the shape of ``PARAMETERS``.
    """
    if isinstance(value, (list, tuple)):
        return [tuple(item) if isinstance(item, (list, tuple)) else item for item in value]
    return value


def apply_constants(module: ModuleType, class_name: str, source: str, explicit: bool) -> None:
    """Copy the UPPER_CASE class attributes of the constants class onto the module."""
    holder = getattr(module, class_name, None)
    if holder is None:
        if explicit:
            raise PluginLoadError(
                f"{source}: no #[pyclass] named '{class_name}' (the constants_class option) in the plugin"
            )
        return  # the metadata check names the missing constants
    for name, value in vars(holder).items():
        if _CONSTANT_NAME.match(name):
            setattr(module, name, _constant_value(value))


def _fix_class_modules(module: ModuleType) -> None:
    """pyo3 classes report ``__module__ == "builtins"``; point them at the plugin module instead.

    Gives readable reprs and error messages (``<_provbatch_rust_...state_counter.Totals>``).
    """
    for value in vars(module).values():
        if isinstance(value, type) and value.__module__ == "builtins" and getattr(builtins, value.__name__, None) is not value:
            try:
                value.__module__ = module.__name__
            except (TypeError, AttributeError):  # pragma: no cover - immutable type
                pass


#: the plugin functions the engine calls; a Rust panic in them becomes an ordinary error
_GUARDED = ("compute", "initialize", "finalize", "merge")


def _is_panic(exc: BaseException) -> bool:
    return type(exc).__name__ == "PanicException" and type(exc).__module__ == "pyo3_runtime"


def _panic_guard(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn pyo3's ``PanicException`` (a ``BaseException``) into a ``RuntimeError``.

    A panic is a bug of one call, like an exception in a Python plugin: the engine
    should record that entity's failure, not stop the whole batch as it must
    for KeyboardInterrupt or SystemExit.
    """

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BaseException as exc:
            if _is_panic(exc):
                raise RuntimeError(f"Rust panic in {name}: {exc}") from exc
            raise

    vars(guarded)["__provbatch_panic_guard__"] = True  # the function's __dict__: callables declare no such attribute
    return guarded


def _guard_functions(module: ModuleType) -> None:
    for name in _GUARDED:
        func = getattr(module, name, None)
        if callable(func) and not getattr(func, "__provbatch_panic_guard__", False):
            setattr(module, name, _panic_guard(name, func))


class RustLoader(Loader):
    lang = LANG

    def __init__(self) -> None:
        #: whether the last :meth:`load` built the plugin (False: loaded from the cache)
        self.last_built = False

    def load(self, path: Path, **options: Any) -> ModuleType:
        unknown = set(options) - _KNOWN_OPTIONS
        if unknown:
            raise PluginLoadError(f"{path}: unknown option(s) for a Rust plugin: {', '.join(sorted(unknown))}")
        toolchain = rust_build.find_toolchain(path)
        project = rust_build.describe(path)
        choice = project.pyo3
        if choice is not None and choice.legacy is not None:
            how = "as pinned by its // [dependencies] line" if choice.pinned else "the newest pyo3 that compiles it"
            log.info("%s: legacy pyo3 API: building with %s (%s; %s; 'provbatch check' says how to migrate)",
                     path.name, choice.describe(), choice.legacy, how)
        parts = rust_build.key_parts(project, toolchain)
        key = hash_inputs(f"{name}={value}" for name, value in sorted(parts.items()))
        artifact_name = project.module_name + rust_build.extension_suffix()
        artifact, built = cached_build(
            LANG, key, artifact_name, lambda build_dir: self._build(project, toolchain, build_dir, artifact_name),
            reason=rebuild_reason(LANG, str(path), parts),
        )
        if built:
            remember_build(LANG, str(path), parts)
        self.last_built = built
        spec = PluginSpec(
            lang=LANG,
            source=str(path),
            artifact=str(artifact),
            artifact_sha256=verified_sha256(artifact),
            options=tuple(sorted(options.items())),
        )
        return self._import(artifact, project.module_name, spec)

    def _build(self, project: rust_build.RustProject, toolchain: rust_build.Toolchain, build_dir: Path, artifact_name: str) -> None:
        """Generate the crate, run maturin, keep the extension; a failure becomes a one-line error."""
        from filelock import FileLock

        crate_dir, wheel_dir, log_path = build_dir / "crate", build_dir / "wheel", build_dir / "build.log"
        rust_build.generate_crate(project, crate_dir)
        target = shared_target_dir(project.pyo3)
        # cargo serializes builds on a target dir anyway; holding our lock until the
        # wheel is written keeps another build from replacing target/release/lib<name>.so meanwhile.
        with FileLock(str(target) + ".lock"):
            ok = rust_build.run_maturin(toolchain, crate_dir, target, wheel_dir, log_path)
        if not ok:
            text = log_path.read_text(encoding="utf-8", errors="replace")
            summary = rust_build.summarize_build_error(project, crate_dir, text)
            hint = rust_build.registry_hint(project, text)
            raise PluginLoadError(f"{project.path}: Rust build failed: {summary}{hint}; full build log: {log_path}")
        rust_build.extract_extension(wheel_dir, project.module_name, build_dir / artifact_name)
        shutil.rmtree(wheel_dir, ignore_errors=True)

    def _import(self, artifact: Path, module_name: str, spec: PluginSpec) -> ModuleType:
        key = artifact.parent.name
        module = load_extension(artifact, import_name(key, module_name))
        _fix_class_modules(module)
        _guard_functions(module)
        options = dict(spec.options)
        class_name = str(options.get("constants_class", DEFAULT_CONSTANTS_CLASS))
        apply_constants(module, class_name, spec.source, explicit="constants_class" in options)
        if callable(getattr(module, "initialize", None)):
            # A #[pyclass] state cannot be pickled into another process: every worker
            # makes its own with initialize() and hands it to finalize().
            spec = dataclasses.replace(spec, process_local_state=True)
        return finish_module(module, LANG, spec)

    def load_spec(self, spec: PluginSpec) -> ModuleType:
        """Load the driver's build in a worker; never builds (see :func:`.cache.local_artifact`)."""
        if not spec.artifact:
            raise PluginLoadError(f"{spec.source}: the Rust plugin spec has no built artifact")
        artifact = local_artifact(spec, LANG)
        module_name = artifact.name.split(".")[0]  # "<module>.cpython-311-x86_64-linux-gnu.so"
        return self._import(artifact, module_name, spec)

    def versions(self) -> dict[str, str]:
        try:
            toolchain = rust_build.find_toolchain(Path("<rust>"))
        except PluginLoadError:
            return {}
        return {name: value.splitlines()[0] for name, value in toolchain.versions.items()}


"""The interface every language loader implements, and the spec that ships a plugin to workers."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class PluginSpec:
    """Everything a worker process needs to load the plugin the driver loaded.

    Picklable and small: it travels to every worker once. Compiled languages
    fill ``artifact`` (the built library in the build cache) and
    ``artifact_sha256``; a worker that does not find that file (another node)
    gets its bytes through ``artifact_blob`` (a Ray object ref, set by the Ray
    backend) and never compiles.
    """

    lang: str
    #: absolute path of the plugin file or crate directory, or ``module:NAME``
    #: for a plugin installed as a Python module.
    source: str
    artifact: str | None = None
    artifact_sha256: str | None = None
    #: loader options given to ``importer`` (e.g. the Rust constants class name)
    options: tuple[tuple[str, Any], ...] = ()
    #: True when the plugin's state cannot leave the process that created it
    #: (e.g. a Nim ``ref object`` handle): initialize/finalize then run per worker.
    process_local_state: bool = False
    artifact_blob: Any = field(default=None, compare=False)

    def with_blob(self, blob: Any) -> PluginSpec:
        return replace(self, artifact_blob=blob)


class Loader:
    """Loads plugins of one language.

    ``load`` runs on the driver: it may build (compiled languages) and returns
    the module, with ``__lang__`` and ``__provbatch_spec__`` set.
    ``load_spec`` runs in workers and must never build.
    """

    lang: str = ""

    def load(self, path: Path, **options: Any) -> ModuleType:  # pragma: no cover - interface
        raise NotImplementedError

    def load_spec(self, spec: PluginSpec) -> ModuleType:  # pragma: no cover - interface
        raise NotImplementedError

    def versions(self) -> dict[str, str]:
        """Versions of the toolchain this loader uses (recorded in run provenance)."""
        return {}


def finish_module(module: ModuleType, lang: str, spec: PluginSpec) -> ModuleType:
    """Set the attributes every loaded plugin module carries (through vars(): ModuleType declares none of them)."""
    vars(module).update(__lang__=lang, __provbatch_spec__=spec)
    return module

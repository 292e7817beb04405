"""The execution backends by name: ``auto``, ``serial``, ``pool``, ``ray`` and ``slurm``.

Each backend is registered once, by name, with the ``"module:Class"`` of its
pool, which is imported only when a batch uses it (as joblib registers its
backends): ``--help``, and every batch that does not use Ray or Slurm, never
import them. Every pool is made the same way, ``Class(n_workers, config,
state, options)`` (:func:`make_pool`; the shape is described in :mod:`.base`).
``--backend``'s choices and the check of the option read :func:`backend_names`.

Adding a backend (a second cluster engine, say) is one module with a
:class:`~.base.Pool` subclass of that constructor shape and one
:func:`register_backend` line below.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import OptionError, literal

if TYPE_CHECKING:  # pragma: no cover - types only: importing .base loads the runner and the plugin registry
    from .base import Pool, PoolOptions
    from .runner import RunnerConfig


@dataclass(frozen=True)
class Backend:
    """One execution backend: its name, its pool (``module:Class``, imported on first use), what it does."""

    name: str
    target: str
    summary: str
    #: how messages name it ("the local pool backend", "Ray cannot be imported")
    title: str
    #: computes in the driver's process (serial, auto): the driver initializes the state and its
    #: crash-prone plugins (native code) are moved to an isolated worker instead
    in_driver: bool = False
    #: a module that must import for this backend to work (``ray``), checked before the pool is made
    requires: str | None = None
    #: the backend used instead when ``requires`` does not import (said in the report)
    fallback: str | None = None
    #: ``"module:function"`` deciding, at the start of a run, which backend the run uses when this
    #: one is asked for: ``function(address, workers) -> name`` (auto: Ray when a Ray cluster is named,
    #: serial for one worker); None: this one
    chooser: str | None = None
    #: computes in the driver and may start workers later (auto): it gets a copy of the driver's
    #: state, so that those workers start from the state initialize made, not one computed on
    copies_state: bool = False


_BACKENDS: dict[str, Backend] = {}


def register_backend(name: str, target: str, summary: str, *, title: str | None = None, in_driver: bool = False,
                     requires: str | None = None, fallback: str | None = None, chooser: str | None = None,
                     copies_state: bool = False) -> None:
    """Register (or replace) a backend; ``target`` is ``"module:Class"`` of its pool (or of a function
    of the same shape that returns one)."""
    _BACKENDS[name] = Backend(name, target, summary, title or name, in_driver, requires, fallback, chooser, copies_state)


register_backend("auto", "provbatch.execution.auto:AutoPool",
                 "in the driver, or local worker processes when that pays off; Ray when address/RAY_ADDRESS is set",
                 in_driver=True, chooser="provbatch.execution.auto:choose_backend", copies_state=True)
register_backend("serial", "provbatch.execution.serial:serial_backend", "in the driver, one chunk at a time",
                 in_driver=True)
register_backend("pool", "provbatch.execution.local_pool:LocalPool", "worker processes on this machine",
                 title="local pool")
register_backend("ray", "provbatch.execution.ray:RayPool", "Ray actors, on this machine or a Ray cluster",
                 title="Ray", requires="ray", fallback="pool")
register_backend("slurm", "provbatch.execution.slurm:SlurmPool", "Slurm job arrays (docs/slurm.md)", title="Slurm")


def unregister_backend(name: str) -> None:
    """Remove a backend (a test's, an extension's that is being unloaded); unknown names are ignored."""
    _BACKENDS.pop(name, None)


def backend_names() -> tuple[str, ...]:
    """The names ``--backend`` accepts, in registration order."""
    return tuple(_BACKENDS)


def backend(name: str) -> Backend:
    """The registered backend ``name``; an :class:`~provbatch.errors.OptionError` naming the choices for any other name."""
    try:
        return _BACKENDS[name]
    except KeyError:
        raise OptionError("backend", f"must be one of {', '.join(_BACKENDS)}, got '{literal(name)}'") from None


def chosen_backend(name: str, address: str | None, workers: int) -> str:
    """The backend a run asking for ``name`` uses (its ``chooser`` decides; never imports the backend's module).

    ``address``: a Ray cluster's (``address``, else None); ``workers``: the number of workers the run uses.
    """
    entry = backend(name)
    if entry.chooser is None:
        return entry.name
    module_name, _, attribute = entry.chooser.partition(":")
    chooser: Callable[[str | None, int], str] = getattr(importlib.import_module(module_name), attribute)
    return backend(chooser(address, workers)).name


def import_problem(name: str) -> str | None:
    """None when what backend ``name`` requires imports (or it requires nothing), else why not."""
    required = backend(name).requires
    if required is None:
        return None
    try:
        importlib.import_module(required)
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot use it"
        return f"{type(exc).__name__}: {exc}"
    return None


def pool_factory(name: str) -> Callable[[int | None, RunnerConfig, Any, PoolOptions], Pool]:
    """The pool class (or factory) of backend ``name``, imported now."""
    module_name, _, attribute = backend(name).target.partition(":")
    factory: Callable[[int | None, RunnerConfig, Any, PoolOptions], Pool] = getattr(importlib.import_module(module_name),
                                                                                    attribute)
    return factory


def make_pool(name: str, n_workers: int | None, config: RunnerConfig, state: Any, options: PoolOptions) -> Pool:
    """A started pool of backend ``name``: the one way every backend is made.

    ``n_workers`` None lets the backend choose (this machine's CPUs, a Ray
    cluster's, a Slurm partition's).
    """
    return pool_factory(name)(n_workers, config, state, options)

"""Runs chunks of entities through the plugin inside one worker (or the driver).

The same :class:`ChunkRunner` serves every backend, so the semantics of a
compute call (parameters, state, result checks, failure capture) are written
once. Results are formatted to TSV fields here, in the worker, so the driver
only writes lines.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

from .. import multiplug
from ..multiplug.base import PluginSpec
from ..outputs import ResultFormatError, format_logs, format_results
from ..params import STATE
from ..validation import OPTIONAL_CONSTANTS, OPTIONAL_FUNCTIONS

#: one entity's outcome: (entity_id, TSV fields or None if it failed, log strings, error)
#: error = (error class, message, traceback text) or None
Outcome = tuple[str, "list[str] | None", list[str], "tuple[str, str, str] | None"]
Chunk = list[tuple[str, str]]


@dataclass(frozen=True)
class RunnerConfig:
    """What every worker needs, sent once per worker."""

    spec: PluginSpec
    params: dict[str, Any]  # resolved parameters, without 'state'
    n_outputs: int
    uses_state: bool  # compute gets state= (initialize exists, or the user gave a state)
    per_worker_state: bool  # this worker runs initialize and finalize itself
    initial_state: Any = None  # the user's state parameter, for a per-worker initialize


def _wrong_shape(value: Any) -> ResultFormatError:
    return ResultFormatError(f"compute must return a 2-tuple (results, logs), got {type(value).__name__}")


class ChunkRunner:
    """The plugin loaded in one process, with its state, computing chunks."""

    def __init__(self, config: RunnerConfig, state: Any = None, module: ModuleType | None = None) -> None:
        self.config = config
        self.module = module or multiplug.load_spec(config.spec, OPTIONAL_CONSTANTS, OPTIONAL_FUNCTIONS)
        if config.per_worker_state:
            init_params = dict(config.params)
            if config.initial_state is not None:
                init_params[STATE] = config.initial_state
            state = self.module.initialize(**init_params)
        self.state = state
        compute = self.module.compute
        params = config.params
        if config.uses_state:
            self._call: Callable[[str], Any] = lambda entity: compute(entity, state=self.state, **params)
        elif params:
            self._call = lambda entity: compute(entity, **params)
        else:
            self._call = compute

    def run_chunk(self, chunk: Chunk) -> tuple[list[Outcome], float]:
        """Compute every entity of the chunk; a failing entity never stops the others."""
        call = self._call
        n_outputs = self.config.n_outputs
        outcomes: list[Outcome] = []
        append = outcomes.append
        started = time.perf_counter()
        for entity_id, entity in chunk:
            try:
                value = call(entity)
                if not isinstance(value, (tuple, list)) or len(value) != 2:
                    raise _wrong_shape(value)
                results, logs = value
                append((entity_id, format_results(results, n_outputs), format_logs(logs), None))
            except Exception as exc:  # the plugin's failure is this entity's outcome
                append((entity_id, None, [], (type(exc).__name__, str(exc), traceback.format_exc())))
        return outcomes, time.perf_counter() - started

    def finish(self, return_state: bool) -> Any:
        """End of the batch in this worker: finalize a per-worker state, or hand the state back for merge."""
        try:
            if self.config.per_worker_state and self.module.finalize is not None:
                self.module.finalize(self.state)
                return None
            return self.state if return_state else None
        finally:
            self.cleanup()

    def cleanup(self) -> None:
        """Let the plugin's loader release what it holds (child processes of a Bash plugin, ...)."""
        cleanup = getattr(self.module, "__provbatch_cleanup__", None)
        if callable(cleanup):
            cleanup()

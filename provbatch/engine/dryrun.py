"""``--dry-run``: what a batch would do, found without doing it.

The plugin is loaded and checked, the parameters resolved, the entities
read and counted (already done in the results file, in the skip file,
duplicates, to compute), exactly as the real run would; then nothing is
computed and nothing is written: no results, logs, report, failures file or
run record. Reading the entities a second time (the real run reads them
again) is the price of a trial that leaves no trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .batch import BatchRun


@dataclass(frozen=True)
class DryRunPlan:
    """The counts and destinations of a run that was not run."""

    plugin: str
    parameters: dict[str, Any]
    entities: str
    read: int
    done: int
    in_skip_file: int
    duplicates: int
    to_compute: int
    done_in: str | None
    trial: str | None
    backend: str
    destinations: list[tuple[str, str]]

    def lines(self) -> list[str]:
        """What ``batch-compute --dry-run`` prints."""
        params = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in self.parameters.items())
        lines = [
            "dry run: nothing computed, nothing written",
            f"plugin      {self.plugin}",
            f"parameters  {params or '(none)'}",
            f"entities    {self.entities}: {self.read} read, {self.done} already done"
            + (f" ({self.done_in})" if self.done_in else "")
            + f", {self.in_skip_file} in the skip file, {self.duplicates} duplicate{'' if self.duplicates == 1 else 's'}: "
            f"{self.to_compute} to compute",
        ]
        if self.trial:
            lines.append(f"trial       {self.trial}")
        lines.append(f"backend     {self.backend}")
        lines.append("would write " + ", ".join(f"{what} {where}" for what, where in self.destinations))
        return lines


def plan_run(run: BatchRun) -> DryRunPlan:
    """Check and count ``run`` (not prepared: no output is opened)."""
    from ..inputs.entities import EntitySource
    from ..inputs.seen_ids import SeenIds
    from ..provenance.rundirs import runs_root

    run.check_inputs(writes=False)
    stream = run.stream
    #: per result sink (outputs/sink.py), the ids it holds from this computation: "already done"
    done_in_sinks = [(sink, SeenIds()) for sink in run.sinks]
    for sink, ids in done_in_sinks:
        sink.add_done_ids(ids)
    skipped = run.done_or_skipped
    seen: set[str] = set()
    done_by = [0] * len(done_in_sinks)
    read = done = duplicates = in_skip = 0
    for entity in stream.raw():
        read += 1
        entity_id = stream.idsproc(entity) if stream.idsproc else entity
        for index, (_sink, ids) in enumerate(done_in_sinks):
            if entity_id in ids:
                done += 1
                done_by[index] += 1
                break
        else:
            if entity_id in skipped:
                in_skip += 1
            elif entity_id in seen:
                duplicates += 1
            else:
                seen.add(entity_id)
    to_compute = len(seen)
    trial_size = run.options.limit or run.options.sample
    loaded = run.loaded
    # each sink says where it would write: the results first, the run's own files next, the other sinks after
    said = [destination for sink in run.sinks if (destination := sink.destination()) is not None]
    results = [where for what, where in said if what == "results"]
    destinations = [
        ("results", results[0] if results else "none (returned to the caller)"),
        ("logs", str(run.options.log) if run.options.log else ("stderr" if run.options.write_std_streams else "none")),
        ("report", str(run.options.report_path) if run.options.report_path else "none"),
        ("failures", run.failures_file.shown if run.failures_file else "none"),
        ("run record", str(run.options.run_dir) if run.options.run_dir else f"under {runs_root()}"),
        *[(what, where) for what, where in said if what != "results"],
    ]
    for sink in run.sinks:
        sink.close()
    where_done = [sink.done_where() for (sink, _ids), count in zip(done_in_sinks, done_by, strict=True) if count]
    source = run.entities
    described = source.describe() if isinstance(source, EntitySource) else "<python iterable>"
    return DryRunPlan(
        plugin=f"{loaded.id} {loaded.version} ({loaded.lang}) {loaded.path or loaded.label}",
        parameters=dict(run.resolved),
        entities=described,
        read=read, done=done, in_skip_file=in_skip, duplicates=duplicates,
        to_compute=min(to_compute, trial_size) if trial_size else to_compute,
        done_in=", ".join(where_done) or None,
        trial=run.trial, backend=run.options.backend + (f", {run.options.workers} workers" if run.options.workers else ""),
        destinations=destinations,
    )

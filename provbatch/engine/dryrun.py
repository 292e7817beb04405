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
from pathlib import Path
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
    from ..outputs.tsv import existing_ids
    from ..provenance.rundirs import runs_root

    run.check_inputs(writes=False)
    stream = run.stream
    out = Path(run.options.out) if run.options.out is not None else None
    done_ids = existing_ids(out, header=run.header_line) if out is not None and out.is_file() else SeenIds()
    sink = run.store_sink
    in_store = set(sink.done_ids()) if sink is not None and not run.options.only_stale else set()
    skipped = run.done_or_skipped
    seen: set[str] = set()
    read = done = done_in_file = duplicates = in_skip = 0
    for entity in stream.raw():
        read += 1
        entity_id = stream.idsproc(entity) if stream.idsproc else entity
        if entity_id in done_ids:
            done += 1
            done_in_file += 1
        elif entity_id in in_store:
            done += 1
        elif entity_id in skipped:
            in_skip += 1
        elif entity_id in seen:
            duplicates += 1
        else:
            seen.add(entity_id)
    to_compute = len(seen)
    trial_size = run.options.limit or run.options.sample
    loaded = run.loaded
    results = "stdout" if out is None else f"{out} ({'appending' if out.is_file() else 'new file'})"
    if out is None and not run.options.write_std_streams:
        results = "none (returned to the caller)"
    destinations = [
        ("results", results),
        ("logs", str(run.options.log) if run.options.log else ("stderr" if run.options.write_std_streams else "none")),
        ("report", str(run.options.report_path) if run.options.report_path else "none"),
        ("failures", run.failures_file.shown if run.failures_file else "none"),
        ("run record", str(run.options.run_dir) if run.options.run_dir else f"under {runs_root()}"),
    ]
    if sink is not None:
        sink.close()
        destinations.append(("store", f"{sink.url} ({'existing' if sink.exists else 'new: would be created'})"))
    where_done = [str(out)] if done_in_file else []
    if done > done_in_file:
        where_done.append("in the store")
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

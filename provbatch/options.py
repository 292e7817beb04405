"""RunOptions: every option of a batch run, declared once.

Each option is one field of :class:`RunOptions`, with its metadata
(:class:`Option`): the help text, the command line's flag, how its value is
checked, and whether ``run_config.json`` records it and ``provbatch rerun``
restores it. Everything else derives from the declaration:

- the Python API (:func:`provbatch.run_batch`, :func:`provbatch.iter_batch`)
  takes the fields as keyword arguments;
- the command line generates its click options from it
  (:func:`provbatch.cli.run.run_options`);
- :mod:`provbatch.provenance.capture` records the options marked
  ``record`` in run_config.json's ``execution``, and
  :mod:`provbatch.provenance.rerun` restores those marked ``rerun``
  (:meth:`RunOptions.restored`).

Adding an option is one field here plus its use. Errors name options in API
words (``workers must be 1 or more``); the command line, at its edge,
names the flag instead (``--workers must be 1 or more``; see
:class:`OptionError` and :func:`flag_of`). What a run records about itself
(the report's remarks and ``trial``) names the flags, for every run, as it
always did.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError
from .execution.registry import backend_names

#: why a computation is run (the report's ``reason``)
REASONS = ("new_entities", "new_attributes", "recompute")

#: the kinds of values an option takes, for the command line's types
FILE, DIRECTORY = "file", "directory"


class OptionError(UsageError):
    """A run option has a bad value.

    The message names options in API words; ``problem`` may name other
    options as ``{name}``. :meth:`spelled` words it for another audience:
    the command line gives :func:`flag_of`.
    """

    def __init__(self, option: str, problem: str) -> None:
        self.option = option
        self.problem = problem
        super().__init__(self.spelled(str))

    def spelled(self, name: Callable[[str], str]) -> str:
        return f"{name(self.option)} {self.problem.format_map(_Names(name))}"


class _Names(dict):
    def __init__(self, name: Callable[[str], str]) -> None:
        super().__init__()
        self.name = name

    def __missing__(self, key: str) -> str:
        return self.name(key)


@dataclass(frozen=True)
class Option:
    """What the command line, the run record and rerun need to know about one option."""

    help: str
    #: the command line's flag (None: API only, or declared by the command line itself)
    flag: str | None = None
    metavar: str | None = None
    #: FILE, DIRECTORY, int, float, str, bool (a flag), or None: the field's own
    kind: Any = str
    #: the allowed values (a function: read from a registry when needed)
    choices: Callable[[], Sequence[str]] | None = None
    #: the problem with a value (worded after the option's name), or None when it is fine
    check: Callable[[Any], str | None] | None = None
    #: recorded in run_config.json's "execution"
    record: bool = False
    #: restored from run_config.json by ``provbatch rerun``
    rerun: bool = False
    show_default: bool = False


def _option(default: Any = None, **spec: Any) -> Any:
    return field(default=default, metadata={"option": Option(**spec)})


def _at_least(minimum: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value is None or value >= minimum else f"must be {minimum} or more, got {value}"

    return check


def _positive_seconds(value: Any) -> str | None:
    return None if value is None or value > 0 else f"must be a positive number of seconds, got {value}"


@dataclass
class RunOptions:
    """The options of one batch run (everything but the plugin and the entities)."""

    out: str | Path | None = _option(
        flag="--out", kind=FILE,
        help="Results TSV (default stdout). An existing file is appended to; its ids are skipped (resume).")
    log: str | Path | None = _option(flag="--log", kind=FILE, help="Logs TSV (default stderr).")
    report_path: str | Path | None = _option(
        flag="--report", kind=FILE,
        help="Report YAML (default: OUT.report.yaml when --out is given): one document, the latest run "
             "(earlier runs stay in their run records).")
    #: the command line declares its own --param KEY=VALUE and --params FILE for it
    params: Mapping[str, Any] | None = _option(help="Computation parameters, converted with their PARAMETERS datatypes.")
    attributes: Any = _option(
        flag="--attributes", kind=FILE,
        help="Attribute definitions (default ./attribute_definitions.yaml, else beside the plugin).")
    backend: str = _option(
        "auto", flag="--backend", choices=backend_names, record=True, rerun=True, show_default=True,
        help="auto: in the driver, or local worker processes when that pays off; Ray when --address/RAY_ADDRESS is set; "
             "slurm: Slurm job arrays (docs/slurm.md).")
    workers: int | None = _option(
        flag="--workers", kind=int, check=_at_least(1), record=True, rerun=True,
        help="Number of workers (default: all CPUs; slurm: array tasks running at once, default the partition's CPUs).")
    #: --backend slurm (docs/slurm.md): sbatch --partition, --time, --mem; entities per array task;
    #: more sbatch options as one string; the work directory on the shared filesystem (default OUT.slurm)
    slurm_partition: str | None = _option(flag="--slurm-partition", metavar="NAME", help="slurm: sbatch --partition.")
    slurm_time: str | None = _option(flag="--slurm-time", metavar="TIME", help="slurm: sbatch --time of each array task (e.g. 30, 2:00:00).")
    slurm_mem: str | None = _option(flag="--slurm-mem", metavar="SIZE", help="slurm: sbatch --mem of each array task (e.g. 4G).")
    slurm_chunk: int | None = _option(flag="--slurm-chunk", kind=int, metavar="N",
                                      help="slurm: entities per array task (default: about 4 tasks per --workers).")
    slurm_opt: str | None = _option(flag="--slurm-opt", metavar="'OPTIONS'",
                                    help="slurm: more sbatch options, passed as is (e.g. '--account=lab --qos=short').")
    slurm_workdir: str | Path | None = _option(flag="--slurm-workdir", kind=DIRECTORY,
                                               help="slurm: work directory on the shared filesystem (default OUT.slurm).")
    address: str | None = _option(flag="--address", record=True, help="Address of an existing Ray cluster (also RAY_ADDRESS).")
    idsproc: str | None = _option(
        flag="--idsproc", metavar="MODULE",
        help="Module with compute_id(entity) -> id: a .py, .sh, .rs or .nim file, or an importable module. "
             "With ENTITIES compute gets the id too; with --glob it gets the file (as prenacs).")
    skip: str | Path | None = _option(flag="--skip", kind=FILE, help="Skip the ids in the first column of this file.")
    user: str | None = _option(flag="--user", help="User id for the report.")
    system: str | None = _option(flag="--system", help="System id for the report.")
    reason: str | None = _option(flag="--reason", choices=lambda: REASONS, help="Why this computation is run (report).")
    retries: int = _option(
        0, flag="--retries", kind=int, check=_at_least(0), record=True, rerun=True, show_default=True,
        help="Compute a failed entity again up to N times (exceptions, lost workers, timeouts), with exponential backoff.")
    timeout: float | None = _option(
        flag="--timeout", kind=float, metavar="SECONDS", check=_positive_seconds, record=True, rerun=True,
        help="Per entity: a compute running longer is killed (with its child processes) and counts as a failed attempt.")
    fail_fast: bool = _option(
        False, flag="--fail-fast", kind=bool, record=True,
        help="Stop at the first entity that fails for good (finalize and the report still run).")
    max_failures: int | None = _option(
        flag="--max-failures", kind=int, metavar="N", check=_at_least(1), record=True, rerun=True,
        help="Stop after N entities failed for good.")
    failures_path: str | Path | None = _option(
        flag="--failures", kind=FILE, help="Failures TSV (default OUT.failures.tsv): entity, attempts, error class, message.")
    retry_failed: bool = _option(
        False, flag="--retry-failed", kind=bool, record=True,
        help="Compute only the entities of the failures file; they leave it as they succeed.")
    run_dir: str | Path | None = _option(
        flag="--run-dir", kind=DIRECTORY,
        help="Run record directory (manifest.json, events.jsonl); default under the user's state dir ($PROVBATCH_RUNS).")
    header: bool = _option(
        False, flag="--header", kind=bool, record=True, rerun=True,
        help="Write the OUTPUT names as a first line (entity<TAB>name...) into a new results file; "
             "off by default, so the file stays what prenacs tools read. Readers and resume understand it.")
    limit: int | None = _option(
        flag="--limit", kind=int, metavar="N", check=_at_least(1), record=True, rerun=True,
        help="Trial run: compute only the first N entities to compute (recorded in the report).")
    sample: int | None = _option(
        flag="--sample", kind=int, metavar="N", check=_at_least(1), record=True, rerun=True,
        help="Trial run: compute N entities drawn at random from those to compute (recorded, with the seed).")
    seed: int | None = _option(
        flag="--seed", kind=int, record=True, rerun=True, help="Seed of --sample (default: a random one, recorded in the report).")
    #: the results store the values also go to (a SQLAlchemy URL or a SQLite path; see docs/store.md)
    store: str | None = _option(flag="--store", metavar="URL", help="Also write the values into this results store (SQLAlchemy URL or SQLite path; default $PROVBATCH_STORE); "
                                     "resume skips what it holds.")
    #: compute only the entities whose stored values are stale (needs ``store``)
    only_stale: bool = _option(False, flag="--only-stale", kind=bool, help="With --store: compute only the entities whose stored values are stale (provbatch stale).")
    #: the command line declares --no-progress for it (and shows it only on a terminal)
    progress: bool = _option(False, kind=bool, help="Show a progress line on stderr.")
    #: write results and logs to stdout/stderr when no file is given (the CLI); the API writes nothing then
    write_std_streams: bool = _option(False, kind=bool, help="Results and logs to stdout/stderr when no file is given.")
    #: the command line, for the run record
    command: list[str] | None = _option(kind=list, help="The command line, for the run record.")
    #: the uuid of the run this one redoes (``provbatch rerun``), for run_config.json
    rerun_of: str | None = _option(help="The uuid of the run this one redoes.")
    #: options for the plugin's loader, e.g. ``{"constants_class": "Meta"}`` (Rust), ``{"const_prefix": "c_"}`` (Nim)
    plugin_options: Mapping[str, Any] | None = _option(kind=dict, help="Options for the plugin's loader.")
    #: yield values converted by their datatypes (the Python API) instead of their TSV text (the CLI)
    typed: bool = _option(False, kind=bool, help="Yield typed values instead of TSV text.")

    def __post_init__(self) -> None:
        for spec_field in dataclasses.fields(self):
            option: Option = spec_field.metadata["option"]
            value = getattr(self, spec_field.name)
            if option.choices is not None and value is not None and value not in option.choices():
                raise OptionError(spec_field.name, f"must be one of {', '.join(option.choices())}, got '{value}'")
            problem = option.check(value) if option.check is not None else None
            if problem is not None:
                raise OptionError(spec_field.name, problem)
        if self.fail_fast:
            self.max_failures = 1
        if self.only_stale and not self.store:
            raise OptionError("only_stale", "needs {store} URL (the store whose stale values are recomputed)")
        if self.limit is not None and self.sample is not None:
            raise OptionError("limit", "and {sample} exclude each other: give one")
        if self.sample is not None and self.seed is None:
            import random

            self.seed = random.SystemRandom().randrange(1 << 31)  # recorded, so that the same sample can be drawn again

    # ------------------------------------------------------------ the record
    def recorded(self) -> dict[str, Any]:
        """The options run_config.json records (its ``execution``), by API name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata["option"].record}

    @classmethod
    def restored(cls, recorded: Mapping[str, Any], **overrides: Any) -> RunOptions:
        """The options a rerun takes from a run's record (those marked ``rerun``), then ``overrides``.

        A recorded ``None`` (or an option the record lacks) keeps the default.
        """
        values = {name: recorded[name] for name in rerun_options() if recorded.get(name) is not None}
        values.update({name: value for name, value in overrides.items() if value is not None or name not in values})
        return cls(**values)


def option_spec(name: str) -> Option:
    """The declaration of one option."""
    for spec_field in dataclasses.fields(RunOptions):
        if spec_field.name == name:
            return spec_field.metadata["option"]
    raise KeyError(name)


def option_default(name: str) -> Any:
    for spec_field in dataclasses.fields(RunOptions):
        if spec_field.name == name:
            return spec_field.default
    raise KeyError(name)


def option_names() -> list[str]:
    """Every option, in declaration order (the order of ``--help``)."""
    return [spec_field.name for spec_field in dataclasses.fields(RunOptions)]


def rerun_options() -> list[str]:
    return [spec_field.name for spec_field in dataclasses.fields(RunOptions) if spec_field.metadata["option"].rerun]


def flag_of(name: str) -> str:
    """The command line's flag of an option (its API name when it has none)."""
    try:
        flag = option_spec(name).flag
    except KeyError:
        return name
    return flag or name

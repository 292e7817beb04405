"""RunOptions: every option of a batch run, declared once.

Each option is one field of :class:`RunOptions`, with its metadata
(:class:`Option`): the help text, the command line's flag, how its value is
checked, where ``run_config.json`` records it and what ``provbatch rerun``
does with it. Everything else derives from the declaration:

- the Python API (:func:`provbatch.run_batch`, :func:`provbatch.iter_batch`)
  takes the fields as keyword arguments;
- the command line generates its click options from it
  (:func:`provbatch.cli.run.run_option`; it declares only ``--param``,
  ``--params`` and ``--no-progress`` itself, naming them in ``Option.cli``);
- :mod:`provbatch.provenance.capture` records every option in
  run_config.json's ``execution`` (:meth:`RunOptions.recorded`; the
  parameters in ``parameters``), and :mod:`provbatch.provenance.rerun`
  restores those marked RESTORED (:meth:`RunOptions.restored`); every other
  option says where the rerun's value comes from instead.

Adding an option is one field here plus its use; tests/unit/test_options.py
fails until the command line, the record and rerun agree with it. Errors name options in API
words (``workers must be 1 or more``); the command line, at its edge,
names the flag instead (``--workers must be 1 or more``; see
:class:`~provbatch.errors.OptionError`, imported here too, and :func:`flag_of`; every
layer's errors name options so, :meth:`~provbatch.errors.ProvBatchError.naming`). What a run records about itself
(the report's remarks and ``trial``) names the flags, for every run, as it
always did.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import OptionError, literal
from .execution.registry import backend_names

#: why a computation is run (the report's ``reason``)
REASONS = ("new_entities", "new_attributes", "recompute")

#: the kinds of values an option takes, for the command line's types
FILE, DIRECTORY = "file", "directory"

#: ``Option.rerun`` of an option a rerun takes from run_config.json's execution
RESTORED = "restored"
#: the rerun's outputs go beside its results file (``--out`` of provbatch rerun)
_BESIDE = "beside the rerun's results (provbatch rerun --out, default RUN_DIR/rerun-results.tsv)"
#: the sbatch options: from run_config.json's execution.slurm when the rerun's backend is slurm
_SLURM = "restored from execution.slurm when the rerun's backend is slurm"
#: a rerun checks a run against its record; it writes into no store
_NO_STORE = "not restored: a rerun checks a run against its record and writes into no store"


@dataclass(frozen=True)
class Option:
    """What the command line, the run record and rerun need to know about one option."""

    help: str
    #: the command line's flag, generated from this declaration (None: see ``cli``)
    flag: str | None = None
    #: the flags the command line declares itself for this option, converting their values
    #: (``--param``/``--params`` -> params, ``--no-progress`` -> progress); with no ``flag``
    #: and no ``cli`` the option is the API's alone
    cli: tuple[str, ...] = ()
    #: repeatable on the command line (a list of values)
    multiple: bool = False
    metavar: str | None = None
    #: FILE, DIRECTORY, int, float, str, bool (a flag), or None: the field's own
    kind: Any = str
    #: the allowed values (a function: read from a registry when needed)
    choices: Callable[[], Sequence[str]] | None = None
    #: the problem with a value (worded after the option's name), or None when it is fine
    check: Callable[[Any], str | None] | None = None
    #: where run_config.json records it: "execution" (by API name, :meth:`RunOptions.recorded`)
    #: or the top-level key that holds it
    record: str = "execution"
    #: what ``provbatch rerun`` does with it: RESTORED from the record (:meth:`RunOptions.restored`),
    #: else where the rerun's value comes from instead (every option says, see tests/unit/test_options.py)
    rerun: str = ""
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
        flag="--out", kind=FILE, rerun="the rerun's own: provbatch rerun --out (default RUN_DIR/rerun-results.tsv)",
        help="Results TSV (default stdout). An existing file is appended to; its ids are skipped (resume).")
    log: str | Path | None = _option(flag="--log", kind=FILE, rerun=f"OUT.log.tsv {_BESIDE}", help="Logs TSV (default stderr).")
    report_path: str | Path | None = _option(
        flag="--report", kind=FILE, rerun=f"OUT.report.yaml {_BESIDE}",
        help="Report YAML (default: OUT.report.yaml when --out is given): one document, the latest run "
             "(earlier runs stay in their run records).")
    #: the command line declares its own --param KEY=VALUE and --params FILE for it
    params: Mapping[str, Any] | None = _option(
        cli=("--param", "--params"), record="parameters",
        rerun="the captured parameters (run_config.json's parameters, the plugin's defaults applied)",
        help="Computation parameters, converted with their PARAMETERS datatypes.")
    attributes: Any = _option(
        flag="--attributes", kind=FILE, rerun="the captured definitions of the OUTPUT attributes, written again",
        help="Attribute definitions (default ./attribute_definitions.yaml, else beside the plugin).")
    backend: str = _option(
        "auto", flag="--backend", choices=backend_names, rerun=RESTORED, show_default=True,
        help="auto: in the driver, or local worker processes when that pays off; Ray when --address/RAY_ADDRESS is set; "
             "slurm: Slurm job arrays (docs/slurm.md).")
    workers: int | None = _option(
        flag="--workers", kind=int, check=_at_least(1), rerun=RESTORED,
        help="Number of workers (default: all CPUs; slurm: array tasks running at once, default the partition's CPUs).")
    #: --backend slurm (docs/slurm.md): sbatch --partition, --time, --mem; entities per array task;
    #: more sbatch options as one string; the work directory on the shared filesystem (default OUT.slurm)
    slurm_partition: str | None = _option(flag="--slurm-partition", metavar="NAME", rerun=_SLURM,
                                          help="slurm: sbatch --partition.")
    slurm_time: str | None = _option(flag="--slurm-time", metavar="TIME", rerun=_SLURM,
                                     help="slurm: sbatch --time of each array task (e.g. 30, 2:00:00).")
    slurm_mem: str | None = _option(flag="--slurm-mem", metavar="SIZE", rerun=_SLURM,
                                    help="slurm: sbatch --mem of each array task (e.g. 4G).")
    slurm_chunk: int | None = _option(flag="--slurm-chunk", kind=int, metavar="N", check=_at_least(1), rerun=_SLURM,
                                      help="slurm: entities per array task (default: about 4 tasks per --workers).")
    slurm_opt: str | None = _option(flag="--slurm-opt", metavar="'OPTIONS'", rerun=_SLURM,
                                    help="slurm: more sbatch options, passed as is (e.g. '--account=lab --qos=short').")
    slurm_workdir: str | Path | None = _option(flag="--slurm-workdir", kind=DIRECTORY, rerun=f"OUT.slurm {_BESIDE}",
                                               help="slurm: work directory on the shared filesystem (default OUT.slurm).")
    address: str | None = _option(
        flag="--address", rerun="the rerun's own (RAY_ADDRESS): the run's Ray cluster may be gone",
        help="Address of an existing Ray cluster (also RAY_ADDRESS).")
    idsproc: str | None = _option(
        flag="--idsproc", metavar="MODULE", rerun="the captured module source, written again",
        help="Module with compute_id(entity) -> id: a .py, .sh, .rs or .nim file, or an importable module. "
             "With ENTITIES compute gets the id too; with --glob it gets the file (as prenacs).")
    skip: str | Path | None = _option(flag="--skip", kind=FILE, rerun="the run's skip file, checked (size, sha256)",
                                      help="Skip the ids in the first column of this file.")
    #: Nim plugins (and a Nim idsproc): directories searched for imported modules
    nim_path: Sequence[str | Path] | None = _option(
        flag="--nim-path", kind=DIRECTORY, multiple=True, metavar="DIR",
        rerun="in the plugin's captured loader options (run_config.json's plugin.options)",
        help="Nim plugins: a directory searched for imported modules, e.g. of nimble packages "
             "(repeatable; also $PROVBATCH_NIM_PATH).")
    user: str | None = _option(flag="--user", rerun="the rerun's own: who reruns", help="User id for the report.")
    system: str | None = _option(flag="--system", rerun="the rerun's own: where it runs", help="System id for the report.")
    reason: str | None = _option(flag="--reason", choices=lambda: REASONS, rerun="recompute",
                                 help="Why this computation is run (report).")
    retries: int = _option(
        0, flag="--retries", kind=int, check=_at_least(0), rerun=RESTORED, show_default=True,
        help="Compute a failed entity again up to N times (exceptions, lost workers, timeouts), with exponential backoff.")
    timeout: float | None = _option(
        flag="--timeout", kind=float, metavar="SECONDS", check=_positive_seconds, rerun=RESTORED,
        help="Per entity: a compute running longer is killed (with its child processes) and counts as a failed attempt.")
    fail_fast: bool = _option(
        False, flag="--fail-fast", kind=bool, rerun=RESTORED,
        help="Stop at the first entity that fails for good (finalize and the report still run).")
    max_failures: int | None = _option(
        flag="--max-failures", kind=int, metavar="N", check=_at_least(1), rerun=RESTORED,
        help="Stop after N entities failed for good.")
    failures_path: str | Path | None = _option(
        flag="--failures", kind=FILE, rerun=f"OUT.failures.tsv {_BESIDE}",
        help="Failures TSV (default OUT.failures.tsv): entity, attempts, error class, message.")
    #: the command line exits 0 even when some entities failed (the API never fails a run for them)
    allow_failures: bool = _option(
        False, flag="--allow-failures", kind=bool, rerun="provbatch rerun's exit code has its own rules",
        help="Exit 0 even when some entities failed (they are still listed in the failures file).")
    retry_failed: bool = _option(
        False, flag="--retry-failed", kind=bool,
        rerun="the failures file's entities, as the run stored them, are the rerun's entities",
        help="Compute only the entities of the failures file; they leave it as they succeed.")
    run_dir: str | Path | None = _option(
        flag="--run-dir", kind=DIRECTORY, rerun="the rerun's own record: provbatch rerun --run-dir (default a new one)",
        help="Run record directory (manifest.json, events.jsonl); default under the user's state dir ($PROVBATCH_RUNS).")
    header: bool = _option(
        False, flag="--header", kind=bool, rerun=RESTORED,
        help="Write the OUTPUT names as a first line (entity<TAB>name...) into a new results file; "
             "off by default, so the file stays what prenacs tools read. Readers and resume understand it.")
    #: load, check and count, compute nothing and write nothing (:func:`provbatch.run_batch` returns the plan)
    dry_run: bool = _option(
        False, flag="--dry-run", kind=bool, rerun="a dry run leaves no record to rerun",
        help="Load, check and count the entities (to compute, already done, skipped); "
             "print what would run and where it would write; compute nothing, write nothing.")
    limit: int | None = _option(
        flag="--limit", kind=int, metavar="N", check=_at_least(1), rerun=RESTORED,
        help="Trial run: compute only the first N entities to compute (recorded in the report).")
    sample: int | None = _option(
        flag="--sample", kind=int, metavar="N", check=_at_least(1), rerun=RESTORED,
        help="Trial run: compute N entities drawn at random from those to compute (recorded, with the seed).")
    seed: int | None = _option(
        flag="--seed", kind=int, rerun=RESTORED, help="Seed of --sample (default: a random one, recorded in the report).")
    #: the results store the values also go to (a SQLAlchemy URL or a SQLite path; see docs/store.md)
    store: str | None = _option(
        flag="--store", metavar="URL", rerun=_NO_STORE,
        help="Also write the values into this results store (SQLAlchemy URL or SQLite path; default $PROVBATCH_STORE); "
             "resume skips what it holds.")
    #: compute only the entities whose stored values are stale (needs ``store``)
    only_stale: bool = _option(
        False, flag="--only-stale", kind=bool, rerun=_NO_STORE,
        help="With --store: compute only the entities whose stored values are stale (provbatch stale).")
    #: the command line declares --no-progress for it (and shows it only on a terminal)
    progress: bool = _option(False, kind=bool, cli=("--no-progress",), rerun="the rerun's own (on a terminal)",
                             help="Show a progress line on stderr.")
    #: write results and logs to stdout/stderr when no file is given (the CLI); the API writes nothing then
    write_std_streams: bool = _option(False, kind=bool, rerun="the rerun's own (it writes files)",
                                      help="Results and logs to stdout/stderr when no file is given.")
    #: the command line, for the run record
    command: list[str] | None = _option(kind=list, rerun="the rerun's own command line",
                                        help="The command line, for the run record.")
    #: the uuid of the run this one redoes (``provbatch rerun``), for run_config.json
    rerun_of: str | None = _option(rerun="the uuid of the run the rerun redoes", help="The uuid of the run this one redoes.")
    #: options for the plugin's loader, e.g. ``{"constants_class": "Meta"}`` (Rust), ``{"const_prefix": "c_"}`` (Nim)
    plugin_options: Mapping[str, Any] | None = _option(
        kind=dict, rerun="the captured loader options (run_config.json's plugin.options)", help="Options for the plugin's loader.")
    #: yield values converted by their datatypes (the Python API) instead of their TSV text (the CLI)
    typed: bool = _option(False, kind=bool, rerun="the rerun writes TSV text", help="Yield typed values instead of TSV text.")

    def __post_init__(self) -> None:
        for spec_field in dataclasses.fields(self):
            option: Option = spec_field.metadata["option"]
            value = getattr(self, spec_field.name)
            if option.choices is not None and value is not None and value not in option.choices():
                raise OptionError(spec_field.name, f"must be one of {', '.join(option.choices())}, got '{literal(value)}'")
            problem = option.check(value) if option.check is not None else None
            if problem is not None:
                raise OptionError(spec_field.name, problem)
        if self.nim_path is not None:
            self.nim_path = [str(path) for path in self.nim_path] or None  # the command line gives () for none
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
        """The options run_config.json records in its ``execution``, by API name, as JSON values
        (every option but those recorded under a key of their own: ``params`` in ``parameters``)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.metadata["option"].record == "execution"}

    @classmethod
    def restored(cls, recorded: Mapping[str, Any], **overrides: Any) -> RunOptions:
        """The options a rerun takes from a run's record (those marked RESTORED), then ``overrides``.

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
    """The options a rerun restores from the record (the others say where the rerun's value comes from)."""
    return [spec_field.name for spec_field in dataclasses.fields(RunOptions) if spec_field.metadata["option"].rerun == RESTORED]


def _plain(value: Any) -> Any:
    """A JSON value: paths as text, sequences as lists; an object (definitions given as such) by its type."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return f"<{type(value).__name__}>"


def flag_of(name: str) -> str:
    """The command line's flag of an option (its API name when it has none)."""
    try:
        flag = option_spec(name).flag
    except KeyError:
        return name
    return flag or name

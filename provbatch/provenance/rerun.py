"""``provbatch rerun``: redo a past run from its ``run_config.json`` alone.

1. Check every captured input against the files as they are now (size, then
   sha256): the entities file or each file a glob matched (and whether the
   glob now matches other files), the skip file, the idsproc module, the
   attribute definitions; also the working directory when inputs were given
   as relative paths, and parameters that could not be recorded. Any
   difference refuses the rerun (:class:`InputsChangedError`, one line per
   difference) unless ``allow_changed_inputs``.
2. Write the captured sources into ``<cache>/rerun/<uuid of the run>/``
   (the plugin's file name, or its crate layout, kept) and load the plugin
   from there: the original file may have changed or be gone. The same run
   always maps to the same folder, so a compiled plugin is built once for all
   its reruns. The idsproc module and the OUTPUT attribute definitions are
   written there too and used from there.
3. Compute with the captured parameters and options, as a new run (its own
   uuid and run directory, ``rerun_of`` in its run_config, reason
   ``recompute``), into ``out`` (default ``RUN_DIR/rerun-results.tsv``, or
   ``rerun-results.2.tsv``, ... so that no file is overwritten).

The results are then compared with the original run's results file as a
multiset of lines (the order of completion may differ between runs), in one
streamed pass over each file.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import ProvBatchError, UsageError
from .capture import absolute, glob_matches, size_and_sha256, source_bytes
from .rundirs import find_run_dir, load_run_config

RERUN_DIR = "rerun"
DEFAULT_OUT = "rerun-results"


class InputsChangedError(ProvBatchError):
    """The inputs of the run changed: the rerun is refused, with every difference listed."""

    exit_code = 1

    def __init__(self, run_dir: Path, differences: list[str]) -> None:
        self.differences = list(differences)
        lines = [f"{run_dir}: {len(differences)} input(s) differ from the run; "
                 "refusing to re-run (--allow-changed-inputs re-runs anyway):"]
        lines += [f"  - {difference}" for difference in differences]
        super().__init__("\n".join(lines))


@dataclass
class InputCheck:
    """What differs from the run (refuses the rerun) and what is only worth knowing (notes)."""

    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- checking the inputs


def check_file(facts: dict[str, Any], what: str, cwd: str) -> list[str]:
    """The differences of one recorded file: missing, not a file, size a -> b, sha256 changed."""
    path = Path(facts["abs_path"]) if facts.get("abs_path") else absolute(facts["path"], cwd)
    if "error" in facts:
        return [f"{path}: was unreadable at the run ({facts['error']}), cannot be checked ({what})"]
    if not path.exists():
        return [f"{path}: missing ({what})"]
    if not path.is_file():
        return [f"{path}: not a file any more ({what})"]
    size = path.stat().st_size
    if size != facts["size"]:
        return [f"{path}: size {facts['size']} -> {size} bytes ({what})"]
    if size_and_sha256(path)[1] != facts["sha256"]:
        return [f"{path}: sha256 changed, same size ({what})"]
    return []


def check_glob(entities: dict[str, Any], cwd: str) -> list[str]:
    """Each file the glob matched, and the files it matches now but did not then."""
    pattern = entities["pattern"]
    recorded = {facts["path"]: facts for facts in entities["files"]}
    current = glob_matches(pattern, cwd)
    differences: list[str] = []
    added = [path for path in current if path not in recorded]
    matched = set(current)
    gone = [path for path in recorded if path not in matched]
    if added or gone:
        differences.append(f"glob {pattern}: now matches {len(current)} file(s), the run matched {len(recorded)} "
                           f"({len(added)} new, {len(gone)} no longer matched)")
    for path, facts in recorded.items():
        if path in matched or not absolute(path, cwd).exists():
            differences += check_file(facts, f"matched by glob {pattern}", cwd)
        else:
            differences.append(f"{absolute(path, cwd)}: no longer matched by glob {pattern}")
    differences += [f"{absolute(path, cwd)}: new file matched by glob {pattern}, not at the run" for path in added]
    return differences


def _entities_differences(entities: dict[str, Any], cwd: str) -> list[str]:
    kind = entities["kind"]
    if kind == "file":
        return check_file(entities, "entities file", cwd)
    if kind == "glob":
        return check_glob(entities, cwd)
    if kind == "stdin":
        return ["entities: read from stdin at the run, not recorded, cannot be checked "
                "(with --allow-changed-inputs the rerun reads its own stdin)"]
    return []  # a stored list: replayed as it was


def _relative_inputs(config: dict[str, Any]) -> list[str]:
    """Inputs given as relative paths: they name other files from another working directory."""
    given = []
    entities = config["entities"]
    if entities["kind"] == "file":
        given.append(entities["path"])
    elif entities["kind"] == "glob":
        given.append(entities["pattern"])
        given += [f["path"] for f in entities["files"][:1]]  # entity paths from a relative glob are relative
    for key in ("skip", "attributes"):
        if config.get(key):
            given.append(config[key]["path"])
    return [path for path in given if not Path(path).expanduser().is_absolute()]


def _plugin_notes(plugin: dict[str, Any]) -> list[str]:
    """Whether the plugin's own files changed (only worth knowing: the captured source is used)."""
    if not plugin.get("path") or not plugin.get("layout"):
        return []
    path = Path(plugin["path"])
    if not path.exists():
        return [f"{path}: gone since the run; re-running from the source captured in run_config.json"]
    folder = path if plugin["layout"]["kind"] == "directory" else path.parent
    for source in plugin["sources"]:
        name = path.name if source["name"] == plugin["layout"]["name"] and plugin["layout"]["kind"] == "file" else source["name"]
        current = folder / name
        try:
            same = current.is_file() and size_and_sha256(current)[1] == source["sha256"]
        except OSError:
            same = False
        if not same:
            return [f"{path}: changed since the run; re-running from the source captured in run_config.json"]
    return []


def _environment_notes(config: dict[str, Any]) -> list[str]:
    from .capture import toolchain_versions

    environment = config.get("environment") or {}
    notes = []
    import platform

    if environment.get("python") and environment["python"] != platform.python_version():
        notes.append(f"Python was {environment['python']} at the run, is {platform.python_version()} now")
    before = environment.get("toolchain") or {}
    if before:
        now = toolchain_versions(config["plugin"]["lang"])
        notes += [f"{tool} was '{version}' at the run, is '{now.get(tool)}' now (the plugin is built with it)"
                  for tool, version in before.items() if now.get(tool) != version]
    return notes


def check_inputs(config: dict[str, Any], cwd: str | None = None) -> InputCheck:
    """Compare every captured input with the files as they are now."""
    cwd_now = cwd or os.getcwd()
    run_cwd = config["cwd"]
    check = InputCheck()
    relative = _relative_inputs(config)
    if relative and Path(cwd_now).resolve() != Path(run_cwd).resolve():
        check.differences.append(
            f"working directory: the run was in {run_cwd}, this is {cwd_now}; relative inputs "
            f"({', '.join(relative[:3])}) would name other files: re-run from {run_cwd}"
        )
    check.differences += _entities_differences(config["entities"], run_cwd)
    if config.get("skip"):
        check.differences += check_file(config["skip"], "skip file", run_cwd)
    idsproc = config.get("idsproc")
    if idsproc and ("sha256" in idsproc or "error" in idsproc):
        check.differences += check_file(idsproc, "idsproc module; the captured source is used", run_cwd)
    if config.get("attributes"):
        check.differences += check_file(config["attributes"], "attribute definitions; the captured definitions are used", run_cwd)
    for name, type_name in (config.get("unrestorable_parameters") or {}).items():
        check.differences.append(f"parameter '{name}': a {type_name} object, not recorded; the rerun goes without it")
    check.notes += _plugin_notes(config["plugin"]) + _environment_notes(config)
    return check


# --------------------------------------------------------------------------- the captured sources, as files again


def rerun_folder(uuid: str) -> Path:
    """Where the sources of run ``uuid`` are written for its reruns (one folder per run)."""
    from ..plugins.cache import cache_root

    safe = "".join(c for c in uuid if c.isalnum() or c == "-")
    if not safe:
        raise UsageError(f"run_config.json: bad uuid {uuid!r}")
    return cache_root() / RERUN_DIR / safe


def _relative_name(name: str) -> PurePosixPath:
    relative = PurePosixPath(name)
    if relative.is_absolute() or not relative.parts or ".." in relative.parts:
        raise UsageError(f"run_config.json: source file name {name!r} is not a relative path inside the plugin")
    return relative


def write_captured(root: Path, entry: dict[str, Any]) -> Path:
    """Write one captured file under ``root`` (atomically; kept when it is already there, unchanged)."""
    data = source_bytes(entry)
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise UsageError(f"run_config.json: the captured {entry['name']} does not match its recorded sha256")
    target = root.joinpath(*_relative_name(entry["name"]).parts)
    if target.is_file() and size_and_sha256(target)[1] == entry["sha256"]:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp{os.getpid()}")
    temporary.write_bytes(data)
    os.replace(temporary, target)
    return target


def materialize_plugin(config: dict[str, Any]) -> Path:
    """The plugin rebuilt as files from the captured sources; its path (file or crate directory)."""
    plugin = config["plugin"]
    layout = plugin.get("layout")
    if not layout or not plugin.get("sources"):
        raise UsageError(f"{plugin.get('source')}: the run did not capture the plugin's source (an installed module without a file)")
    folder = rerun_folder(config["uuid"]) / "plugin"
    root = folder / layout["name"] if layout["kind"] == "directory" else folder
    for entry in plugin["sources"]:
        write_captured(root, entry)
    return root if layout["kind"] == "directory" else folder / layout["name"]


def materialize_attributes(config: dict[str, Any]) -> Path | None:
    """The captured definitions of the OUTPUT attributes, as a definitions file for the rerun."""
    attributes = config.get("attributes")
    if not attributes:
        return None
    import yaml

    definitions = {name: entry for name, entry in attributes["definitions"].items() if entry is not None}
    path = rerun_folder(config["uuid"]) / "attribute_definitions.yaml"
    text = yaml.safe_dump(definitions, sort_keys=False, allow_unicode=True)
    write_captured(path.parent, {"name": path.name, "text": text, "sha256": hashlib.sha256(text.encode()).hexdigest()})
    return path


def materialize_idsproc(config: dict[str, Any]) -> str | None:
    """The idsproc module from its captured source (else the module as given at the run)."""
    idsproc = config.get("idsproc")
    if not idsproc:
        return None
    source = idsproc.get("source")
    if source is None:
        return str(idsproc["spec"])
    return str(write_captured(rerun_folder(config["uuid"]) / "idsproc", source))


# --------------------------------------------------------------------------- the rerun


def _entities(config: dict[str, Any]) -> Any:
    from ..inputs.entities import EntitySource

    entities = config["entities"]
    kind = entities["kind"]
    if kind == "file":
        return EntitySource(path=entities["abs_path"], column=entities.get("column", 1))
    if kind == "glob":
        return EntitySource(pattern=entities["pattern"])
    if kind == "stdin":
        return EntitySource(path="-", column=entities.get("column", 1))
    if entities.get("values") is None:
        raise UsageError("run_config.json: the run's entities were a Python iterable that was not stored "
                         "(an iterator, or more than 100,000 entities): they cannot be replayed")
    return list(entities["values"])


def _companions(out: Path) -> list[Path]:
    return [out, Path(f"{out}.log.tsv"), Path(f"{out}.report.yaml"), Path(f"{out}.failures.tsv")]


def choose_out(run_dir: Path, out: str | Path | None, config: dict[str, Any]) -> tuple[Path, bool]:
    """The results file: ``out`` (resumed into when it exists, as batch-compute does), or a fresh
    ``RUN_DIR/rerun-results[.N].tsv`` whose log, report and failures files do not exist either.
    Returns ``(path, resuming)``."""
    if out is not None:
        out = Path(out)
        original = config["outputs"].get("results")
        if original and out.exists() and out.resolve() == absolute(original, config["cwd"]).resolve():
            raise UsageError(f"{out}: is the original run's results file; give another --out "
                             f"(an existing --out is resumed into, so nothing would be computed)")
        return out, out.is_file() and out.stat().st_size > 0
    for number in range(1, 10_000):
        candidate = run_dir / (f"{DEFAULT_OUT}.tsv" if number == 1 else f"{DEFAULT_OUT}.{number}.tsv")
        if not any(path.exists() for path in _companions(candidate)):
            return candidate, False
    raise UsageError(f"{run_dir}: too many rerun results files; give --out")


@dataclass
class Rerun:
    """A prepared rerun: iterate :attr:`batch` to compute (or call :meth:`run`)."""

    source_run: Path
    config: dict[str, Any]
    batch: Any  # BatchRun, prepared: the plugin is loaded (built) from the captured source
    out: Path
    resuming: bool
    check: InputCheck

    @property
    def notes(self) -> list[str]:
        return self.check.notes

    def run(self) -> "Rerun":
        for _row in self.batch:
            pass
        return self

    def same_as_original(self) -> bool | None:
        """Whether the results equal the original run's results file, as multisets of lines;
        None when there is nothing to compare with (results went to stdout, or the file is gone)."""
        original = self.config["outputs"].get("results")
        if not original:
            return None
        path = absolute(original, self.config["cwd"])
        if not path.is_file() or not self.out.is_file():
            return None
        return lines_digest(path) == lines_digest(self.out)


def lines_digest(path: Path) -> tuple[int, int]:
    """An order-independent digest of a file's lines: their count and the sum of their sha256s.

    Equal for two files holding the same lines in any order (what comparing
    the sorted files tells), in one streamed pass and constant memory.
    """
    count, total = 0, 0
    with open(path, "rb") as handle:
        for line in handle:
            count += 1
            total = (total + int.from_bytes(hashlib.sha256(line.rstrip(b"\n")).digest(), "big")) % (1 << 256)
    return count, total


def prepare_rerun(
    run_dir: str | Path,
    out: str | Path | None = None,
    allow_changed_inputs: bool = False,
    backend: str | None = None,
    workers: int | None = None,
    record_dir: str | Path | None = None,
    command: list[str] | None = None,
    progress: bool = False,
    write_std_streams: bool = False,
) -> Rerun:
    """Check the inputs, rebuild the plugin from the captured source and prepare the batch.

    Raises :class:`InputsChangedError` when inputs differ and
    ``allow_changed_inputs`` is False; nothing is written then.
    """
    from ..engine.batch import BatchRun

    source_run = find_run_dir(run_dir)
    config = load_run_config(source_run)
    check = check_inputs(config)
    if check.differences and not allow_changed_inputs:
        raise InputsChangedError(source_run, check.differences)
    entities = _entities(config)
    skip = config["skip"]["abs_path"] if config.get("skip") else None
    if skip is not None and not Path(skip).is_file():
        check.notes.append(f"{skip}: missing, so nothing is skipped")
        skip = None
    execution = config["execution"]
    out_path, resuming = choose_out(source_run, out, config)
    batch = BatchRun(
        materialize_plugin(config),
        entities,
        params=dict(config["parameters"]),
        backend=backend or execution["backend"],
        workers=workers if workers is not None else execution["workers"],
        attributes=materialize_attributes(config),
        idsproc=materialize_idsproc(config),
        skip=skip,
        out=out_path,
        log=f"{out_path}.log.tsv",
        report_path=f"{out_path}.report.yaml",
        reason="recompute",
        retries=execution.get("retries") or 0,
        timeout=execution.get("timeout"),
        max_failures=execution.get("max_failures"),
        run_dir=record_dir,
        progress=progress,
        write_std_streams=write_std_streams,
        command=command if command is not None else list(sys.argv),
        rerun_of=config["uuid"],
        plugin_options=dict(config["plugin"].get("options") or {}),
    )
    batch.prepare()
    check.notes += _artifact_notes(config, batch)
    return Rerun(source_run, config, batch, out_path, resuming, check)


def _artifact_notes(config: dict[str, Any], batch: Any) -> list[str]:
    before = config["plugin"].get("artifact")
    spec = batch.loaded.spec
    if before and spec.artifact_sha256 and before.get("sha256") != spec.artifact_sha256 and spec.artifact != spec.source:
        return [f"the rebuilt library differs from the run's (sha256 {str(before.get('sha256'))[:12]}... -> "
                f"{spec.artifact_sha256[:12]}...): same sources, but compiled builds embed their paths"]
    return []


def rerun(run_dir: str | Path, out: str | Path | None = None, allow_changed_inputs: bool = False, **options: Any) -> Rerun:
    """Redo the run recorded in ``run_dir`` (see the module docstring); returns the finished :class:`Rerun`."""
    return prepare_rerun(run_dir, out, allow_changed_inputs, **options).run()

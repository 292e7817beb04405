"""``provbatch rerun``: redo a past run from its ``run_config.json`` alone.

A rerun executes the code captured in the record, like running a script someone
hands you: ``provbatch show --source RUN`` prints it. So that it executes only
what the run captured:

0. The run directory must be the user's alone (:mod:`provbatch.files`), and the
   record must agree with itself (:func:`record_differences`): every captured
   file with its sha256, the captured sources with the plugin sha256 of
   ``run_config.json``, of ``manifest.json`` and of the report beside the
   results; names are plain relative paths. Any difference refuses the rerun
   (:class:`RecordInconsistentError`, one line per difference; no flag allows it).
1. Check every captured input against the files as they are now (size, then
   sha256): the entities file or each file a glob matched (and whether the
   glob now matches other files), the skip file, the idsproc module, the
   attribute definitions; also the working directory when inputs were given
   as relative paths, and parameters that could not be recorded. Any
   difference refuses the rerun (:class:`InputsChangedError`, one line per
   difference) unless ``allow_changed_inputs``.
2. Write the captured sources into ``<cache>/rerun/<uuid of the run>/``
   (the plugin's file name, or its crate layout, kept) and load the plugin
   from there: the original file may have changed or be gone. The folder is
   private and no link is followed in it; a file already there is reused
   only when it is the captured one (never overwritten), and a file there
   that the run did not capture refuses the rerun. The same run
   always maps to the same folder, so a compiled plugin is built once for all
   its reruns. The idsproc module and the OUTPUT attribute definitions are
   written there too and used from there.
3. Say what to compute (:func:`plan_rerun`: the captured parameters and
   options as a :class:`~provbatch.options.RunOptions`): the engine computes
   it as a new run (:func:`provbatch.api.rerun`; its own uuid and run
   directory, ``rerun_of`` in its run_config, reason ``recompute``), into
   ``out`` (default ``RUN_DIR/rerun-results.tsv``, or ``rerun-results.2.tsv``,
   ... so that no file is overwritten).

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

from ..errors import ProvBatchError, UnsafePathError, UsageError, literal
from ..files import check_private, private_dir, safe_component, safe_relative, sha256_file, write_new
from ..options import RunOptions
from .capture import absolute, glob_matches, size_and_sha256, source_bytes
from .rundirs import MANIFEST, RUN_CONFIG, find_run_dir, load_manifest, load_run_config
from .rundirs import WHAT as RUN_DIR_WHAT

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


class RecordInconsistentError(ProvBatchError):
    """The run record does not agree with itself: the rerun is refused, with every difference listed."""

    exit_code = 1

    def __init__(self, run_dir: Path, differences: list[str]) -> None:
        self.differences = list(differences)
        count = f"{len(differences)} difference{'' if len(differences) == 1 else 's'}"
        lines = [f"{run_dir}: the run record is inconsistent ({count}); refusing to re-run "
                 "code the run may not have run (see 'provbatch show --source'):"]
        lines += [f"  - {difference}" for difference in differences]
        super().__init__("\n".join(lines))


@dataclass
class InputCheck:
    """What differs from the run (refuses the rerun) and what is only worth knowing (notes)."""

    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- checking the record


def _short(digest: Any) -> str:
    return f"{str(digest)[:12]}..."


def captured_sources(plugin: dict[str, Any]) -> tuple[dict[str, bytes], list[str]]:
    """The captured plugin files by name, and what is wrong with them (names, sha256, size)."""
    from ..files import sha256_bytes

    files: dict[str, bytes] = {}
    differences: list[str] = []
    for entry in plugin.get("sources") or []:
        raw = entry.get("name") if isinstance(entry, dict) else None
        try:
            name = safe_relative(raw, "plugin").as_posix()  # the same text: safe_relative refuses what it would change
        except UnsafePathError:
            differences.append(f"plugin source name {raw!r}: not a relative path inside the plugin")
            continue
        if name in files:
            differences.append(f"plugin source name {name!r}: captured twice")
            continue
        try:
            data = source_bytes(entry)
        except (KeyError, ValueError, TypeError):
            differences.append(f"plugin source {name}: neither its text nor its bytes were captured")
            continue
        if sha256_bytes(data) != entry.get("sha256") or len(data) != entry.get("size"):
            differences.append(f"plugin source {name}: its captured text does not match its recorded sha256 and size")
        files[name] = data
    return files, differences


def _layout_differences(plugin: dict[str, Any], files: dict[str, bytes]) -> tuple[list[str], str | None]:
    """What is wrong with ``plugin.layout``; and the sha256 its captured sources hash to."""
    from ..plugins.loading import sources_sha256

    layout = plugin.get("layout")
    if layout is None:
        return [], None
    kind = layout.get("kind") if isinstance(layout, dict) else None
    name = layout.get("name") if isinstance(layout, dict) else None
    if kind not in ("file", "directory"):
        return [f"plugin layout kind {kind!r}: neither 'file' nor 'directory'"], None
    try:
        name = safe_component(name, "plugin")
    except UnsafePathError:
        return [f"plugin layout name {name!r}: not a plain {kind} name"], None
    if kind == "file" and name not in files:
        return [f"plugin layout name {name!r}: not among the captured sources ({', '.join(sorted(files))})"], None
    return [], sources_sha256(files, single=name if kind == "file" else None)


def _report_document(path: Path, uuid: str) -> dict[str, Any] | None:
    """The document of run ``uuid`` in a report file (a YAML stream, read safely)."""
    import yaml

    with open(path, encoding="utf-8") as handle:
        for document in yaml.safe_load_all(handle):
            if isinstance(document, dict) and document.get("uuid") == uuid:
                return document
    return None


def record_differences(config: dict[str, Any], manifest: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Where the record disagrees with itself (refuses the rerun), and what could not be compared (notes).

    The captured sources must hash to the plugin sha256 of ``run_config.json``,
    which must equal the one ``manifest.json`` and the report (beside the
    results, outside the run directory) recorded when the run started.
    """
    plugin = config.get("plugin") or {}
    recorded = plugin.get("sha256")
    files, differences = captured_sources(plugin)
    layout_differences, digest = _layout_differences(plugin, files)
    differences += layout_differences
    notes: list[str] = []
    if digest is not None and digest != recorded:
        differences.append(f"plugin sha256: the captured sources hash to {_short(digest)}, "
                           f"run_config.json records {_short(recorded)}")
    idsproc = config.get("idsproc") or {}
    if idsproc.get("source") is not None:
        entry = idsproc["source"]
        _files, idsproc_differences = captured_sources({"sources": [entry]})
        differences += [d.replace("plugin source", "idsproc source", 1) for d in idsproc_differences]
    if manifest.get("uuid") != config.get("uuid"):
        differences.append(f"uuid: manifest.json records {manifest.get('uuid')}, run_config.json {config.get('uuid')}")
    manifest_sha = (manifest.get("plugin") or {}).get("sha256")
    if manifest_sha != recorded:
        differences.append(f"plugin sha256: manifest.json records {_short(manifest_sha)}, run_config.json {_short(recorded)}")
    report = (config.get("outputs") or {}).get("report")
    if report:
        path = absolute(report, config.get("cwd") or "/")
        try:
            document = _report_document(path, str(config.get("uuid")))
        except FileNotFoundError:
            notes.append(f"the report {path} is gone: the plugin sha256 is checked against manifest.json only")
        except Exception as exc:  # noqa: BLE001 - any YAML error: what it says cannot be trusted
            differences.append(f"the report {path}: cannot read it ({type(exc).__name__}: {str(exc).splitlines()[0]})")
        else:
            if document is None:
                notes.append(f"the report {path} no longer holds this run: the plugin sha256 is checked against manifest.json only")
            elif document.get("plugin_sha256") != recorded:
                differences.append(f"plugin sha256: the report {path} records {_short(document.get('plugin_sha256'))}, "
                                   f"run_config.json {_short(recorded)}")
    return differences, notes


def trusted_record(run_dir: str | Path) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """The run directory, its run_config and manifest, read only when they are the user's alone."""
    source_run = find_run_dir(run_dir)
    check_private(source_run.resolve(), RUN_DIR_WHAT)
    for name in (RUN_CONFIG, MANIFEST):
        if os.path.lexists(source_run / name):
            check_private(source_run / name, RUN_DIR_WHAT)
    return source_run, load_run_config(source_run), load_manifest(source_run)


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
    """Where the sources of run ``uuid`` are written for its reruns (one private folder per run)."""
    from ..plugins.cache import cache_dir

    safe = "".join(c for c in str(uuid) if c.isalnum() or c == "-")
    if not safe:
        raise UsageError(f"run_config.json: bad uuid {uuid!r}")
    return cache_dir(RERUN_DIR, safe)


def write_captured(root: Path, entry: dict[str, Any], folder: Path | None = None) -> Path:
    """Write one captured file under ``root``; never overwrites, never through a link.

    A file already there is reused when it is the captured one (an earlier rerun
    of the same run wrote it); any other file there refuses the rerun.
    """
    from ..plugins.cache import WHAT

    data = source_bytes(entry)
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise UsageError(f"run_config.json: the captured {entry['name']} does not match its recorded sha256")
    parts = safe_relative(entry["name"], "plugin").parts
    target = private_dir(root, *parts[:-1], what=WHAT) / parts[-1]
    if os.path.lexists(target):
        check_private(target, WHAT)
        if not target.is_file() or sha256_file(target) != entry["sha256"]:
            raise UnsafePathError(f"{target}: exists and differs from the source the run captured; a rerun never "
                                  f"overwrites a file: remove {folder or root} and re-run")
        return target
    return write_new(target, data)


def _only_captured(root: Path, names: set[str]) -> None:
    """Refuse any file in ``root`` that the run did not capture (a planted helper module, a .pyc)."""
    from ..plugins.cache import WHAT

    folders = {str(PurePosixPath(name).parent) for name in names}
    folders = {prefix for folder in folders for prefix in _prefixes(folder)}
    for current, dirs, files in os.walk(root):
        relative_dir = Path(current).relative_to(root).as_posix()
        for name in sorted(dirs + files):
            relative = name if relative_dir == "." else f"{relative_dir}/{name}"
            path = Path(current) / name
            check_private(path, WHAT)
            if relative not in names and relative not in folders:
                raise UnsafePathError(f"{path}: not captured by the run; a rerun runs only the captured files: "
                                      f"remove it (rm -rf {path})")


def _prefixes(folder: str) -> list[str]:
    parts = [] if folder == "." else folder.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def materialize_plugin(config: dict[str, Any]) -> Path:
    """The plugin as files again from the captured sources (checked by :func:`record_differences`
    first); its path (file or crate directory)."""
    from ..plugins.cache import WHAT

    plugin = config["plugin"]
    layout = plugin.get("layout")
    if not layout or not plugin.get("sources"):
        raise UsageError(f"{plugin.get('source')}: the run did not capture the plugin's source (an installed module without a file)")
    name = safe_component(layout["name"], "plugin")
    top = rerun_folder(config["uuid"])
    folder = private_dir(top, "plugin", what=WHAT)
    root = private_dir(folder, name, what=WHAT) if layout["kind"] == "directory" else folder
    for entry in plugin["sources"]:
        write_captured(root, entry, top)
    _only_captured(root, {entry["name"] for entry in plugin["sources"]})
    return root if layout["kind"] == "directory" else folder / name


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
    from ..plugins.cache import WHAT

    top = rerun_folder(config["uuid"])
    folder = private_dir(top, "idsproc", what=WHAT)
    written = write_captured(folder, source, top)
    _only_captured(folder, {source["name"]})
    return str(written)


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
            raise UsageError.naming(f"{literal(out)}: is the original run's results file; give another {{out}} "
                                    "(an existing {out} is resumed into, so nothing would be computed)")
        return out, out.is_file() and out.stat().st_size > 0
    for number in range(1, 10_000):
        candidate = run_dir / (f"{DEFAULT_OUT}.tsv" if number == 1 else f"{DEFAULT_OUT}.{number}.tsv")
        if not any(os.path.lexists(path) for path in _companions(candidate)):  # a dangling link counts
            return candidate, False
    raise UsageError.naming(f"{literal(run_dir)}: too many rerun results files; give {{out}}")


@dataclass
class RerunPlan:
    """A checked rerun, not started: what to compute (the plugin rebuilt from the captured source,
    the entities, the options of the run) and where. The engine runs it: :func:`provbatch.api.rerun`
    (this layer sits below the engine, so it only says what to run)."""

    source_run: Path
    config: dict[str, Any]
    #: the plugin, written again from the captured sources (a file, or a crate directory)
    plugin: Path
    entities: Any  # an EntitySource, or the list of entities the run stored
    #: the run's options, with the captured parameters (the plugin's defaults applied at the run)
    options: RunOptions
    out: Path
    resuming: bool
    check: InputCheck

    @property
    def notes(self) -> list[str]:
        return self.check.notes

    def same_as_original(self, out: Path | None = None) -> bool | None:
        """Whether the results equal the original run's results file, as multisets of lines;
        None when there is nothing to compare with (results went to stdout, or the file is gone)."""
        original = self.config["outputs"].get("results")
        if not original:
            return None
        path = absolute(original, self.config["cwd"])
        out = out or self.out
        if not path.is_file() or not out.is_file():
            return None
        return lines_digest(path) == lines_digest(out)


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


def plan_rerun(
    run_dir: str | Path,
    out: str | Path | None = None,
    allow_changed_inputs: bool = False,
    backend: str | None = None,
    workers: int | None = None,
    record_dir: str | Path | None = None,
    command: list[str] | None = None,
    progress: bool = False,
    write_std_streams: bool = False,
) -> RerunPlan:
    """Check the record and the inputs, write the captured sources again, and say what to compute.

    Raises :class:`RecordInconsistentError` when the record disagrees with
    itself, and :class:`InputsChangedError` when inputs differ and
    ``allow_changed_inputs`` is False; nothing is written then.
    """
    source_run, config, manifest = trusted_record(run_dir)
    inconsistent, record_notes = record_differences(config, manifest)
    if inconsistent:
        raise RecordInconsistentError(source_run, inconsistent)
    check = check_inputs(config)
    check.notes += record_notes
    if check.differences and not allow_changed_inputs:
        raise InputsChangedError(source_run, check.differences)
    entities = _entities(config)
    skip = config["skip"]["abs_path"] if config.get("skip") else None
    if skip is not None and not Path(skip).is_file():
        check.notes.append(f"{skip}: missing, so nothing is skipped")
        skip = None
    execution = config["execution"]
    out_path, resuming = choose_out(source_run, out, config)
    chosen_backend = backend or execution["backend"]
    slurm = (execution.get("slurm") or {}) if chosen_backend == "slurm" else {}
    plugin = materialize_plugin(config)
    options = RunOptions.restored(
        execution,
        backend=chosen_backend,
        workers=workers,
        attributes=materialize_attributes(config),
        idsproc=materialize_idsproc(config),
        skip=skip,
        out=out_path,
        log=f"{out_path}.log.tsv",
        report_path=f"{out_path}.report.yaml",
        reason="recompute",
        run_dir=record_dir,
        progress=progress,
        write_std_streams=write_std_streams,
        command=command if command is not None else list(sys.argv),
        rerun_of=config["uuid"],
        plugin_options=dict(config["plugin"].get("options") or {}),
        params=dict(config["parameters"]),
        **{f"slurm_{name}": value for name, value in slurm.items()},
    )
    return RerunPlan(source_run, config, plugin, entities, options, out_path, resuming, check)


def artifact_notes(config: dict[str, Any], spec: Any) -> list[str]:
    """Whether the library rebuilt from the captured sources (``spec``: the loaded plugin's
    :class:`~provbatch.plugins.base.PluginSpec`) differs from the run's: worth knowing only."""
    before = config["plugin"].get("artifact")
    if before and spec.artifact_sha256 and before.get("sha256") != spec.artifact_sha256 and spec.artifact != spec.source:
        return [f"the rebuilt library differs from the run's (sha256 {str(before.get('sha256'))[:12]}... -> "
                f"{spec.artifact_sha256[:12]}...): same sources, but compiled builds embed their paths"]
    return []

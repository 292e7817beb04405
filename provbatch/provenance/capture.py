"""``run_config.json``: what a run computed, with what, on what, so that it can be redone.

Every run (command line or Python API) writes ``run_config.json`` into its
run directory, beside ``manifest.json`` and ``events.jsonl`` (see
:mod:`.record`), before the first entity is computed; the end time and
the backend actually used are added when the run ends. It holds:

- the plugin: path, label, language, loader options, the full text of every
  source file (all the files a Rust crate's build reads; for Nim also the
  helper modules beside the plugin that the build imported), the sha256 of
  each and of the built library;
- the resolved parameters (a value that is not JSON, such as a ``state``
  object, is recorded by type and flagged as not restorable);
- the inputs, each with size and sha256 read in one streamed pass: the
  entities file (or every file a glob matched; stdin and Python iterables
  cannot be re-checked, and an API list of up to
  :data:`MAX_STORED_ENTITIES` entities is stored itself), the skip file,
  the idsproc module (with its source) and the attribute definitions (with
  the definitions of the OUTPUT attributes);
- the execution options, the environment (Python, platform, provbatch, Ray
  when it is already imported, the language's toolchain, installed
  packages), user, system, reason, uuid (the report's and the manifest's),
  working directory, command line, times.

:mod:`.rerun` reads it back to redo the run; :func:`.show.summarize_run`
renders a run directory for ``provbatch show``. Capture costs one read of each
input file; its failure never stops a run (it is noted in the report's
remarks and the events).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import platform
import sys
from collections.abc import Iterable, Iterator, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..options import RunOptions
from .rundirs import FORMAT, RUN_CONFIG

if TYPE_CHECKING:  # pragma: no cover
    from ..contract.attributes import AttributeDefinitions
    from ..inputs.entities import EntitySource
    from ..plugins.loading import LoadedPlugin

#: an iterable of entities given to the Python API is stored if it has at most this many
MAX_STORED_ENTITIES = 100_000
_BLOCK = 1 << 20


# --------------------------------------------------------------------------- files


def size_and_sha256(path: str | Path) -> tuple[int, str]:
    """Size and sha256 of a file, from one streamed read (size and digest always agree)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def absolute(path: str | Path, cwd: str | Path) -> Path:
    """``path`` as the run saw it: relative paths are relative to the run's working directory."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else Path(cwd) / path


def file_facts(path: str | Path, cwd: str | Path) -> dict[str, Any]:
    """``{path, abs_path, size, sha256}`` of an input file; ``error`` instead of the digest if unreadable."""
    full = absolute(path, cwd)
    facts: dict[str, Any] = {"path": str(path), "abs_path": str(full)}
    try:
        facts["size"], facts["sha256"] = size_and_sha256(full)
    except OSError as exc:
        facts["error"] = f"{type(exc).__name__}: {exc.strerror or exc}"
    return facts


def _source_entry(name: str, data: bytes) -> dict[str, Any]:
    """A source file as stored: its text when it is UTF-8, else its bytes in base64."""
    entry: dict[str, Any] = {"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    try:
        entry["text"] = data.decode("utf-8")
    except UnicodeDecodeError:
        entry["base64"] = base64.b64encode(data).decode("ascii")
    return entry


def source_bytes(entry: dict[str, Any]) -> bytes:
    """The bytes of a stored source file (see :func:`_source_entry`)."""
    if "text" in entry:
        return str(entry["text"]).encode("utf-8")
    return base64.b64decode(entry["base64"])


# --------------------------------------------------------------------------- the plugin


def _crate_files(root: Path) -> dict[str, bytes]:
    """The files the Rust build copies from a crate directory (the same walk, so a rerun gets the same build key)."""
    from ..plugins.rust import build as rust_build

    return rust_build.crate_files(root)


def _nim_helpers(artifact: str | None, folder: Path) -> tuple[dict[str, bytes], list[str]]:
    """Files the Nim build read besides the plugin (``deps.json`` of the build):
    those under the plugin's folder (helper modules, a nim.cfg) by relative name,
    and the paths of the others (system config files), which are only recorded."""
    helpers: dict[str, bytes] = {}
    others: list[str] = []
    if not artifact:
        return helpers, others
    from ..plugins.nim.build import recorded_dependencies

    for file in sorted(recorded_dependencies(Path(artifact).parent)):
        path = Path(file)
        try:
            relative = path.relative_to(folder)
        except ValueError:
            others.append(file)
            continue
        try:
            helpers[relative.as_posix()] = path.read_bytes()
        except OSError:
            others.append(file)
    return helpers, others


def _plugin_files(plugin: LoadedPlugin) -> tuple[dict[str, Any] | None, dict[str, bytes], list[str]]:
    """Layout (``file`` or ``directory`` and its name), the source files by relative name, other build inputs."""
    path = plugin.path
    if path is None:
        return None, {}, []
    if path.is_dir():
        return {"kind": "directory", "name": path.name}, _crate_files(path), []
    name = path.name
    if plugin.spec.source.startswith("module:"):
        module = plugin.spec.source[len("module:"):]
        name = module.split(".")[-1] + ".py"  # a package's __init__.py too: named after the package
    files = {name: path.read_bytes()}
    others: list[str] = []
    if plugin.lang == "nim":
        helpers, others = _nim_helpers(plugin.spec.artifact, path.parent)
        helpers.pop(path.name, None)
        files.update(helpers)
    return {"kind": "file", "name": name}, files, others


def capture_plugin(plugin: LoadedPlugin, sha256: str) -> dict[str, Any]:
    """The plugin with every source file's text; ``sha256`` is the report's plugin_sha256."""
    spec = plugin.spec
    layout, files, others = _plugin_files(plugin)
    dependencies = []
    for other in others:
        facts = file_facts(other, "/")
        facts.pop("abs_path", None)
        dependencies.append(facts)
    label = plugin.label
    return {
        "label": label,
        "installed": not Path(label).expanduser().exists(),
        "path": str(plugin.path) if plugin.path else None,
        "source": spec.source,
        "lang": plugin.lang,
        "id": plugin.id,
        "version": plugin.version,
        "options": {str(key): _json_value(value)[0] for key, value in spec.options},
        "sha256": sha256,
        "layout": layout,
        "sources": [_source_entry(name, data) for name, data in sorted(files.items())],
        "build_dependencies": dependencies,
        "artifact": {"path": spec.artifact, "sha256": spec.artifact_sha256} if spec.artifact else None,
    }


# --------------------------------------------------------------------------- parameters


def _json_value(value: Any) -> tuple[Any, bool]:
    """``(value as JSON, True)`` when JSON can hold it exactly enough to pass it again; else ``(None, False)``."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value, True
    if isinstance(value, (list, tuple)):
        items = [_json_value(item) for item in value]
        return [item for item, _ok in items], all(ok for _item, ok in items)
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        entries = {key: _json_value(item) for key, item in value.items()}
        return {key: item for key, (item, _ok) in entries.items()}, all(ok for _item, ok in entries.values())
    return None, False


def capture_parameters(resolved: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """JSON-safe parameters, and the type names of those that are not (rerun cannot restore them)."""
    parameters: dict[str, Any] = {}
    unrestorable: dict[str, str] = {}
    for name, value in resolved.items():
        plain, ok = _json_value(value)
        if ok:
            parameters[name] = plain
        else:
            unrestorable[name] = type(value).__name__
    return parameters, unrestorable


# --------------------------------------------------------------------------- inputs


def glob_matches(pattern: str, cwd: str | Path) -> list[str]:
    """What :func:`provbatch.inputs.entities.iter_glob` yields for ``pattern`` run in ``cwd``."""
    import glob as globlib

    root = Path(cwd)
    if Path(pattern).expanduser().is_absolute():
        return sorted(p for p in globlib.glob(pattern, recursive=True) if Path(p).is_file())
    return sorted(p for p in globlib.glob(pattern, root_dir=root, recursive=True) if (root / p).is_file())


def _stored_values(values: Iterable[Any]) -> dict[str, Any]:
    stored = [str(value) for value in values]
    digest = hashlib.sha256("\n".join(stored).encode("utf-8", "surrogateescape")).hexdigest()
    return {"count": len(stored), "values": stored, "values_sha256": digest}


def capture_entities(source: EntitySource | Iterable[str], cwd: str,
                     retried: tuple[str, list[str]] | None = None) -> dict[str, Any]:
    """Where the entities came from, with what rerun needs to check or replay them.

    ``retried``: the failures file and its entities, for a ``retry_failed`` run.
    """
    from ..inputs.entities import EntitySource, is_stream

    if retried is not None:
        return {"kind": "failures_file", "path": retried[0], "recheckable": False, **_stored_values(retried[1])}
    if isinstance(source, EntitySource):
        if source.pattern:
            files = [file_facts(p, cwd) for p in glob_matches(source.pattern, cwd)]
            for facts in files:
                facts.pop("abs_path", None)
            return {"kind": "glob", "pattern": source.pattern, "count": len(files),
                    "size": sum(f.get("size", 0) for f in files), "files": files}
        if source.path == "-":
            return {"kind": "stdin", "column": source.column, "recheckable": False, "size": None, "sha256": None}
        if is_stream(str(source.path)):  # a pipe, FIFO, /dev/stdin, <(...): hashed while it is read (finish_run_config)
            return {"kind": "stream", "path": str(source.path), "column": source.column, "recheckable": False,
                    "size": None, "sha256": None}
        return {"kind": "file", "column": source.column, **file_facts(str(source.path), cwd)}
    stored: dict[str, Any] = {"count": None, "values": None}
    if isinstance(source, Sized) and not isinstance(source, Iterator):
        try:
            if len(source) <= MAX_STORED_ENTITIES:
                stored = _stored_values(source)
        except TypeError:
            pass
    return {"kind": "iterable", "recheckable": False, **stored}


def capture_idsproc(spec: str | None, cwd: str) -> dict[str, Any] | None:
    """The idsproc module (a ``.py`` file or an importable module) with its source text."""
    if not spec:
        return None
    path = absolute(spec, cwd)
    module = None
    if not (spec.endswith(".py") or path.exists()):
        module = spec
        try:
            found = importlib.util.find_spec(spec)
        except (ImportError, ValueError) as exc:
            return {"spec": spec, "module": module, "error": f"{type(exc).__name__}: {exc}"}
        if found is None or not found.origin or not Path(found.origin).is_file():
            return {"spec": spec, "module": module, "error": "module source file not found"}
        path = Path(found.origin)
    facts = {"spec": spec, "module": module, **file_facts(path, cwd)}
    try:
        facts["source"] = _source_entry(path.name if module is None else module.replace(".", "_") + ".py", path.read_bytes())
    except OSError:
        pass
    return facts


def capture_output(definitions: AttributeDefinitions | None, output: list[str]) -> dict[str, Any]:
    """The OUTPUT names and their datatypes: what the columns of the results file are, to read them back typed."""
    attributes = definitions.attributes if definitions is not None else {}
    return {"output": list(output), "datatypes": [(attributes.get(name) or {}).get("datatype") for name in output]}


def capture_attributes(definitions: AttributeDefinitions | None, output: list[str], cwd: str) -> dict[str, Any] | None:
    """The definitions file used, and the definitions of the OUTPUT attributes themselves."""
    if definitions is None:
        return None
    facts = file_facts(definitions.path, cwd)
    facts["definitions"] = {name: definitions.attributes.get(name) for name in output}
    return facts


# --------------------------------------------------------------------------- environment


def ray_version() -> str | None:
    """Ray's version if this process has imported it (never imports Ray to find out)."""
    ray = sys.modules.get("ray")
    return getattr(ray, "__version__", None) if ray is not None else None


def installed_packages() -> tuple[str, ...]:
    """``name==version`` of every distribution installed on ``sys.path`` (first one wins, as for imports).

    Read from the ``name-version.dist-info`` directory names (under a
    millisecond, against ~0.1 s for importlib.metadata reading every
    METADATA file: a cost every run would pay); only ``.egg-info`` entries,
    whose names may lack the version, are read through importlib.metadata.
    Not cached: ``sys.path`` changes within a process (importing Ray adds its
    vendored packages), and each run records what it ran with.
    """
    found: dict[str, str] = {}
    legacy: list[str] = []
    for entry in sys.path:
        try:
            with os.scandir(entry or ".") as listing:
                names = [item.name for item in listing]
        except OSError:
            continue
        for name in names:
            if name.endswith(".dist-info") and "-" in name:
                project, _, version = name[: -len(".dist-info")].partition("-")
                found.setdefault(project.replace("_", "-").lower(), version)
            elif name.endswith(".egg-info"):
                legacy.append(os.path.join(entry or ".", name))
    if legacy:
        from importlib.metadata import PathDistribution

        for path in legacy:
            metadata = PathDistribution(Path(path)).metadata
            fields = metadata.json if metadata else {}  # the fields by lower-case name (PackageMetadata has no get)
            if fields.get("name"):
                found.setdefault(str(fields["name"]).replace("_", "-").lower(), str(fields.get("version") or "?"))
    return tuple(f"{name}=={version}" for name, version in sorted(found.items()))


def toolchain_versions(lang: str) -> dict[str, str]:
    """The language's toolchain versions (the loader's ``versions()``); nothing for Python."""
    if lang == "python":
        return {}
    from ..plugins import registry

    try:
        return dict(registry.loader_for(lang).versions())
    except Exception as exc:  # noqa: BLE001 - a missing tool must not stop the run
        return {"error": f"{type(exc).__name__}: {exc}"}


def capture_environment(lang: str) -> dict[str, Any]:
    from ..version import __version__

    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "provbatch": __version__,
        "ray": ray_version(),
        "toolchain": toolchain_versions(lang),
        "packages": list(installed_packages()),
    }


# --------------------------------------------------------------------------- the whole record


@dataclass(frozen=True)
class RunStart:
    """What a run resolved from its options before its first compute: the rest of its run_config.json."""

    #: the working directory at the start (relative paths are relative to it)
    cwd: str
    uuid: str
    time_start: str
    user: str
    system: str
    reason: str | None
    #: what makes the run a trial run (--limit, --sample), or None
    trial: str | None
    run_dir: str | None
    plugin: LoadedPlugin
    plugin_sha256: str
    #: the resolved parameters (defaults applied, values converted)
    parameters: dict[str, Any]
    definitions: AttributeDefinitions | None
    entities: EntitySource | Iterable[str]
    #: the failures file (given, or OUT.failures.tsv), as the user gave it
    failures_path: str | None = None
    #: the entities of the failures file, for a retry_failed run
    retried: list[str] | None = None


def recorded_options(options: RunOptions) -> dict[str, Any]:
    """Every option of the run by API name (:meth:`RunOptions.recorded`), a store URL without its password."""
    recorded = options.recorded()
    if options.store:
        from ..store.url import display_url

        recorded["store"] = display_url(options.store)
    return recorded


def capture_run_config(options: RunOptions, start: RunStart) -> dict[str, Any]:
    """Everything needed to redo a run: see the module docstring."""
    cwd = start.cwd
    parameters, unrestorable = capture_parameters(dict(start.parameters))
    failures = start.failures_path
    retried = (failures, start.retried) if start.retried is not None and failures is not None else None
    out = Path(os.path.join(cwd, options.out)) if options.out else None
    resumed = out.stat().st_size if out is not None and out.is_file() else 0
    return {
        "format": FORMAT,
        "uuid": start.uuid,
        "rerun_of": options.rerun_of,
        "time_start": start.time_start,
        "time_end": None,
        "user": start.user,
        "system": start.system,
        "reason": start.reason,
        "trial": start.trial,
        "command": list(options.command) if options.command else None,
        "cwd": cwd,
        "run_dir": start.run_dir,
        "plugin": {**capture_plugin(start.plugin, start.plugin_sha256), **capture_output(start.definitions, start.plugin.output)},
        "parameters": parameters,
        "unrestorable_parameters": unrestorable,
        "entities": capture_entities(start.entities, cwd, retried),
        "idsproc": capture_idsproc(options.idsproc, cwd),
        "skip": file_facts(str(options.skip), cwd) if options.skip is not None else None,
        "attributes": capture_attributes(start.definitions, start.plugin.output, cwd),
        "execution": {
            **recorded_options(options), "backend_used": None, "workers_used": None,
            # --backend slurm: the sbatch options (the work directory follows --out on a rerun)
            "slurm": {name: getattr(options, f"slurm_{name}") for name in ("partition", "time", "mem", "chunk", "opt")}
            if options.backend == "slurm" else None,
        },
        "outputs": {
            "results": str(options.out) if options.out else None,
            "logs": str(options.log) if options.log else None,
            "report": str(options.report_path) if options.report_path else None,
            "failures": str(failures) if failures else None,
            "resumed_bytes": resumed,
        },
        "environment": capture_environment(start.plugin.lang),
    }


def write_run_config(run_dir: str | Path, config: dict[str, Any]) -> Path:
    """Write ``run_config.json`` atomically (a reader never sees half a file)."""
    from ..files import atomic_write

    return atomic_write(Path(run_dir) / RUN_CONFIG, json.dumps(config, indent=1, ensure_ascii=False) + "\n")


def start_run_config(options: RunOptions, start: RunStart, run_dir: str | Path) -> tuple[dict[str, Any] | None, str | None]:
    """Capture and write ``run_config.json`` at the start of a run: ``(config, None)``.

    Never raises for an ordinary error: returns ``(None, why)`` instead, for
    the engine to note the provenance gap (report remarks, an event, stderr)
    rather than losing the computation.
    """
    try:
        config = capture_run_config(options, start)
        write_run_config(run_dir, config)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        return None, f"{RUN_CONFIG} not written: {type(exc).__name__}: {exc}"
    return config, None


def finish_run_config(config: dict[str, Any], run_dir: str | Path, time_end: str | None, backend_used: str,
                      workers_used: int, digest: Any) -> str | None:
    """At the end of a run: add the end time, the digest of a streamed input, the backend used and
    Ray's version if it ran. Returns why it could not (the results are already written), else None."""
    try:
        config["time_end"] = time_end
        entities = config.get("entities") or {}
        if entities.get("kind") in ("stdin", "stream") and digest.size:
            entities.update(size=digest.size, sha256=digest.sha256, complete=digest.complete)
        config["execution"].update(backend_used=backend_used, workers_used=workers_used)
        if config["environment"].get("ray") is None:
            config["environment"]["ray"] = ray_version()
        write_run_config(run_dir, config)
    except Exception as exc:  # noqa: BLE001 - the run's results are already written
        return f"{RUN_CONFIG} not completed: {type(exc).__name__}: {exc}"
    return None

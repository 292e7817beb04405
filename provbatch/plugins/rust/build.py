"""Turning a Rust plugin (one ``.rs`` file or a crate directory) into a Python extension module.

The steps, each a small function so the loader reads like a recipe:

1. :func:`find_toolchain` - cargo, rustc and maturin, and their versions (part of the cache key);
2. :func:`describe` - what the plugin's build depends on (sources, manifest) and the module name;
3. :func:`generate_crate` - write a buildable crate into the cache directory: the user's file
   becomes ``src/lib.rs`` (the same line numbers), followed by a generated ``#[pymodule]``
   that registers every ``#[pyfunction]`` and ``#[pyclass]`` of the file;
4. :func:`run_maturin` - ``maturin build --release`` with one shared ``CARGO_TARGET_DIR``
   (pyo3 compiles once for all plugins), then the extension is taken out of the wheel;
5. :func:`summarize_build_error` - the first compiler error, mapped back to the user's file.

Nothing here writes next to the plugin, and no function changes the working directory:
cargo and maturin are given absolute paths (``--manifest-path``) instead.
"""

from __future__ import annotations

import importlib.machinery
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import tomllib

from ...errors import PluginLoadError

#: The pyo3 release single-file plugins are built against (Bound API). Part of the cache key.
PYO3_VERSION = "0.30.1"
#: pyo3 releases for plugins written against the GIL-ref API of pyo3 <= 0.20 (MultiPlug 1.2
#: plugins are pyo3 0.13 code): the newest release that still compiles each style, built
#: for the stable ABI so that one build serves any Python >= 3.7.
#: ``Python::acquire_gil`` (and ``#[pyproto]``) were removed after 0.18;
#: ``&PyModule``/``&PyAny`` GIL refs compile up to 0.22 with the ``gil-refs`` feature.
LEGACY_PYO3_ACQUIRE_GIL = "0.18.3"
LEGACY_PYO3_GIL_REFS = "0.22.6"
#: Bumped whenever the generated crate changes shape, so that old builds are not reused.
GENERATOR_VERSION = "1"
#: Rust edition of the generated crate for single-file plugins.
EDITION = "2021"

_INSTALL_HINT = {
    "cargo": "install Rust (cargo and rustc) with rustup: https://rustup.rs",
    "rustc": "install Rust (cargo and rustc) with rustup: https://rustup.rs",
    "maturin": "install maturin into the Python environment: pip install maturin",
}
_DEPENDENCY_LINE = re.compile(r"^\s*//\s*\[dependencies\]\s*(?P<spec>\S.*?)\s*$")
#: Directories of a crate that are never copied into the build (outputs, VCS, editor state).
_SKIP_DIRS = {"target", ".git", ".hg", ".svn", ".idea", ".vscode", "__pycache__"}


@dataclass(frozen=True)
class Toolchain:
    cargo: str
    rustc: str
    maturin: str
    versions: dict[str, str] = field(hash=False)

    def fingerprint(self) -> str:
        """Everything about the toolchain and the target Python that changes the built library."""
        parts = [f"{k}={v}" for k, v in sorted(self.versions.items())]
        parts.append(f"python={sys.implementation.cache_tag} {sysconfig.get_config_var('EXT_SUFFIX')}")
        parts.append(f"python_executable={sys.executable}")
        return "\n".join(parts)


def _find_tool(name: str, path: Path) -> str:
    """cargo and rustc from PATH; maturin first from this Python's environment (pip-installed).

    Looking beside the interpreter first also skips version-manager shims (pyenv's
    cost ~0.2 s a call, most of a warm load).
    """
    if name == "maturin":
        for folder in (Path(sys.executable).parent, Path(sys.base_prefix) / "bin"):
            if (folder / name).is_file() and os.access(folder / name, os.X_OK):
                return str(folder / name)
    found = shutil.which(name)
    if found is None:
        raise PluginLoadError(
            f"{path}: cannot build the Rust plugin: '{name}' was not found on PATH; {_INSTALL_HINT[name]}"
        )
    return found


def _versions_of(commands: dict[str, list[str]]) -> dict[str, str]:
    """Run the version commands side by side (a warm load waits for these, nothing else)."""
    running: dict[str, subprocess.Popen[str] | OSError] = {}
    for name, command in commands.items():
        try:
            running[name] = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except OSError as exc:
            running[name] = exc
    versions = {}
    for name, proc in running.items():
        if isinstance(proc, OSError):
            versions[name] = f"unknown ({proc})"
            continue
        out, err = proc.communicate(timeout=60)
        versions[name] = out.strip() or err.strip()
    return versions


@cache
def _toolchain_cached(cargo: str, rustc: str, maturin: str) -> Toolchain:
    versions = _versions_of({"cargo": [cargo, "--version"], "rustc": [rustc, "-vV"], "maturin": [maturin, "--version"]})
    versions["pyo3"] = PYO3_VERSION
    return Toolchain(cargo, rustc, maturin, versions)


def find_toolchain(path: Path) -> Toolchain:
    """Locate cargo, rustc and maturin (asked once per process), or say what to install."""
    return _toolchain_cached(_find_tool("cargo", path), _find_tool("rustc", path), _find_tool("maturin", path))


# --------------------------------------------------------------------------- source scanning


_RAW_STRING = re.compile(r'b?r(#*)"')


def code_only(source: str) -> str:
    """The source with comments and string/char literals blanked out (newlines kept).

    Lets the small regexes below find ``#[pyfunction] fn name`` without being
    fooled by commented-out code or by text inside strings.
    """
    out: list[str] = []
    i, n = 0, len(source)

    def blank(text: str) -> str:
        return "".join(c if c == "\n" else " " for c in text)

    while i < n:
        c = source[i]
        nxt = source[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":
            end = source.find("\n", i)
            end = n if end < 0 else end
            out.append(blank(source[i:end]))
            i = end
        elif c == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if source.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif source.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(source[i:j]))
            i = j
        elif c in "br" and (raw := _RAW_STRING.match(source, i)) and (i == 0 or not (source[i - 1].isalnum() or source[i - 1] == "_")):
            closing = '"' + raw.group(1)
            end = source.find(closing, raw.end())
            end = n if end < 0 else end + len(closing)
            out.append(blank(source[i:end]))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and source[j] != '"':
                j += 2 if source[j] == "\\" else 1
            out.append(blank(source[i:j + 1]))
            i = j + 1
        elif c == "'" and (nxt == "\\" or (i + 2 < n and source[i + 2] == "'")):
            end = source.find("'", i + 2 if nxt == "\\" else i + 1)
            if nxt == "\\" and source.startswith("\\'", i + 1):  # '\''
                end = source.find("'", i + 3)
            end = n if end < 0 else end + 1
            out.append(blank(source[i:end]))
            i = end
        else:
            out.append(c)
            i += 1
    return "".join(out)


_ATTRS = r"(?:\s*#\s*\[[^\]]*\])*"  # further attributes, e.g. #[pyo3(signature = ...)] or #[derive(...)]
_VIS = r"\s*(?:pub(?:\s*\([^)]*\))?\s+)?"
_PYFUNCTION = re.compile(r"#\s*\[\s*(?:pyo3\s*::\s*)?pyfunction\b[^\]]*\]" + _ATTRS + _VIS + r"(?:unsafe\s+)?fn\s+(\w+)")
_PYCLASS = re.compile(r"#\s*\[\s*(?:pyo3\s*::\s*)?pyclass\b[^\]]*\]" + _ATTRS + _VIS + r"(?:struct|enum)\s+(\w+)")
_PYMODULE = re.compile(r"#\s*\[\s*(?:pyo3\s*::\s*)?pymodule\b(?P<args>[^\]]*)\](?P<attrs>" + _ATTRS + r")" + _VIS + r"(?:fn|mod)\s+(?P<name>\w+)")
_NAME_ARG = re.compile(r'name\s*=\s*"(\w+)"')


_ACQUIRE_GIL = re.compile(r"\bacquire_gil\s*\(|#\s*\[\s*pyproto\b")
#: GIL-ref types in signatures (``m: &PyModule``, ``-> &PyAny``...), gone from pyo3 >= 0.23
_GIL_REFS = re.compile(r"&\s*(?:'\w+\s+)?(?:pyo3\s*::\s*(?:types\s*::\s*)?)?Py(?:Module|Any|Dict|List|Tuple|String|Bytes|Set|Type|Iterator|Float|Long|Bool|Sequence|Mapping)\b")
_PYO3_PIN = re.compile(r"^\s*//\s*\[dependencies\]\s*pyo3\s*=")


@dataclass(frozen=True)
class Pyo3Choice:
    """Which pyo3 a single-file plugin is built against, and why."""

    version: str
    features: tuple[str, ...] = ()
    pinned: bool = False  # the author's ``// [dependencies] pyo3 = "..."`` line
    #: why an older pyo3 was chosen ("Python::acquire_gil", "GIL refs (&PyModule)"), None for the current API
    legacy: str | None = None
    #: the author's own TOML value for the pinned line (a table, or a version string)
    spec: str | None = None

    @property
    def manifest_line(self) -> str:
        if self.spec is not None:
            return f"pyo3 = {self.spec}"
        version = self.version if self.pinned else f"={self.version}"  # an author's pin keeps its own semantics
        if not self.features:
            return f'pyo3 = "{version}"'
        features = ", ".join(f'"{f}"' for f in self.features)
        return f'pyo3 = {{ version = "{version}", features = [{features}] }}'

    def describe(self) -> str:
        return f"pyo3 {self.version}" + (f" ({', '.join(self.features)})" if self.features else "")


def legacy_api(source: str) -> str | None:
    """What makes ``source`` pyo3 GIL-ref code (the API of pyo3 <= 0.20), or None."""
    code = code_only(source)
    if _ACQUIRE_GIL.search(code):
        return "Python::acquire_gil" if "acquire_gil" in code else "#[pyproto]"
    match = _GIL_REFS.search(code)
    if match:
        return f"GIL refs ({match.group(0).replace(' ', '')})"
    return None


def _old_pyo3(version: str) -> bool:
    numbers = re.findall(r"\d+", version)
    return len(numbers) >= 2 and (int(numbers[0]), int(numbers[1])) < (0, 23)


def choose_pyo3(path: Path, source: str) -> Pyo3Choice:
    """The pyo3 a single ``.rs`` file builds against.

    The author's ``// [dependencies] pyo3 = "..."`` line wins; else the current
    pyo3 for Bound-API code, else the newest pyo3 that still compiles the
    GIL-ref code (see :data:`LEGACY_PYO3_ACQUIRE_GIL`).
    """
    reason = legacy_api(source)
    for number, line in enumerate(source.splitlines(), start=1):
        dependency = _DEPENDENCY_LINE.match(line)
        if not _PYO3_PIN.match(line) or dependency is None:  # (a pin is a dependency line)
            continue
        spec = dependency.group("spec")
        try:
            value = tomllib.loads(spec)["pyo3"]
        except (tomllib.TOMLDecodeError, KeyError) as exc:
            raise PluginLoadError(f"{path}:{number}: bad '// [dependencies] pyo3' line ({exc}): {spec}") from exc
        if isinstance(value, str):
            features = ("extension-module", "abi3-py37") if _old_pyo3(value) else ()
            return Pyo3Choice(value, features, pinned=True, legacy=reason)
        version = str(value.get("version", "?")) if isinstance(value, dict) else "?"
        return Pyo3Choice(version, pinned=True, legacy=reason, spec=spec.split("=", 1)[1].strip())
    if reason is None:
        return Pyo3Choice(PYO3_VERSION)
    if reason in ("Python::acquire_gil", "#[pyproto]"):
        return Pyo3Choice(LEGACY_PYO3_ACQUIRE_GIL, ("extension-module", "abi3-py37"), legacy=reason)
    return Pyo3Choice(LEGACY_PYO3_GIL_REFS, ("extension-module", "abi3-py37", "gil-refs"), legacy=reason)


def migration_hint(reason: str) -> str:
    """How to move a GIL-ref plugin to the current pyo3 (for ``provbatch check``)."""
    return (
        f"uses the legacy pyo3 API ({reason}): it is built with an old pyo3; to use pyo3 {PYO3_VERSION}, "
        "write the module function as `fn name(m: &Bound<'_, PyModule>) -> PyResult<()>` (or drop it: "
        "provbatch generates it), replace `Python::acquire_gil()` with `Python::with_gil(|py| ...)` "
        "(or take `py: Python<'_>` as the first argument), and `&PyAny`/`&PyDict` with `&Bound<'_, PyAny>`... "
        "(https://pyo3.rs/main/migration); or pin the old one: // [dependencies] pyo3 = \"0.18\""
    )


@dataclass(frozen=True)
class PyItems:
    """The Python-facing items of one Rust source file."""

    functions: tuple[str, ...]
    classes: tuple[str, ...]
    #: the Python name of the user's own ``#[pymodule]``, when the file has one
    user_module: str | None


def scan_items(source: str) -> PyItems:
    code = code_only(source)
    module = None
    if match := _PYMODULE.search(code):
        # The blanked code has no strings left: read `name = "..."` from the original text.
        span = source[match.start():match.end()]
        explicit = _NAME_ARG.search(span)
        module = explicit.group(1) if explicit else match.group("name")
    return PyItems(
        functions=tuple(dict.fromkeys(_PYFUNCTION.findall(code))),
        classes=tuple(dict.fromkeys(_PYCLASS.findall(code))),
        user_module=module,
    )


def module_wrapper(module_name: str, items: PyItems, legacy: bool = False) -> str:
    """The ``#[pymodule]`` appended to a plugin that does not define its own.

    Written with full paths (``pyo3::...``) so it needs nothing from the user's imports,
    and named ``__provbatch_pymodule`` in Rust so it cannot clash with a user item.
    A legacy (GIL-ref) plugin gets a module function in its own pyo3's style.
    """
    if legacy:
        lines = [
            "",
            "// ---- generated by provbatch: the Python module of this plugin (GIL-ref pyo3) ----",
            "#[pyo3::pymodule]",
            f'#[pyo3(name = "{module_name}")]',
            "fn __provbatch_pymodule(_py: pyo3::Python, m: &pyo3::types::PyModule) -> pyo3::PyResult<()> {",
        ]
        lines += [f"    m.add_function(pyo3::wrap_pyfunction!({name}, m)?)?;" for name in items.functions]
        lines += [f"    m.add_class::<{name}>()?;" for name in items.classes]
        lines += ["    Ok(())", "}", ""]
        return "\n".join(lines)
    lines = [
        "",
        "// ---- generated by provbatch: the Python module of this plugin ----",
        "#[pyo3::pymodule]",
        f'#[pyo3(name = "{module_name}")]',
        "fn __provbatch_pymodule(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {",
        "    use pyo3::types::PyModuleMethods;",
    ]
    lines += [f"    m.add_function(pyo3::wrap_pyfunction!({name}, m)?)?;" for name in items.functions]
    lines += [f"    m.add_class::<{name}>()?;" for name in items.classes]
    lines += ["    Ok(())", "}", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- what a plugin is made of


@dataclass
class RustProject:
    """A plugin's build inputs, read once; :func:`generate_crate` writes them into the cache."""

    path: Path  # the user's .rs file or crate directory
    is_crate: bool
    module_name: str
    #: relative path -> bytes, for every file copied into the generated crate
    files: dict[str, bytes]
    manifest: str  # the Cargo.toml the build uses
    lib_rs: str  # relative path of the crate root inside ``files``
    items: PyItems
    #: the pyo3 of a single-file plugin (a crate's Cargo.toml chooses its own)
    pyo3: Pyo3Choice | None = None

    @property
    def user_lines(self) -> int:
        """Lines of the user's crate root; errors below it are in the generated wrapper."""
        return self.files[self.lib_rs].decode("utf-8", "replace").count("\n") + 1

    def user_file(self, relative: str) -> Path:
        """Where a file of the generated crate came from."""
        if not self.is_crate and relative == self.lib_rs:
            return self.path
        return self.path / relative if self.is_crate else Path(relative)


def _sanitize(name: str) -> str:
    clean = re.sub(r"\W", "_", name, flags=re.ASCII)
    return clean if clean and not clean[0].isdigit() else f"plugin_{clean}"


def dependency_lines(path: Path, source: str) -> list[str]:
    """The ``// [dependencies] name = "version"`` lines, checked to be valid TOML one by one."""
    found = []
    for number, line in enumerate(source.splitlines(), start=1):
        match = _DEPENDENCY_LINE.match(line)
        if not match:
            continue
        spec = match.group("spec")
        try:
            parsed = tomllib.loads(spec)
        except tomllib.TOMLDecodeError as exc:
            raise PluginLoadError(f"{path}:{number}: bad '// [dependencies]' line ({exc}): {spec}") from exc
        if "pyo3" in parsed:
            continue  # the author's pin: see choose_pyo3
        found.append(spec)
    return found


def single_file_manifest(path: Path, module_name: str, dependencies: list[str], pyo3: Pyo3Choice | None = None) -> str:
    lines = [
        "# generated by provbatch from " + str(path),
        "[package]",
        f'name = "{module_name}"',
        'version = "0.0.0"',
        f'edition = "{EDITION}"',
        "publish = false",
        "",
        "[lib]",
        f'name = "{module_name}"',
        'crate-type = ["cdylib"]',
        'path = "src/lib.rs"',
        "",
        "[dependencies]",
        (pyo3 or Pyo3Choice(PYO3_VERSION)).manifest_line,
        *dependencies,
        "",
        "# a crate of its own, even if the cache lies inside some cargo workspace",
        "[workspace]",
        "",
    ]
    manifest = "\n".join(lines)
    try:
        tomllib.loads(manifest)
    except tomllib.TOMLDecodeError as exc:
        raise PluginLoadError(f"{path}: the '// [dependencies]' lines do not make a valid Cargo.toml: {exc}") from exc
    return manifest


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PluginLoadError(f"{path}: cannot read plugin: {exc}") from exc


def describe_file(path: Path) -> RustProject:
    source = _read_text(path)
    items = scan_items(source)
    module_name = items.user_module or _sanitize(path.stem)
    pyo3 = choose_pyo3(path, source)
    manifest = single_file_manifest(path, module_name, dependency_lines(path, source), pyo3)
    return RustProject(path, False, module_name, {"src/lib.rs": source.encode()}, manifest, "src/lib.rs", items, pyo3)


def crate_files(root: Path) -> dict[str, bytes]:
    """The files of a crate directory the build copies (relative POSIX name -> bytes): also what a
    run captures and what the plugin's sha256 covers, so that a rerun can check one against the other."""
    files: dict[str, bytes] = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(names):
            full = Path(folder) / name
            files[full.relative_to(root).as_posix()] = full.read_bytes()
    return files


def describe_crate(path: Path) -> RustProject:
    """A crate directory: its files are copied as they are; Cargo.toml must build a cdylib with pyo3."""
    manifest_path = path / "Cargo.toml"
    manifest = _read_text(manifest_path)
    try:
        data = tomllib.loads(manifest)
    except tomllib.TOMLDecodeError as exc:
        raise PluginLoadError(f"{manifest_path}: invalid TOML: {exc}") from exc
    package = data.get("package", {})
    lib = data.get("lib", {})
    if "pyo3" not in data.get("dependencies", {}):
        raise PluginLoadError(f"{manifest_path}: a Rust plugin crate must depend on pyo3 (pyo3 = \"{PYO3_VERSION}\")")
    if "cdylib" not in lib.get("crate-type", []):
        raise PluginLoadError(f'{manifest_path}: a Rust plugin crate needs [lib] crate-type = ["cdylib"]')
    if any(isinstance(spec, dict) and "path" in spec and not Path(spec["path"]).is_absolute()
           for spec in data.get("dependencies", {}).values()):
        raise PluginLoadError(f"{manifest_path}: relative 'path' dependencies are not supported (the crate is built in the cache)")
    inherited = list(package.values()) + list(data.get("dependencies", {}).values())
    if any(isinstance(value, dict) and value.get("workspace") for value in inherited):
        raise PluginLoadError(f"{manifest_path}: workspace-inherited fields are not supported; write the values out")
    name = lib.get("name") or str(package.get("name", path.name)).replace("-", "_")
    lib_rs = lib.get("path", "src/lib.rs")
    files = crate_files(path)
    if lib_rs not in files:
        raise PluginLoadError(f"{path}: the crate has no {lib_rs}")
    if "workspace" not in data:
        manifest += "\n\n# added by provbatch: a crate of its own wherever the cache lies\n[workspace]\n"
    items = scan_items(files[lib_rs].decode("utf-8", "replace"))
    return RustProject(path, True, _sanitize(name), files, manifest, lib_rs, items)


def describe(path: Path) -> RustProject:
    return describe_crate(path) if path.is_dir() else describe_file(path)


def key_parts(project: RustProject, toolchain: Toolchain) -> dict[str, str]:
    """The named inputs of the build; the cache key hashes them, the rebuild reason compares them."""
    from ..cache import hash_inputs

    sources = hash_inputs(part for name, data in sorted(project.files.items()) for part in (name, data))
    return {
        "source": sources,
        "manifest": hash_inputs([project.manifest]),
        "toolchain": hash_inputs([toolchain.fingerprint()]),
        "generator": GENERATOR_VERSION,
    }


# --------------------------------------------------------------------------- building


def generate_crate(project: RustProject, crate_dir: Path) -> None:
    """Write the crate to build into ``crate_dir`` (inside the cache, recreated each build)."""
    if crate_dir.exists():
        shutil.rmtree(crate_dir)
    for relative, data in project.files.items():
        target = crate_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (crate_dir / "Cargo.toml").write_text(project.manifest, encoding="utf-8")
    if project.items.user_module is None:
        with open(crate_dir / project.lib_rs, "a", encoding="utf-8") as handle:
            legacy = project.pyo3 is not None and _old_pyo3(project.pyo3.version)
            handle.write(module_wrapper(project.module_name, project.items, legacy=legacy))


def extension_suffix() -> str:
    return importlib.machinery.EXTENSION_SUFFIXES[0]


def run_maturin(toolchain: Toolchain, crate_dir: Path, target_dir: Path, wheel_dir: Path, log_path: Path) -> bool:
    """``maturin build --release`` into ``wheel_dir``; the whole output goes to ``log_path``."""
    env = dict(os.environ)
    env.update(CARGO_TARGET_DIR=str(target_dir), CARGO_TERM_COLOR="never")
    env.pop("CARGO_BUILD_TARGET_DIR", None)
    command = [
        toolchain.maturin, "build", "--release",
        "--manifest-path", str(crate_dir / "Cargo.toml"),
        "--interpreter", sys.executable,
        "--out", str(wheel_dir),
        "--auditwheel", "skip",
        "--compression-method", "stored",
    ]
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(command) + f"\n# CARGO_TARGET_DIR={target_dir}\n")
        log.flush()
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL, check=False)
    return done.returncode == 0


def extract_extension(wheel_dir: Path, module_name: str, destination: Path) -> None:
    """Copy the extension module out of the wheel maturin made, atomically (temp name + rename)."""
    wheels = sorted(wheel_dir.glob("*.whl"))
    if not wheels:
        raise RuntimeError(f"maturin produced no wheel in {wheel_dir}")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        members = [
            info for info in wheel.infolist()
            if Path(info.filename).name.startswith(module_name + ".") and info.filename.endswith((".so", ".pyd"))
        ]
        if not members:
            raise RuntimeError(f"no extension module '{module_name}' in {wheels[-1]}")
        temporary = destination.with_name(destination.name + f".tmp{os.getpid()}")
        with wheel.open(members[0]) as source, open(temporary, "wb") as target:
            shutil.copyfileobj(source, target)
    os.replace(temporary, destination)


# --------------------------------------------------------------------------- errors

_ERROR_LINE = re.compile(r"^error(?:\[(?P<code>E\d+)\])?: (?P<message>.+)$")
_LOCATION = re.compile(r"^\s*--> (?P<file>.+?):(?P<line>\d+):(?P<column>\d+)\s*$")
_NOT_THE_CAUSE = ("could not compile", "aborting due to")
_ERROR_COUNT = re.compile(r"due to (\d+) previous errors?")


def _relative_to_crate(file: str, crate_dir: Path) -> str | None:
    """cargo prints paths relative to the working directory, rustc relative to the crate."""
    candidate = Path(file)
    for base in ([] if candidate.is_absolute() else [Path.cwd(), crate_dir]) or [Path("/")]:
        try:
            return (base / candidate).relative_to(crate_dir).as_posix()
        except ValueError:
            continue
    return None


def _dependency_comment_line(project: RustProject, manifest_line: int) -> int | None:
    """The source line of the ``// [dependencies]`` comment that became this line of the generated manifest."""
    lines = project.manifest.splitlines()
    if not 0 < manifest_line <= len(lines):
        return None
    wanted = lines[manifest_line - 1].strip()
    source = project.files[project.lib_rs].decode("utf-8", "replace").splitlines()
    for number, text in enumerate(source, start=1):
        match = _DEPENDENCY_LINE.match(text)
        if match and match.group("spec") == wanted:
            return number
    return None


def _map_location(project: RustProject, crate_dir: Path, file: str, line: int, column: int) -> str:
    relative = _relative_to_crate(file, crate_dir)
    if relative == "Cargo.toml" and not project.is_crate:
        number = _dependency_comment_line(project, line)
        if number is not None:
            return f"{project.path}:{number}"
        return f"{crate_dir / relative}:{line}:{column} (the generated Cargo.toml)"
    if relative is None or relative not in project.files:
        return f"{file}:{line}:{column}"  # in a dependency
    if relative == project.lib_rs and project.items.user_module is None and line > project.user_lines:
        return f"{crate_dir / relative}:{line}:{column} (the generated #[pymodule])"
    return f"{project.user_file(relative)}:{line}:{column}"


def _cargo_error_context(project: RustProject, crate_dir: Path, following: list[str], message: str) -> str:
    """cargo's own errors (a bad dependency): the next line, and the ``// [dependencies]`` line at fault."""
    context = ""
    first = following[0].strip() if following else ""
    if first and str(crate_dir) not in first and not first.startswith(("error", "\N{COLLISION SYMBOL}")):
        context += f" ({first[:200]})"
    if not project.is_crate:
        source = project.files[project.lib_rs].decode("utf-8", "replace").splitlines()
        for name in re.findall(r"`([\w-]+)`", message):
            for number, line in enumerate(source, start=1):
                if _DEPENDENCY_LINE.match(line) and re.search(rf"\b{re.escape(name)}\b", line):
                    return context + f" at {project.path}:{number}"
    return context


_REGISTRY_FAILURE = ("failed to get `pyo3`", "failed to query replaced source registry", "Couldn't resolve host",
                     "failed to download", "no matching package named `pyo3`", "failed to select a version for the requirement `pyo3")


def registry_hint(project: RustProject, log_text: str) -> str:
    """When cargo could not get an older pyo3 from crates.io: say so, and what to do."""
    choice = project.pyo3
    if choice is None or choice.version == PYO3_VERSION or not any(s in log_text for s in _REGISTRY_FAILURE):
        return ""
    return (f" (this plugin needs {choice.describe()}, which cargo could not get from crates.io: check that "
            f"'cargo search pyo3' works here, or vendor it, or migrate the plugin to pyo3 {PYO3_VERSION})")


def summarize_build_error(project: RustProject, crate_dir: Path, log_text: str) -> str:
    """``first error at file:line:col`` with the file mapped back to the user's source."""
    lines = log_text.splitlines()
    count = next((m.group(1) for m in map(_ERROR_COUNT.search, lines) if m), None)
    for index, text in enumerate(lines):
        match = _ERROR_LINE.match(text)
        if not match or match.group("message").startswith(_NOT_THE_CAUSE):
            continue
        head = f"error[{match.group('code')}]" if match.group("code") else "error"
        message = f"{head}: {match.group('message')}"
        for follow in lines[index + 1:index + 6]:
            if location := _LOCATION.match(follow):
                where = _map_location(project, crate_dir, location["file"], int(location["line"]), int(location["column"]))
                message += f" at {where}"
                break
        if " at " not in message:
            message += _cargo_error_context(project, crate_dir, lines[index + 1:index + 3], match.group("message"))
        return message + (f" [{count} errors]" if count and count != "1" else "")
    # no rustc/cargo error line: maturin's own message (💥 maturin failed / Caused by: ...)
    tail = [s.strip() for s in lines if s.strip()][-3:]
    return " ".join(tail)[:500] if tail else "no output"

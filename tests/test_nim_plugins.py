"""Nim plugins: real nim builds through provbatch's own nimpy bridge.

Each plugin is built once per session into the shared build cache
(module-scoped fixtures); only the cold-build test uses a cache of its own.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import inspect
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import provbatch
from conftest import GC_EXPECTED, GC_TYPED, REPO, read_tsv, run_cli, write_source
from provbatch.errors import PluginLoadError
from provbatch.plugins.registry import importer, load_spec, loader_for
from provbatch.plugins.cache import artifact_bytes
from provbatch.plugins.nim.build import compile_error
from provbatch.plugins.nim.library import NimError, NimRef

pytestmark = pytest.mark.skipif(shutil.which("nim") is None, reason="nim is not installed (apt-get install -y nim)")

GC_NIM = REPO / "nim_plugins" / "gc_content.nim"
STATE_NIM = REPO / "nim_plugins" / "state_example.nim"
GENOMES_DIR = REPO / "examples" / "genomes"
GENOMES = sorted(GENOMES_DIR.iterdir())

#: exercises the bridge: both constant conventions, defaults of every
#: supported type, a renamed export, tuples and objects, Nim exceptions
META_PLUGIN = """\
    import std/strutils
    import nimpy

    const
      ID = "meta_nim"
      VERSION = "0.1"
      OUTPUT = @["length", "upper"]
      PARAMETERS = @[("times", "Integer", "1", "multiplies the length")]
      ALT_ID = "meta_nim_alt"

    exportpy_consts(ID, VERSION, OUTPUT, PARAMETERS)
    exportpy_consts_wpfx("c_", ALT_ID)

    proc py_const_INPUT(): string {.exportpy.} = "any string"

    type
      BadInput = object of CatchableError
      Stats = object
        name: string
        sizes: seq[int]

    proc compute(entity: string, times: int = 1):
                 tuple[results: (int, string), logs: seq[string]] {.exportpy.} =
      if entity == "bad": raise newException(BadInput, "entity 'bad' is refused")
      result.results = (entity.len * times, entity.toUpperAscii)
      result.logs = @["seen\\t" & entity]

    proc defaults(s = "x", i = 3, f = 0.5, b = true, xs: seq[int] = @[1, 2], pair = (1, "a"),
                  scale: float = 2): (string, int, float, bool, seq[int], (int, string), float) {.exportpy.} =
      (s, i, f, b, xs, pair, scale)

    proc stats(name: string, sizes: seq[int]): Stats {.exportpy.} = Stats(name: name, sizes: sizes)

    proc named(): tuple[a: int, b: seq[(string, float)]] {.exportpy.} = (a: 1, b: @[("x", 0.1 + 0.2)])

    proc nothing(x: int) {.exportpy.} = discard

    proc original_name(x: int): int {.exportpy: "renamed".} = x + 1

    proc fail(kind: string): int {.exportpy.} =
      case kind
      of "value": raise newException(ValueError, "bad value")
      of "io": raise newException(IOError, "cannot read thing")
      of "index": result = @[1][kind.len]
      else: result = 0
"""

#: the value conversions of the native bridge, both ways, and its concurrency
NATIVE_PLUGIN = """\
    import std/[json, os, tables]
    import nimpy

    type
      Colour = enum red, green, blue
      Inner = object
        label: string
        weights: array[2, float]
      Outer = object
        name: string
        inner: Inner
        tags: seq[string]
      Counter = ref object
        hits: int
      Other = ref object
        x: int

    proc echo_str(s: string): (string, int) {.exportpy.} = (s, s.len)
    proc echo_char(c: char): char {.exportpy.} = c
    proc echo_enum(c: Colour): (Colour, int) {.exportpy.} = (c, ord(c))
    proc echo_small(x: uint8, y: int16): (uint8, int16) {.exportpy.} = (x, y)
    proc echo_u64(x: uint64): uint64 {.exportpy.} = x
    proc echo_float(x: float32, y: float): (float32, float) {.exportpy.} = (x, y)
    proc echo_seq(xs: seq[int], ys: array[3, string]): (seq[int], array[3, string]) {.exportpy.} = (xs, ys)
    proc echo_outer(o: Outer): Outer {.exportpy.} = o
    proc echo_table(t: Table[string, seq[int]]): OrderedTable[string, int] {.exportpy.} =
      for key in ["b", "a"]:
        if key in t: result[key] = t[key].len
    proc echo_json(j: JsonNode): JsonNode {.exportpy.} =
      result = %*{"got": j, "kind": $j.kind}

    proc new_counter(): Counter {.exportpy.} = Counter()
    proc new_other(): Other {.exportpy.} = Other(x: 1)
    proc hit(c: Counter, times: int): int {.exportpy.} =
      for _ in 1 .. times: inc c.hits
      c.hits
    proc maybe(c: Counter = nil): bool {.exportpy.} = c.isNil

    proc wait_for_file(path: string, seconds: int): bool {.exportpy.} =
      ## Returns true once ``path`` exists: only a Python thread creates it, which
      ## can run only if the bridge released the GIL during this call.
      for _ in 1 .. seconds * 100:
        if fileExists(path): return true
        sleep(10)
      false

    proc bad_message(): int {.exportpy.} =
      raise newException(KeyError, "no key '\\xff' here")
"""

BROKEN_PLUGIN = """\
    import nimpy

    proc compute(entity: string): tuple[results: seq[int], logs: seq[string]] {.exportpy.} =
      result.results = @[entity.len + undefinedThing]
"""


@pytest.fixture(scope="module")
def gc_module():
    return importer(GC_NIM, req_const=["ID", "VERSION", "OUTPUT"], req_func=["compute"])


@pytest.fixture(scope="module")
def state_module():
    return importer(STATE_NIM, req_func=["compute", "initialize", "finalize"])


@pytest.fixture(scope="module")
def meta_path() -> Path:
    """A stable path beside the session's build cache: the build key includes the
    plugin's path, so a new tmp dir per session would rebuild it every time."""
    folder = Path(os.environ["PROVBATCH_CACHE"]).parent / "nim_test_plugins"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "meta.nim"
    if not path.exists() or path.read_text() != textwrap.dedent(META_PLUGIN):
        write_source(folder, "meta.nim", META_PLUGIN)
    return path


@pytest.fixture(scope="module")
def meta_module(meta_path):
    return importer(meta_path)


@pytest.fixture(scope="module")
def native_module(meta_path):
    path = meta_path.parent / "native_values.nim"
    if not path.exists() or path.read_text() != textwrap.dedent(NATIVE_PLUGIN):
        write_source(path.parent, path.name, NATIVE_PLUGIN)
    return importer(path)


def python_gc(path: Path, digits: int = 4):
    sys.path.insert(0, str(REPO / "plugins"))
    try:
        import gc_content
    finally:
        sys.path.remove(str(REPO / "plugins"))
    return gc_content.compute(str(path), digits=digits)


# ---------------------------------------------------------------- results


@pytest.mark.parametrize("fasta", GENOMES, ids=lambda p: p.name)
def test_gc_results_equal_the_python_plugin(gc_module, fasta):
    results, logs = gc_module.compute(str(fasta), digits=4)
    expected_results, expected_logs = python_gc(fasta)
    assert list(results) == expected_results
    assert logs == expected_logs
    assert [str(value) for value in results] == GC_EXPECTED[f"examples/genomes/{fasta.name}"]


def test_gc_known_values_plain_gzipped_and_digits(gc_module):
    assert gc_module.compute(str(GENOMES_DIR / "ecoli_like.fna")) == ((0.5066, 5000), ["records\t1"])
    assert gc_module.compute(str(GENOMES_DIR / "plasmid_mix.fna"))[0] == (0.4147, 3200)
    assert gc_module.compute(str(GENOMES_DIR / "gzipped.fna.gz"))[0] == (0.5066, 5000)
    assert gc_module.compute(str(GENOMES_DIR / "ecoli_like.fna"), digits=2)[0] == (0.51, 5000)
    assert list(gc_module.compute(str(GENOMES_DIR / "ecoli_like.fna"), 6)[0]) == python_gc(GENOMES_DIR / "ecoli_like.fna", 6)[0]


def test_gc_lines_and_headers_across_blocks(gc_module, tmp_path):
    """Lines of every length and '>' inside sequences: the 64 KiB block boundaries fall anywhere."""
    fasta = tmp_path / "big.fna"
    with open(fasta, "w") as out:
        for i in range(40):
            out.write(f">rec{i} some > description with ACGT in it\n")
            out.write(("ACGTTGCAnngcRY>" * (i + 1) + "\r\n") * (300 + 17 * i))
    gzipped = tmp_path / "big.fna.gz"
    gzipped.write_bytes(gzip.compress(fasta.read_bytes()))
    for path in (fasta, gzipped):
        results, logs = gc_module.compute(str(path), digits=6)
        assert (list(results), logs) == python_gc(path, digits=6)


def test_gc_empty_file_warns(gc_module, tmp_path):
    empty = tmp_path / "empty.fna"
    empty.write_text(">only a header\n")
    results, logs = gc_module.compute(str(empty))
    assert (list(results), logs) == python_gc(empty) == ([0.0, 0], ["records\t1", "warning\tno A, C, G or T in the file"])


def test_gc_missing_file_is_an_oserror_naming_it(gc_module, tmp_path):
    with pytest.raises(OSError, match="nope.fna") as caught:
        gc_module.compute(str(tmp_path / "nope.fna"))
    assert type(caught.value).__name__ == "IOError" and isinstance(caught.value, NimError)


# ---------------------------------------------------------------- constants, defaults, kwargs


def test_constants_and_spec(gc_module):
    assert gc_module.ID == "gc_content_nim" and gc_module.VERSION == "1.0.0"
    assert gc_module.OUTPUT == ["gc_content", "genome_size"]
    assert gc_module.PARAMETERS == [("digits", "Integer", "4", "decimal digits the GC content is rounded to")]
    assert gc_module.__lang__ == "nim"
    spec = gc_module.__provbatch_spec__
    assert spec.lang == "nim" and spec.source == str(GC_NIM)
    assert Path(spec.artifact).is_file() and spec.process_local_state is False
    assert not hasattr(gc_module, "py_const_ID")


def test_both_constant_conventions_and_the_prefix_option(meta_module, meta_path):
    assert (meta_module.ID, meta_module.VERSION, meta_module.INPUT) == ("meta_nim", "0.1", "any string")
    assert meta_module.OUTPUT == ["length", "upper"]
    assert meta_module.PARAMETERS == [("times", "Integer", "1", "multiplies the length")]
    assert callable(meta_module.c_ALT_ID) and meta_module.c_ALT_ID() == "meta_nim_alt"
    other = importer(meta_path, const_prefix="c_")  # the same build, another reading of it
    assert loader_for(".nim").last_built is False
    assert other.ALT_ID == "meta_nim_alt" and other.py_const_ID() == "meta_nim" and not hasattr(other, "ID")


def test_defaults_are_filled_in_nim_and_kwargs_bind_by_name(meta_module):
    assert meta_module.compute("abc") == ((3, "ABC"), ["seen\tabc"])
    assert meta_module.compute("abc", times=2) == meta_module.compute("abc", 2) == ((6, "ABC"), ["seen\tabc"])
    assert meta_module.defaults() == ("x", 3, 0.5, True, [1, 2], (1, "a"), 2.0)
    assert meta_module.defaults(xs=[], pair=(7, "b"), b=False, f=1) == ("x", 3, 1.0, False, [], (7, "b"), 2.0)
    assert str(inspect.signature(meta_module.compute)) == "(entity, times=1)"
    # a tuple default is a tuple, as the values the procs return (JSON made it a list before the native bridge)
    assert inspect.signature(meta_module.defaults).parameters["pair"].default == (1, "a")


def test_return_shapes(meta_module):
    assert meta_module.stats("s", [1, 2]) == {"name": "s", "sizes": [1, 2]}
    assert meta_module.named() == (1, [("x", 0.30000000000000004)])
    assert meta_module.nothing(1) is None
    assert meta_module.renamed(41) == 42 and not hasattr(meta_module, "original_name")


def test_bad_arguments_are_type_errors(meta_module):
    with pytest.raises(TypeError, match=r"compute\(\) got an unexpected keyword argument 'bogus' \(the Nim proc accepts: entity, times\)"):
        meta_module.compute("abc", bogus=1)
    with pytest.raises(TypeError, match=r"missing required argument\(s\): entity"):
        meta_module.compute()
    with pytest.raises(TypeError, match=r"compute\(\): times: expected an integer, got a string"):
        meta_module.compute("abc", times="2")
    with pytest.raises(TypeError, match="multiple values for argument 'entity'"):
        meta_module.compute("abc", entity="x")


# ---------------------------------------------------------------- exceptions


def test_nim_exceptions_become_python_exceptions(meta_module):
    with pytest.raises(NimError, match="entity 'bad' is refused") as caught:
        meta_module.compute("bad")
    assert type(caught.value).__name__ == "BadInput" and caught.value.nim_type == "BadInput"
    with pytest.raises(ValueError, match="bad value"):
        meta_module.fail("value")
    with pytest.raises(OSError, match="cannot read thing"):
        meta_module.fail("io")
    with pytest.raises(IndexError) as index_error:
        meta_module.fail("index")  # a Defect too: the entity fails, the process goes on
    assert type(index_error.value).__name__ == "IndexDefect"
    assert meta_module.fail("none") == 0


def test_nim_exceptions_pickle_with_their_name(meta_module):
    with pytest.raises(NimError) as caught:
        meta_module.compute("bad")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy).__name__ == "BadInput" and str(copy) == "entity 'bad' is refused"


# ---------------------------------------------------------------- the native bridge: values, GIL, threads


def test_the_procs_are_built_in_functions_of_an_extension_module(meta_module):
    library = meta_module.__nim_library__
    assert type(meta_module.compute).__name__ == "builtin_function_or_method"
    assert meta_module.compute.__module__ == library.module.__name__
    assert library.module.__name__.endswith(".meta") and library.module.__file__ == library.path
    assert meta_module.compute.__doc__ == "Nim proc compute(entity: string, times: int = 1): tuple[results: (int, string), logs: seq[string]]"
    assert [p["name"] for p in library.descriptor["procs"] if p["name"] == "compute"] == ["compute"]


def test_strings_chars_enums_and_integers(native_module):
    assert native_module.echo_str("héllo") == ("héllo", 6)  # UTF-8 bytes in Nim
    undecodable = b"id\xff\xfe".decode("utf-8", "surrogateescape")  # how provbatch reads odd bytes in ids
    assert native_module.echo_str(undecodable) == (undecodable, 4)
    assert native_module.echo_char("x") == "x"
    with pytest.raises(TypeError, match=r"^echo_char\(\): c: expected a one-character string, got a string$"):
        native_module.echo_char("xy")
    assert native_module.echo_enum("blue") == ("blue", 2)
    with pytest.raises(TypeError, match=r"^echo_enum\(\): c: 'purple' is not a Colour$"):
        native_module.echo_enum("purple")
    assert native_module.echo_small(255, -32768) == (255, -32768)
    with pytest.raises(OverflowError, match=r"^echo_small\(\): x: 256 does not fit in a uint8$"):
        native_module.echo_small(256, 0)
    with pytest.raises(OverflowError, match=r"^echo_small\(\): x: the integer does not fit in a uint8$"):
        native_module.echo_small(-1, 0)
    assert native_module.echo_u64(2**64 - 1) == 2**64 - 1
    with pytest.raises(TypeError, match=r"^echo_small\(\): x: expected an integer, got a bool$"):
        native_module.echo_small(True, 0)


def test_floats_sequences_objects_tables_and_json(native_module):
    assert native_module.echo_float(0.5, 3) == (0.5, 3.0)
    assert native_module.echo_float(0.1, 0.1 + 0.2) == (pytest.approx(0.1), 0.30000000000000004)
    assert native_module.echo_seq((1, 2), ["a", "b", "c"]) == ([1, 2], ["a", "b", "c"])
    assert native_module.echo_seq({7}, ("a", "b", "c")) == ([7], ["a", "b", "c"])
    with pytest.raises(TypeError, match=r"^echo_seq\(\): xs\[1\]: expected an integer, got a float$"):
        native_module.echo_seq([1, 2.5], ["a", "b", "c"])
    with pytest.raises(TypeError, match=r"^echo_seq\(\): ys: expected a list of 3, got a list$"):
        native_module.echo_seq([], ["a"])
    with pytest.raises(TypeError, match=r"^echo_seq\(\): xs: expected a list, got a string$"):
        native_module.echo_seq("12", ["a", "b", "c"])
    outer = {"name": "n", "inner": {"label": "l", "weights": [0.25, 1.0]}, "tags": ["t"]}
    assert native_module.echo_outer(outer) == outer
    assert native_module.echo_outer({"name": "only"}) == {"name": "only", "inner": {"label": "", "weights": [0.0, 0.0]}, "tags": []}
    assert list(native_module.echo_table({"a": [1, 2, 3], "b": []}).items()) == [("b", 0), ("a", 3)]
    assert native_module.echo_json({"x": [1, 2.5, None, True, "s"]}) == {"got": {"x": [1, 2.5, None, True, "s"]}, "kind": "JObject"}
    assert native_module.echo_json([]) == {"got": [], "kind": "JArray"}
    with pytest.raises(TypeError, match=r"^echo_json\(\): j: a bytes cannot be passed to Nim$"):
        native_module.echo_json(b"x")


def test_refs_check_their_type_and_library(native_module, meta_module, state_module):
    counter, other = native_module.new_counter(), native_module.new_other()
    assert (counter.type_name, other.type_name) == ("Counter", "Other")
    assert native_module.hit(counter, 2) == 2 and native_module.hit(counter, times=3) == 5
    with pytest.raises(TypeError, match=r"^hit\(\): c: expected a Counter state, got a Other$"):
        native_module.hit(other, 1)
    foreign = state_module.initialize()
    with pytest.raises(TypeError, match=r"^hit\(\): c: the state belongs to another Nim library$"):
        native_module.hit(foreign, 1)
    with pytest.raises(TypeError, match=r"^hit\(\): c: expected a Nim state handle, got an integer$"):
        native_module.hit(3, 1)
    assert native_module.maybe() is True and native_module.maybe(None) is True and native_module.maybe(counter) is False
    counter.release()
    with pytest.raises(TypeError, match=r"^hit\(\): c: <Nim Counter handle \d+ released of .*> was released"):
        native_module.hit(counter, 1)


def test_the_gil_is_released_while_a_proc_runs(native_module, tmp_path):
    """The Nim proc waits for a file that only a Python thread creates (the timeout
    watchdog of a worker is such a thread)."""
    flag = tmp_path / "flag"
    started = threading.Event()

    def create() -> None:
        started.wait()
        flag.write_text("x")

    thread = threading.Thread(target=create)
    thread.start()
    started.set()
    assert native_module.wait_for_file(str(flag), 60) is True
    thread.join()


def test_calls_from_threads_are_serialized_on_one_state(native_module):
    counter = native_module.new_counter()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(2000):
                native_module.hit(counter, 5)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and native_module.hit(counter, 0) == 4 * 2000 * 5


def test_timeout_ends_a_worker_stuck_in_nim(tmp_path, meta_path):
    """The worker's watchdog is a Python thread: it runs because the proc holds no GIL."""
    plugin = meta_path.parent / "stuck.nim"
    source = textwrap.dedent("""\
        import std/os
        import nimpy
        const
          ID = "stuck_nim"
          VERSION = "1"
          INPUT = "x"
          OUTPUT = @["length"]
        exportpy_consts(ID, VERSION, INPUT, OUTPUT)
        proc compute(entity: string): tuple[results: (int, ), logs: seq[string]] {.exportpy.} =
          while entity == "stuck": sleep(100)
          result.results = (entity.len, )
    """)
    if not plugin.exists() or plugin.read_text() != source:
        plugin.write_text(source)
    attributes = tmp_path / "attributes.yaml"
    attributes.write_text("length:\n  definition: length\n  datatype: Integer\n  computation_group: test\n")
    entities, out = tmp_path / "ids.txt", tmp_path / "out.tsv"
    entities.write_text("a\nstuck\nccc\n")
    proc = run_cli(plugin, entities, "--attributes", attributes, "--backend", "pool", "--workers", "2",
                   "--timeout", "0.5", "--out", out)
    assert proc.returncode == 3, proc.stderr  # EXIT_ENTITIES_FAILED: one entity failed for good
    assert read_tsv(out) == {"a": ["1"], "ccc": ["3"]}
    assert (tmp_path / "out.tsv.failures.tsv").read_text().startswith("stuck\t1\tTimeout\t")


def test_exception_messages_keep_odd_bytes(native_module):
    with pytest.raises(NimError) as caught:
        native_module.bad_message()
    assert type(caught.value).__name__ == "KeyError" and str(caught.value) == "no key '\udcff' here"


def test_the_library_imports_outside_provbatch(meta_module, tmp_path):
    """A built plugin is an ordinary extension module: without provbatch's configuration
    a Nim exception is a RuntimeError naming it, a ref a capsule."""
    code = textwrap.dedent(f"""
        import importlib.machinery, importlib.util
        loader = importlib.machinery.ExtensionFileLoader("meta", {meta_module.__nim_library__.path!r})
        module = importlib.util.module_from_spec(importlib.util.spec_from_loader("meta", loader))
        loader.exec_module(module)
        print(module.compute("ab", times=2))
        try:
            module.compute("bad")
        except RuntimeError as exc:
            print(type(exc).__name__, exc)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["((4, 'AB'), ['seen\\tab'])", "RuntimeError BadInput: entity 'bad' is refused"]


# ---------------------------------------------------------------- state


def test_state_lifecycle(state_module, tmp_path):
    summary = tmp_path / "summary.tsv"
    library = state_module.__nim_library__
    live = library.live_handles()
    state = state_module.initialize(summary=str(summary), uppercase_only=True)  # a compute parameter: ignored here
    assert isinstance(state, NimRef) and state.type_name == "BatchTotals"
    assert library.live_handles() == live + 1
    assert state_module.compute(str(GENOMES_DIR / "plasmid_mix.fna"), state=state) == ((2, 3200), ["files_in_this_worker\t1"])
    assert state_module.compute(str(GENOMES_DIR / "tiny.fna"), state=state, summary="x") == ((1, 120), ["files_in_this_worker\t2"])
    assert state_module.compute(str(GENOMES_DIR / "ecoli_like.fna"), state=state)[1] == ["files_in_this_worker\t3"]
    state_module.finalize(state)
    assert summary.read_text() == f"{os.getpid()}\t3\t4\t8320\n"  # finalize saw the counts
    assert state.released and library.live_handles() == live
    with pytest.raises(TypeError, match="was released"):
        state_module.compute(str(GENOMES_DIR / "tiny.fna"), state=state)
    assert state_module.__provbatch_spec__.process_local_state is True


def test_state_is_bound_to_its_process(state_module):
    state = state_module.initialize()
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(state)
    with pytest.raises(TypeError, match="missing required argument\\(s\\): state"):
        state_module.compute(str(GENOMES_DIR / "tiny.fna"))
    library = state_module.__nim_library__
    live = library.live_handles()
    del state  # collected without finalize: released all the same
    assert library.live_handles() == live - 1


# ---------------------------------------------------------------- builds and errors


def test_compile_error_is_one_line_at_the_users_file(tmp_path):
    plugin = write_source(tmp_path, "broken.nim", BROKEN_PLUGIN)
    with pytest.raises(PluginLoadError) as caught:
        importer(plugin)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{plugin}:4: undeclared identifier: 'undefinedThing' (full build log: ")
    log_path = Path(message.rsplit("full build log: ", 1)[1].rstrip(")"))
    assert log_path.is_file() and "undefinedThing" in log_path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.nim"]


def test_bridge_errors_point_at_the_exported_proc(tmp_path):
    plugin = write_source(tmp_path, "var_param.nim", "import nimpy\n\nproc compute(entity: var string): int {.exportpy.} = 1\n")
    with pytest.raises(PluginLoadError, match=rf"^{plugin}:3: exportpy: 'var' parameters cannot be exported"):
        importer(plugin)
    plugin.write_text("import nimpy\n\nproc compute(entity: string, cb: proc()): int {.exportpy.} = 1\n")
    with pytest.raises(PluginLoadError, match=rf"^{plugin}:3: provbatch nimpy bridge: parameters of type proc"):
        importer(plugin)


def test_compile_error_parsing_of_nim_and_c_compiler_output(tmp_path):
    """The first error, placed in the plugin when it comes from a macro the plugin instantiated."""
    plugin, log_path = tmp_path / "p.nim", tmp_path / "build.log"
    bridge = "/x/bridge/provbatch_bridge/runtime.nim"
    macro_output = f"{plugin}(7, 3) template/generic instantiation of `exportpy` from here\n{bridge}(225, 5) Error: boom\n"
    assert compile_error(macro_output, plugin, log_path) == f"{plugin}:7: boom (full build log: {log_path})"
    gcc_output = (
        "/c/@mp.nim.c:161:15: error: unknown type name 'this'\n"
        "Error: execution of an external compiler program 'gcc -c ...' failed with exit code: 1\n"
    )
    assert compile_error(gcc_output, plugin, log_path) == (
        f"{plugin}: nim build failed: C compiler error: unknown type name 'this' (full build log: {log_path})"
    )


def test_missing_nim_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PluginLoadError, match=rf"^{GC_NIM}: nim not found: install it with apt-get install -y nim$"):
        importer(GC_NIM)


def test_unknown_option_is_refused(gc_module):
    with pytest.raises(PluginLoadError, match="unknown option\\(s\\) constants_class for a Nim plugin"):
        importer(GC_NIM, constants_class="Meta")


def test_cold_build_once_under_concurrency_then_hits_and_dependency_rebuilds(tmp_path):
    """A cache of its own: two processes race, one builds; a helper module's change rebuilds."""
    plugin_dir, cache = tmp_path / "plugin", tmp_path / "cache"
    plugin_dir.mkdir()
    (plugin_dir / "helper.nim").write_text("proc factor*(): int = 2\n")
    plugin = write_source(plugin_dir, "uses_helper.nim", """\
        import nimpy, helper
        proc compute(entity: string): tuple[results: seq[int], logs: seq[string]] {.exportpy.} =
          result.results = @[entity.len * factor()]
    """)
    code = textwrap.dedent(f"""
        import logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
        from provbatch.plugins.registry import importer, loader_for
        module = importer({str(plugin)!r})
        print("BUILT" if loader_for(".nim").last_built else "LOADED", module.compute("abc")[0])
    """)
    env = {**os.environ, "PROVBATCH_CACHE": str(cache)}

    def run(count: int) -> list[str]:
        procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env) for _ in range(count)]
        outputs = [p.communicate(timeout=600) for p in procs]
        assert all(p.returncode == 0 for p in procs), outputs
        return [out for out, _ in outputs]

    outputs = run(2)
    assert sorted(out.strip().splitlines()[-1] for out in outputs) == ["BUILT [6]", "LOADED [6]"]
    assert "no cached build, building" in "".join(outputs)
    assert run(1)[0].strip().splitlines()[-1] == "LOADED [6]"
    (plugin_dir / "helper.nim").write_text("proc factor*(): int = 3\n")
    output = run(1)[0]
    assert f"{plugin_dir / 'helper.nim'} changed, building" in output
    assert output.strip().splitlines()[-1] == "BUILT [9]"
    assert sorted(p.name for p in plugin_dir.iterdir()) == ["helper.nim", "uses_helper.nim"]  # nothing written there


# ---------------------------------------------------------------- workers


def test_load_spec_in_this_process_is_the_same_module(gc_module):
    assert load_spec(gc_module.__provbatch_spec__) is gc_module


def test_a_worker_without_nim_loads_the_shipped_library(gc_module, tmp_path):
    spec = gc_module.__provbatch_spec__
    moved = tmp_path / "driver" / Path(spec.artifact).parent.name / Path(spec.artifact).name
    shipped = dataclasses.replace(spec, artifact=str(moved)).with_blob(artifact_bytes(spec))
    code = textwrap.dedent("""
        import pickle, sys
        from provbatch.plugins.registry import load_spec
        module = load_spec(pickle.loads(sys.stdin.buffer.read()))
        print(module.compute(sys.argv[1])[0])
    """)
    env = {**os.environ, "PROVBATCH_CACHE": str(tmp_path / "node_cache"), "PATH": "/nonexistent"}  # no nim here
    proc = subprocess.run([sys.executable, "-c", code, str(GENOMES_DIR / "ecoli_like.fna")], input=pickle.dumps(shipped),
                          capture_output=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().strip() == "(0.5066, 5000)"
    written = list((tmp_path / "node_cache" / "nim").rglob("*.so"))
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in written] == [spec.artifact_sha256]


# ---------------------------------------------------------------- through the engine


def test_cli_serial_gc_equals_expected(gc_module, tmp_path):
    out = tmp_path / "gc.tsv"
    proc = run_cli(GC_NIM, "examples/genomes.txt", "--backend", "serial", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(out) == GC_EXPECTED


def test_cli_pool_state_runs_initialize_and_finalize_per_worker(state_module, tmp_path):
    entities = tmp_path / "plain.txt"
    entities.write_text("".join(f"{p}\n" for p in GENOMES if p.suffix == ".fna"))
    out, summary = tmp_path / "records.tsv", tmp_path / "summary.tsv"
    proc = run_cli(STATE_NIM, entities, "--backend", "pool", "--workers", "2", "--param", f"summary={summary}", "--out", out)
    assert proc.returncode == 0, proc.stderr
    rows = read_tsv(out)
    assert rows[str(GENOMES_DIR / "plasmid_mix.fna")] == ["2", "3200"] and rows[str(GENOMES_DIR / "tiny.fna")] == ["1", "120"]
    totals = [line.split("\t") for line in summary.read_text().splitlines()]
    assert 1 <= len(totals) <= 2  # one line per worker process
    assert sum(int(t[1]) for t in totals) == 5 and sum(int(t[3]) for t in totals) == 15320


def test_check_accepts_nim_plugins(gc_module, state_module):
    for plugin in (GC_NIM, STATE_NIM):
        proc = run_cli("check", plugin, prog="provbatch")
        assert proc.returncode == 0, proc.stderr


def test_run_batch_failing_entity_does_not_stop_the_batch(gc_module, tmp_path):
    entities = [str(GENOMES_DIR / "tiny.fna"), str(tmp_path / "missing.fna"), str(GENOMES_DIR / "plasmid_mix.fna")]
    result = provbatch.run_batch(GC_NIM, entities, backend="serial")
    assert [row[0] for row in result] == [entities[0], entities[2]]
    [failure] = result.failures
    assert failure.entity == entities[1] and failure.error_class == "IOError" and "missing.fna" in failure.message


def test_run_batch_serial_with_state(state_module, tmp_path):
    summary = tmp_path / "summary.tsv"
    genomes = [str(GENOMES_DIR / name) for name in ("plasmid_mix.fna", "tiny.fna", "ecoli_like.fna")]
    result = provbatch.run_batch(STATE_NIM, genomes, params={"summary": str(summary)}, backend="serial")
    assert not result.failures
    assert [row[1] for row in result] == [[2, 3200], [1, 120], [1, 5000]]
    # native code computes in one worker process (a crash there fails only its entity, issue 13):
    # one state, one initialize, one finalize that saw every entity, as in the driver
    pid, *totals = summary.read_text().rstrip("\n").split("\t")
    assert totals == ["3", "4", "8320"] and int(pid) != os.getpid()
    assert result.report.backend == "serial (isolated)"


@pytest.mark.ray
def test_run_batch_on_ray(gc_module, ray_session):
    result = provbatch.run_batch(GC_NIM, [str(path) for path in GENOMES], backend="ray", workers=2)
    assert not result.failures
    assert {Path(entity).name: results for entity, results, _ in result} == {
        Path(name).name: values for name, values in GC_TYPED.items()
    }

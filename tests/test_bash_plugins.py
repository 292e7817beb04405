"""Bash plugins, run with real bash: constants, output contract, state, failures, isolation, hostile input, hangs."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import provbatch
from conftest import GC_EXPECTED, REPO, read_tsv, run_cli
from provbatch.errors import InterfaceRequirementError, PluginLoadError
from provbatch.plugins.registry import importer, load_spec, loader_for
from provbatch.plugins.bash.runner import BashCallCancelled, BashCallError, runners_of_process

sys.path.insert(0, str(REPO / "plugins"))
import gc_content as gc_python  # noqa: E402  the Python twin of gc_content.sh

GC_SH = REPO / "plugins" / "gc_content.sh"
STATE_SH = REPO / "plugins" / "bash_state_example.sh"
MODES = [pytest.param(True, id="persistent"), pytest.param(False, id="naive")]

#: prints each argument as hex (one result field per argument), so that any byte is visible
ECHO_HEX = r"""
ID=echo_hex
VERSION=1
INPUT="any string"
OUTPUT=(entity params)
hex() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }
compute() {
  local arg params=
  for arg in "${@:2}"; do params+=$(hex "$arg"),; done
  printf '%s\t%s\n' "$(hex "$1")" "$params"
}
"""


@pytest.fixture
def bash_plugin(tmp_path):
    """Write a .sh plugin from a dedented source; returns its path."""

    def write(source: str, name: str = "plugin.sh") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(source))
        return path

    return write


@pytest.fixture(autouse=True)
def _close_bashes():
    """Each test ends with no bash of its own left running."""
    yield
    for runner in runners_of_process():
        runner.close()


def hexed(text: str) -> str:
    return os.fsencode(text).hex()


def processes_with(marker: str) -> list[int]:
    """Pids of live processes whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


# --------------------------------------------------------------------------- constants


def test_constants_of_each_form(bash_plugin):
    plugin = bash_plugin(r"""
        ID="demo"
        VERSION=$(printf '%s.%s' 1 2)
        INPUT='a path; with "quotes" and $dollars'
        OUTPUT=(first)
        OUTPUT+=(second)
        PARAMETERS=(
          $'n\tInteger\t3\thow many'
          $'label\tString(16)\t\ta label, empty default'
        )
        declare -A EXTRA=([key]=value ["with space"]=x)
        declare -i ANSWER=40+2
        readonly FROZEN="read only"
        METHOD="line one
        line two"
        __private=hidden
        helper() { :; }
        compute() { printf '1\t2\n'; }
        """)
    module = importer(plugin)
    assert module.ID == "demo" and module.VERSION == "1.2"
    assert module.INPUT == 'a path; with "quotes" and $dollars'
    assert module.OUTPUT == ["first", "second"]
    # tab-separated elements come back as lists, as MultiPlug reads them
    assert module.PARAMETERS == [["n", "Integer", "3", "how many"], ["label", "String(16)", "", "a label, empty default"]]
    assert module.EXTRA == {"key": "value", "with space": "x"}
    assert module.ANSWER == "42" and module.FROZEN == "read only"
    assert module.METHOD == "line one\nline two"
    # every function is exposed, as MultiPlug exposes them; names starting with _ stay private
    assert not hasattr(module, "__private") and module.helper() == ""
    assert module.__bash_functions__ == {"helper", "compute"}
    assert module.__lang__ == "bash" and callable(module.compute)
    assert not hasattr(module, "initialize")


def test_constants_are_read_in_a_clean_environment(bash_plugin, monkeypatch):
    monkeypatch.setenv("PROVBATCH_TEST_SECRET", "leaked")
    monkeypatch.setenv("BASH_ENV", str(bash_plugin("touch should-never-run\n", name="env.sh")))
    plugin = bash_plugin("""
        SEEN="${PROVBATCH_TEST_SECRET-unset}"
        LOCALE="$LC_ALL"
        OUTPUT=(x)
        compute() { printf '%s\\n' "${PROVBATCH_TEST_SECRET-unset}"; }
        """)
    module = importer(plugin)
    assert module.SEEN == "unset" and module.LOCALE == "C"
    assert module.compute("e") == (["leaked"], [])  # compute sees the worker's environment
    assert not (plugin.parent / "should-never-run").exists() and not Path("should-never-run").exists()


def test_top_level_output_is_not_a_constant_nor_a_result(bash_plugin):
    plugin = bash_plugin("""
        echo "top level chatter"
        trap 'echo "top level trap"' EXIT
        OUTPUT=(x)
        compute() { echo result; }
        """)
    module = importer(plugin)
    assert module.OUTPUT == ["x"] and module.compute("e") == (["result"], [])


def test_syntax_error_is_one_line_naming_file_and_line(bash_plugin):
    plugin = bash_plugin("""
        OUTPUT=(x)
        compute() {
          if true; then echo x
        }
        """)
    with pytest.raises(PluginLoadError) as info:
        importer(plugin)
    message = str(info.value)
    assert message.startswith(f"{plugin}:") and "syntax error" in message and "\n" not in message


def test_top_level_exit_is_a_load_error(bash_plugin):
    plugin = bash_plugin("""
        OUTPUT=(x)
        echo "missing config" >&2
        exit 4
        """)
    with pytest.raises(PluginLoadError, match=r"missing config.*status 4"):
        importer(plugin)


def test_missing_compute_and_non_file(bash_plugin, tmp_path):
    plugin = bash_plugin("ID=x\n")
    with pytest.raises(InterfaceRequirementError, match="required function 'compute'"):
        importer(plugin, req_func=["compute"])
    folder = tmp_path / "dir.sh"
    folder.mkdir()
    with pytest.raises(PluginLoadError, match="single .sh file"):
        loader_for(".sh").load(folder)


# --------------------------------------------------------------------------- output contract


@pytest.mark.parametrize("persistent", MODES)
def test_results_and_logs(bash_plugin, persistent):
    plugin = bash_plugin(r"""
        OUTPUT=(a b c)
        compute() {
          case $1 in
            plain) printf 'x\ty\tz' ;;
            logs)
              printf '1\t\t3\n'
              printf 'note\tfirst log\n\n'
              echo "to stderr" >&2
              printf 'note\tsecond log\n' ;;
          esac
        }
        """)
    module = importer(plugin, persistent=persistent)
    assert module.compute("plain") == (["x", "y", "z"], [])
    results, logs = module.compute("logs")
    assert results == ["1", "", "3"]
    assert logs == ["note\tfirst log", "note\tsecond log", "stderr\tto stderr"]


@pytest.mark.parametrize("persistent", MODES)
def test_nonzero_exit_fails_with_status_and_last_stderr_lines(bash_plugin, persistent):
    plugin = bash_plugin("""
        OUTPUT=(a)
        compute() {
          printf 'line %s\\n' 1 2 3 4 5 6 7 >&2
          echo "partial"
          return 3
        }
        """)
    module = importer(plugin, persistent=persistent)
    with pytest.raises(BashCallError) as info:
        module.compute("e")
    message = str(info.value)
    assert message == f"{plugin}: compute exited with status 3: line 3 | line 4 | line 5 | line 6 | line 7"
    assert info.value.status == 3 and "stderr\tline 1" in info.value.logs


@pytest.mark.parametrize("persistent", MODES)
def test_large_output_and_background_children_do_not_block(bash_plugin, persistent):
    plugin = bash_plugin("""
        OUTPUT=(a)
        compute() {
          echo big
          for ((i = 0; i < 20000; i++)); do printf 'log\\t%s\\n' "$i"; done
          head -c 300000 /dev/zero | tr '\\0' x >&2; echo >&2
          sleep 0.3 &  # a child still holding the output files when compute returns
        }
        """)
    results, logs = importer(plugin, persistent=persistent).compute("e")
    assert results == ["big"] and len(logs) == 20001 and logs[-1] == "stderr\t" + "x" * 300000


def test_wrong_field_count_and_no_output(bash_plugin):
    plugin = bash_plugin("""
        OUTPUT=(a b)
        compute() { [ "$1" = none ] || echo "a b"; }
        """)
    module = importer(plugin)
    with pytest.raises(BashCallError, match=r"printed 1 result field\(s\).*OUTPUT names 2: separate the fields with a tab"):
        module.compute("spaces")
    with pytest.raises(BashCallError, match="compute printed nothing"):
        module.compute("none")


# --------------------------------------------------------------------------- the GC plugin


@pytest.mark.parametrize("persistent", MODES)
def test_gc_content_sh_equals_the_python_plugin(persistent):
    module = importer(GC_SH, persistent=persistent)
    for relative, expected in GC_EXPECTED.items():
        path = str(REPO / relative)
        assert module.compute(path) == (expected, ["records\t" + ("2" if "plasmid" in relative else "1")])
        for digits in (0, 1, 2, 3, 6, 20):
            results, logs = gc_python.compute(path, digits=digits)
            assert module.compute(path, digits=digits) == ([str(value) for value in results], logs), (relative, digits)
    assert module.compute(str(REPO / "examples/genomes/gzipped.fna.gz"), digits=4)[0] == ["0.5066", "5000"]


def test_gc_content_sh_edge_files(tmp_path):
    module = importer(GC_SH)
    cases = {
        "empty.fna": "",
        "headers_only.fna": ">a\n>b\n",
        "no_header.fna": "acgtNNgc\r\nGGCC",
        "tie.fna": ">t\n" + "G" * 3 + "A" * 5,  # 0.375: a tie at 2 digits
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        for digits in (2, 4):
            results, logs = gc_python.compute(str(path), digits=digits)
            assert module.compute(str(path), digits=digits) == ([str(v) for v in results], logs), name
    with pytest.raises(BashCallError, match="status 2: cannot read"):
        module.compute(str(tmp_path / "missing.fna"))
    broken = tmp_path / "broken.fna.gz"
    broken.write_bytes(b"not gzip")
    with pytest.raises(BashCallError, match="gzip"):
        module.compute(str(broken))


# --------------------------------------------------------------------------- state


@pytest.mark.parametrize("persistent", MODES)
def test_state_lifecycle(bash_plugin, tmp_path, persistent):
    journal = tmp_path / "journal"
    plugin = bash_plugin(f"""
        OUTPUT=(entity state)
        initialize() {{ printf 'init %s\\n' "$*" >>'{journal}'; printf 'multi line\\nstate with $(x) and spaces\\n'; }}
        compute() {{
          local arg state
          for arg in "${{@:2}}"; do case $arg in state=*) state=${{arg#state=}} ;; esac; done
          printf '%s\\t%s\\n' "$1" "${{state//$'\\n'/|}}"
        }}
        finalize() {{ printf 'finalize <%s> %s\\n' "$1" "$#" >>'{journal}'; }}
        """)
    module = importer(plugin, persistent=persistent)
    assert module.__provbatch_spec__.process_local_state is False
    state = module.initialize(n=3, flag=True)
    assert state == "multi line\nstate with $(x) and spaces"
    assert pickle.loads(pickle.dumps(state)) == state
    assert module.compute("e1", state=state, n=3) == (["e1", "multi line|state with $(x) and spaces"], [])
    module.finalize(state)
    assert journal.read_text() == "init n=3 flag=true\nfinalize <multi line\nstate with $(x) and spaces> 1\n"


@pytest.mark.parametrize("persistent", MODES)
def test_state_example_plugin(tmp_path, persistent):
    module = importer(STATE_SH, persistent=persistent)
    summary = tmp_path / "totals.tsv"
    state = module.initialize(summary=str(summary))
    assert Path(state).is_dir()
    sizes = [module.compute(str(REPO / e), state=state, summary=str(summary))[0] for e in GC_EXPECTED]
    assert sizes == [[values[1]] for values in GC_EXPECTED.values()]
    module.finalize(state)
    assert summary.read_text() == "files\t6\nbases\t20320\n"
    assert not Path(state).exists()


def test_initialize_failure_raises(bash_plugin):
    plugin = bash_plugin("""
        OUTPUT=(a)
        initialize() { echo "no database" >&2; return 5; }
        compute() { echo 1; }
        """)
    with pytest.raises(BashCallError, match="initialize exited with status 5: no database"):
        importer(plugin).initialize()


# --------------------------------------------------------------------------- hostile input


HOSTILE_ENTITIES = [
    "$(touch {tmp}/pwned); rm -rf {tmp}/victim",
    "`touch {tmp}/pwned`",
    "a'b\"c d",
    "-n",
    "--",
    "*",
    "  leading and trailing  ",
    "new\nline\tand tab",
    "back\\slash $HOME ${{PATH}} ;|&<>",
    "caf\u00e9 \udcff",  # a non-UTF-8 byte (surrogateescape) arrives as that byte
    "",
]
HOSTILE_PARAMS = {
    "cmd": "$(touch {tmp}/pwned)",
    "quotes": "it's \"quoted\"",
    "spaces": "a b  c",
    "lines": "one\ntwo\n",
    "eq": "x=y=z",
    "flag": False,
}


@pytest.mark.parametrize("persistent", MODES)
def test_hostile_entities_and_parameters_arrive_intact(bash_plugin, tmp_path, persistent):
    victim = tmp_path / "victim"
    victim.mkdir()
    module = importer(bash_plugin(ECHO_HEX), persistent=persistent)
    params = {key: value.format(tmp=tmp_path) if isinstance(value, str) else value for key, value in HOSTILE_PARAMS.items()}
    expected_params = ",".join(hexed(f"{k}={'false' if v is False else v}") for k, v in params.items()) + ","
    for template in HOSTILE_ENTITIES:
        entity = template.format(tmp=tmp_path)
        assert module.compute(entity, **params) == ([hexed(entity), expected_params], []), template
    assert victim.is_dir() and not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    with pytest.raises(ValueError, match="NUL"):
        module.compute("nul\0byte")


def test_hostile_entities_through_the_cli(bash_plugin, tmp_path, attributes_file):
    victim = tmp_path / "victim"
    victim.mkdir()
    plugin = bash_plugin("""
        ID=echo; VERSION=1; INPUT="any"; OUTPUT=(upper)
        compute() { printf '%s\\n' "$1"; }
        """)
    entities = [f"$(touch {tmp_path}/pwned); rm -rf {victim}", "a'b\"c d", "`touch pwned`"]
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(e + "\n" for e in entities))
    proc = run_cli(plugin, ids, "--attributes", attributes_file, "--backend", "serial", "--out", tmp_path / "out.tsv")
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(tmp_path / "out.tsv") == {e: [e] for e in entities}
    assert victim.is_dir() and not (tmp_path / "pwned").exists() and not (REPO / "pwned").exists()


# --------------------------------------------------------------------------- isolation of computes


ISOLATION = r"""
OUTPUT=(report)
GLOBAL=original
compute() {
  case $1 in
    exit) exit 7 ;;
    strict) set -euo pipefail; IFS=:; cd /; GLOBAL=changed; shopt -s nullglob; trap 'echo trapped' EXIT
            alias ls=false; unset -f compute; echo done ;;
    unbound) set -u; echo "$UNDEFINED_VARIABLE" ;;
    killserver) kill -9 $$ ;;
    *) printf '%s|%s|%s|%s|%s\n' "$PWD" "${IFS@Q}" "$GLOBAL" "$-" "$(shopt -p nullglob)" ;;
  esac
}
"""


def test_a_compute_cannot_break_the_next(bash_plugin):
    module = importer(bash_plugin(ISOLATION))
    baseline = module.compute("report")
    assert baseline[0][0].startswith(f"{os.getcwd()}|$' \\t\\n'|original|")
    with pytest.raises(BashCallError, match="status 7"):
        module.compute("exit")
    assert module.compute("strict") == (["done"], ["trapped"])  # the EXIT trap printed a log line
    with pytest.raises(BashCallError, match="status 1: .*UNDEFINED_VARIABLE: unbound variable"):
        module.compute("unbound")
    assert module.compute("report") == baseline


def test_a_dead_bash_is_restarted(bash_plugin):
    module = importer(bash_plugin(ISOLATION))
    baseline = module.compute("report")
    [runner] = runners_of_process(module.__provbatch_spec__.source)
    first_pgid = runner.pgid()
    with pytest.raises(BashCallError, match="died"):
        module.compute("killserver")  # the call that kills its bash fails ...
    assert module.compute("report") == baseline  # ... the next one gets a new bash
    os.killpg(runner.pgid(), signal.SIGKILL)  # killed between calls: restarted transparently
    wait_for(lambda: runner.pgid() is None)
    assert module.compute("report") == baseline and runner.pgid() not in (None, first_pgid)


def _compute_in_child(module, queue) -> None:
    queue.put(module.compute("pid"))


def test_a_forked_worker_gets_its_own_bash(bash_plugin):
    module = importer(bash_plugin("OUTPUT=(pid)\ncompute() { echo $$; }\n"))
    parent = module.compute("pid")
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_compute_in_child, args=(module, queue))
    child.start()
    from_child = queue.get(timeout=30)
    child.join(timeout=30)
    assert from_child != parent and module.compute("pid") == parent


# --------------------------------------------------------------------------- hangs: cleanup and cancel


HANGING = """
OUTPUT=(a)
compute() {{ sleep {seconds}; echo late; }}
"""


def _start_hanging_compute(module):
    outcome: dict[str, BaseException | object] = {}

    def target():
        try:
            outcome["value"] = module.compute("e")
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("persistent", MODES)
def test_cleanup_kills_a_hanging_compute_with_its_children(bash_plugin, persistent):
    marker = f"{os.getpid()}{int(persistent)}1.5"  # a unique sleep argument to find the child
    module = importer(bash_plugin(HANGING.format(seconds=marker)), persistent=persistent)
    thread, outcome = _start_hanging_compute(module)
    assert wait_for(lambda: processes_with(f"sleep {marker}")), "the compute's child never started"
    module.__provbatch_cleanup__()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), BashCallCancelled)
    assert wait_for(lambda: not processes_with(f"sleep {marker}") and not processes_with(str(module.__file__)), 5)


def test_cancel_kills_the_call_in_flight_and_the_next_call_works(bash_plugin):
    marker = f"{os.getpid()}2.5"
    plugin = bash_plugin(f"OUTPUT=(a)\ncompute() {{ [ \"$1\" = hang ] && sleep {marker}; echo \"$1\"; }}\n")
    module = importer(plugin)
    assert module.__provbatch_cancel__() is False  # nothing in flight
    outcome: dict[str, BaseException] = {}

    def hang():
        try:
            module.compute("hang")
        except BaseException as exc:  # noqa: BLE001
            outcome["error"] = exc

    thread = threading.Thread(target=hang)
    thread.start()
    assert wait_for(lambda: processes_with(f"sleep {marker}"))
    assert module.__provbatch_cancel__() is True
    thread.join(timeout=10)
    assert isinstance(outcome["error"], BashCallCancelled)
    assert wait_for(lambda: not processes_with(f"sleep {marker}"), 5)
    assert module.compute("fine") == (["fine"], [])


# --------------------------------------------------------------------------- specs and workers


def test_spec_pickles_and_loads_in_a_worker():
    module = importer(GC_SH)
    spec = pickle.loads(pickle.dumps(module.__provbatch_spec__))
    assert spec.lang == "bash" and spec.artifact == str(GC_SH) and not spec.process_local_state
    worker = load_spec(spec)
    assert worker.OUTPUT == module.OUTPUT and worker.PARAMETERS == module.PARAMETERS
    assert worker.compute(str(REPO / "examples/genomes/tiny.fna"))[0] == ["0.4083", "120"]
    assert load_spec(spec) is worker  # loaded once per process


def test_load_spec_refuses_an_edited_script_unless_shipped(bash_plugin):
    plugin = bash_plugin("OUTPUT=(a)\ncompute() { echo one; }\n", name="edited.sh")
    spec = importer(plugin).__provbatch_spec__
    original = plugin.read_bytes()
    plugin.write_text("OUTPUT=(a)\ncompute() { echo two; }\n")
    with pytest.raises(PluginLoadError, match="changed since the batch started"):
        load_spec(spec)
    shipped = load_spec(spec.with_blob(original))  # what the Ray backend does for other nodes
    assert shipped.compute("e") == (["one"], [])


# --------------------------------------------------------------------------- the engine: check, CLI, run_batch, Ray


def test_provbatch_check_on_bash_plugins(bash_plugin, attributes_file):
    for plugin in (GC_SH, STATE_SH):
        proc = run_cli("check", plugin, prog="provbatch")
        assert proc.returncode == 0, proc.stderr
        assert "(bash)" in proc.stdout
    bad = bash_plugin("""
        ID=bad; VERSION=1; INPUT=x
        OUTPUT="length"
        PARAMETERS=("n Integer 3 spaces instead of tabs")
        compute() { echo 1; }
        """)
    proc = run_cli("check", bad, "--attributes", attributes_file, prog="provbatch")
    assert proc.returncode == 1
    assert "OUTPUT must be a non-empty list" in proc.stderr and "must be a 4-tuple" in proc.stderr


def test_batch_compute_cli_with_a_failing_entity(tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(str(REPO / e) + "\n" for e in GC_EXPECTED) + str(tmp_path / "missing.fna") + "\n")
    proc = run_cli(GC_SH, ids, "--backend", "pool", "--workers", "2", "--out", tmp_path / "out.tsv",
                   "--log", tmp_path / "log.tsv")
    rows = read_tsv(tmp_path / "out.tsv")
    assert rows == {str(REPO / e): v for e, v in GC_EXPECTED.items()}, proc.stderr
    log = (tmp_path / "log.tsv").read_text()
    assert "compute exited with status 2: cannot read" in log and f"{REPO}/examples/genomes/tiny.fna\trecords\t1" in log


def test_run_batch_serial_with_state(tmp_path):
    summary = tmp_path / "totals.tsv"
    result = provbatch.run_batch(STATE_SH, [str(REPO / e) for e in GC_EXPECTED], params={"summary": str(summary)},
                                 backend="serial")
    assert result.as_dict() == {str(REPO / e): [int(v[1])] for e, v in GC_EXPECTED.items()}
    assert summary.read_text() == "files\t6\nbases\t20320\n"


@pytest.mark.ray
def test_run_batch_on_ray(ray_session, tmp_path):
    result = provbatch.run_batch(GC_SH, [str(REPO / e) for e in GC_EXPECTED], params={"digits": 3}, backend="ray",
                                 workers=2)
    assert result.report.backend == "ray" and result.failures == []
    assert result.as_dict()[str(REPO / "examples/genomes/ecoli_like.fna")] == [0.507, 5000]
    assert len(result) == 6
    summary = tmp_path / "totals.tsv"
    state_run = provbatch.run_batch(STATE_SH, [str(REPO / e) for e in GC_EXPECTED], params={"summary": str(summary)},
                                    backend="ray", workers=2)
    assert state_run.failures == [] and summary.read_text() == "files\t6\nbases\t20320\n"


def _leave_a_child_and_exit(module, marker, queue) -> None:
    module.compute("stray")
    [runner] = runners_of_process(module.__provbatch_spec__.source)
    queue.put(str(runner._private_dir()))
    queue.close()
    queue.join_thread()
    os._exit(0)  # a worker that dies without calling __provbatch_cleanup__


def test_a_worker_dying_without_cleanup_leaves_nothing(bash_plugin):
    marker = f"{os.getpid()}3.5"
    module = importer(bash_plugin(f"OUTPUT=(a)\ncompute() {{ sleep {marker} & echo started; }}\n"))
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_leave_a_child_and_exit, args=(module, marker, queue))
    child.start()
    private_dir = Path(queue.get(timeout=30))
    child.join(timeout=30)
    assert wait_for(lambda: not processes_with(f"sleep {marker}") and not private_dir.exists(), 10)


class _Interrupted(BaseException):
    pass


def test_an_interrupted_call_never_desynchronizes_the_next(bash_plugin):
    plugin = bash_plugin('OUTPUT=(a)\ncompute() { [ "$1" = slow ] && sleep 0.5; echo "$1"; }\n')
    module = importer(plugin)
    assert module.compute("first") == (["first"], [])

    def interrupt(_signum, _frame):
        raise _Interrupted()  # like a Ctrl-C, or a timeout alarm that does not cancel

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(_Interrupted):
            module.compute("slow")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert module.compute("fast") == (["fast"], [])  # not the status of "slow"


@pytest.mark.parametrize("backend", ["serial", "pool"])
def test_timeout_kills_a_hanging_compute_and_the_batch_goes_on(bash_plugin, tmp_path, attributes_file, backend):
    marker = f"{os.getpid()}4.{len(backend)}"
    plugin = bash_plugin(f"""
        ID=hang; VERSION=1; INPUT=x; OUTPUT=(length)
        compute() {{ [ "$1" = hang ] && sleep {marker}; echo "${{#1}}"; }}
        """)
    ids = tmp_path / "ids.txt"
    ids.write_text("a\nhang\nbb\nccc\n")
    proc = run_cli(plugin, ids, "--attributes", attributes_file, "--backend", backend, "--workers", "2",
                   "--timeout", "1", "--out", tmp_path / "out.tsv", "--log", tmp_path / "log.tsv")
    assert read_tsv(tmp_path / "out.tsv") == {"a": ["1"], "bb": ["2"], "ccc": ["3"]}, proc.stderr
    assert "hang\terror\tTimeout" in (tmp_path / "log.tsv").read_text()
    assert not processes_with(f"sleep {marker}")

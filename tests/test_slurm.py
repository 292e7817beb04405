"""--backend slurm on a real single-node Slurm cluster (the session's ``slurm_cluster``, tests/slurm_cluster.py):
exact results for every language, resubmitted tasks, isolated crashes, scancel and SIGKILL then resume,
the one-line error without Slurm."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from conftest import BIN, GC_EXPECTED, REPO, read_tsv, run_cli, write_source

import provbatch

pytestmark = pytest.mark.slurm

PLUGINS = {
    "python": REPO / "plugins" / "gc_content.py",
    "rust": REPO / "rust_plugins" / "gc_content.rs",
    "nim": REPO / "nim_plugins" / "gc_content.nim",
    "bash": REPO / "plugins" / "gc_content.sh",
}


def report_of(out: Path) -> dict:
    """The last document of OUT.report.yaml (a resumed run appends one)."""
    return list(yaml.safe_load_all((out.parent / f"{out.name}.report.yaml").read_text()))[-1]


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def failure_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def job_ids_in(workdir: Path) -> list[str]:
    """The arrays a driver submitted, as it records them for a later driver to cancel."""
    return [job for jobs in sorted(workdir.glob("g*/jobs")) for job in jobs.read_text().split()]


@pytest.mark.parametrize("lang", list(PLUGINS))
def test_exact_results_for_every_language(slurm, lang, tmp_path):
    out, run_dir = tmp_path / "gc.tsv", tmp_path / "run"
    extra: list[str] = []
    if lang in ("rust", "nim"):
        # the tasks get no compiler at all (an empty PATH): they load the library the driver built
        # and copied into the work directory, or they fail
        extra = ["--slurm-opt", f"--export=ALL,PATH={tmp_path / 'no-tools'}"]
    proc = run_cli(PLUGINS[lang], "examples/genomes.txt", "--backend", "slurm", "--workers", "3",
                   "--out", out, "--log", tmp_path / "gc.log.tsv", "--run-dir", run_dir, *extra)
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(out) == GC_EXPECTED
    assert len(out.read_text().splitlines()) == 6
    report = report_of(out)
    assert report["backend"] == "slurm" and report["workers"] == 3 and report["comp_status"] == "completed"
    details = report["backend_details"]
    assert details["chunk"] == 1  # 6 entities, 3 tasks at once: ceil(6 / 12)
    assert len(details["job_ids"]) == 1
    job = details["job_ids"][0]
    assert details["tasks"] == {f"{job}_{i}": "COMPLETED" for i in range(6)}
    assert manifest(run_dir)["backend"] == "slurm"
    assert manifest(run_dir)["backend_details"]["job_ids"] == [job]
    submitted = [e for e in events(run_dir) if e["event"] == "slurm_array_submitted"]
    assert [(e["job_id"], e["tasks"], e["throttle"], e["entities"]) for e in submitted] == [(job, 6, 3, 6)]
    # the tasks' inputs, parts and the copied library are gone once merged: the work directory too
    assert not (tmp_path / "gc.tsv.slurm").exists()


def test_rerun_of_a_slurm_run_uses_slurm_with_its_options(slurm, tmp_path):
    out, run_dir = tmp_path / "gc.tsv", tmp_path / "run"
    proc = run_cli(PLUGINS["python"], "examples/genomes.txt", "--backend", "slurm", "--workers", "2",
                   "--slurm-chunk", "4", "--slurm-mem", "100M", "--out", out, "--run-dir", run_dir)
    assert proc.returncode == 0, proc.stderr
    config = json.loads((run_dir / "run_config.json").read_text())
    assert config["execution"]["slurm"] == {"partition": None, "time": None, "mem": "100M", "chunk": 4, "opt": None}
    again = tmp_path / "again.tsv"
    proc = run_cli("rerun", run_dir, "--out", again, prog="provbatch")
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(again) == GC_EXPECTED
    report = report_of(again)
    assert report["backend"] == "slurm" and len(report["backend_details"]["tasks"]) == 2  # chunks of 4
    (job,) = report["backend_details"]["job_ids"]
    shown = slurm.run("scontrol", "-o", "show", "job", job).stdout.splitlines()
    assert len(shown) == 2 and all("MinMemoryNode=100M" in line for line in shown)  # --slurm-mem reached sbatch


def test_api_backend_slurm_with_chunks(slurm, tmp_path):
    ids = [f"entity{i:03d}" for i in range(40)]
    result = provbatch.run_batch(_length_plugin(tmp_path), ids, attributes=tmp_path / "attribute_definitions.yaml",
                                 backend="slurm", workers=2, slurm_chunk=7, slurm_workdir=tmp_path / "work")
    assert result.as_dict() == {e: [len(e)] for e in ids}  # typed by the Integer datatype
    assert len(result) == 40
    details = result.report.backend_details
    assert len(details["tasks"]) == 6 and set(details["tasks"].values()) == {"COMPLETED"}  # ceil(40 / 7)
    assert result.report.backend == "slurm"


def _length_plugin(folder: Path, body: str = "") -> Path:
    """A plugin returning len(entity), running ``body`` (dedented Python) first in compute."""
    header = textwrap.dedent('''\
        import os, time
        ID = "length_slurm"
        VERSION = "1.0"
        INPUT = "a string"
        OUTPUT = ["length"]
        METHOD = "len"
        IMPLEMENTATION = "python"

        def compute(entity, **kwargs):
        ''')
    source = header + textwrap.indent(textwrap.dedent(body), "    ") + "    return [len(entity)], None\n"
    _attributes(folder)
    return write_source(folder, "length.py", source)


def test_failing_task_is_resubmitted_for_its_unfinished_entities(slurm, tmp_path, ids_file):
    marker = tmp_path / "died-once"
    plugin = _length_plugin(tmp_path, f'''\
        if entity == "e3" and not os.path.exists({str(marker)!r}):
            open({str(marker)!r}, "w").close()
            os._exit(1)  # the whole task dies, once, while computing e3
        ''')
    ids = [f"e{i}" for i in range(10)]
    out, run_dir = tmp_path / "out.tsv", tmp_path / "run"
    proc = run_cli(plugin, ids_file(ids), "--backend", "slurm", "--workers", "2", "--slurm-chunk", "5",
                   "--out", out, "--run-dir", run_dir, "--attributes", _attributes(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(out) == {e: [str(len(e))] for e in ids}
    assert len(out.read_text().splitlines()) == 10
    assert failure_lines(tmp_path / "out.tsv.failures.tsv") == []
    report = report_of(out)
    first, second = report["backend_details"]["job_ids"]
    # e0..e2 came from the failed task; e3 alone and e4 went to a second array, not charged to --retries
    assert report["backend_details"]["tasks"] == {
        f"{first}_0": "FAILED", f"{first}_1": "COMPLETED", f"{second}_0": "COMPLETED", f"{second}_1": "COMPLETED"}
    assert report["n_retried"] == 0 and report["n_failed"] == 0
    ended = [e for e in events(run_dir) if e["event"] == "slurm_task_ended"]
    assert [(e["task"], e["state"], e["finished"], e["unfinished"]) for e in ended] == [(f"{first}_0", "FAILED", 3, 2)]
    # the failed task's log is kept (its state was not COMPLETED), the others' are not
    assert [p.name for p in (tmp_path / "out.tsv.slurm").glob("g*/logs/*")] == [f"{first}_0.log"]


def test_a_task_whose_end_line_comes_after_its_last_entity_ends_the_run(slurm, tmp_path, ids_file):
    """The task's last part line (its end) can come polls after its last entity's line: here a per-worker
    finalize takes 1.5 s between the two. The driver then has nothing more to wait for: it must not (a
    driver that waited for another entity hung until killed, 2 of 18 Bash runs under load)."""
    journal = tmp_path / "journal"
    plugin = write_source(tmp_path, "slow_finalize.py", f"""\
        import os, threading, time
        ID = "slow_finalize"; VERSION = "1.0"; INPUT = "a string"; OUTPUT = ["length"]
        def initialize(**kwargs):
            return {{"lock": threading.Lock()}}  # cannot be pickled: each task makes its own, and finalizes it
        def compute(entity, state=None, **kwargs):
            return [len(entity)], []
        def finalize(state):
            time.sleep(1.5)
            with open({str(journal)!r}, "a") as f:
                f.write(f"finalize {{os.getpid()}}\\n")
        """)
    out = tmp_path / "out.tsv"
    # the hang this guards against (the driver waiting forever for a retired task) ends in the timeout
    proc = subprocess.run([str(BIN / "batch-compute"), str(plugin), str(ids_file(["a", "bb"])), "--backend", "slurm",
                           "--workers", "1", "--slurm-chunk", "2", "--out", str(out), "--run-dir", str(tmp_path / "run"),
                           "--attributes", str(_attributes(tmp_path))],
                          cwd=tmp_path, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(out) == {"a": ["1"], "bb": ["2"]}
    report = report_of(out)
    assert report["comp_status"] == "completed" and report["state_mode"] == "per_worker"
    assert list(report["backend_details"]["tasks"].values()) == ["COMPLETED"]
    assert len(journal.read_text().splitlines()) == 2  # the task's state and the driver's, each finalized once


def _attributes(folder: Path) -> Path:
    path = folder / "attribute_definitions.yaml"
    path.write_text("length: {definition: number of characters, datatype: Integer}\n")
    return path


def test_entity_crashing_its_task_is_isolated(slurm, tmp_path, ids_file):
    plugin = _length_plugin(tmp_path, '''\
        if entity == "bad":
            os._exit(3)  # crashes every task that computes it
        ''')
    ids = [f"ok{i}" for i in range(5)] + ["bad"] + [f"ok{i}" for i in range(5, 11)]
    out = tmp_path / "out.tsv"
    proc = run_cli(plugin, ids_file(ids), "--backend", "slurm", "--workers", "3", "--slurm-chunk", "4",
                   "--retries", "1", "--out", out, "--attributes", _attributes(tmp_path))
    assert proc.returncode == 3, proc.stderr  # some entities failed
    assert "1 entity failed" in proc.stderr
    assert read_tsv(out) == {e: [str(len(e))] for e in ids if e != "bad"}
    failures = (tmp_path / "out.tsv.failures.tsv").read_text().splitlines()
    assert [line.split("\t")[:3] for line in failures] == [["bad", "2", "WorkerLost"]]
    assert "ended FAILED" in failures[0]
    report = report_of(out)
    assert report["n_failed"] == 1 and report["n_retried"] == 1 and report["n_units"] == 11
    # three tasks died on 'bad': in its chunk of 4, alone, and alone again (the one retry)
    states = list(report["backend_details"]["tasks"].values())
    assert states.count("FAILED") == 3 and states.count("COMPLETED") == len(states) - 3


def _slow_batch(tmp_path: Path, ids: list[str], seconds: float = 0.4) -> tuple[list[str], Path]:
    plugin = _length_plugin(tmp_path, f"time.sleep({seconds})\n")
    entities = tmp_path / "ids.txt"
    entities.write_text("".join(e + "\n" for e in ids))
    out = tmp_path / "out.tsv"
    args = [str(BIN / "batch-compute"), str(plugin), str(entities), "--backend", "slurm", "--workers", "2",
            "--slurm-chunk", "5", "--out", str(out), "--attributes", str(_attributes(tmp_path))]
    return args, out


def _wait_for_lines(out: Path, n: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.exists() and len(out.read_text().splitlines()) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    pytest.fail(f"{out} did not reach {n} lines")


def test_scancel_from_outside_then_resume(slurm, tmp_path):
    ids = [f"id{i:02d}" for i in range(20)]
    args, out = _slow_batch(tmp_path, ids)
    driver = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_lines(out, 2, driver)
    (job,) = job_ids_in(tmp_path / "out.tsv.slurm")
    slurm.run("scancel", job)
    _stdout, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 3, stderr  # entities failed (Cancelled)
    done = read_tsv(out)
    assert 2 <= len(done) < 20
    # the cancelled tasks' entities failed with Cancelled (--retries 0: the cancel is obeyed)
    failures = (tmp_path / "out.tsv.failures.tsv").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in failures) == sorted(set(ids) - set(done))
    assert {line.split("\t")[2] for line in failures} == {"Cancelled"}
    report = report_of(out)
    assert report["comp_status"] == "partial" and "CANCELLED" in report["backend_details"]["tasks"].values()
    # the same command again computes exactly what is missing
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(out) == {e: [str(len(e))] for e in ids}
    assert len(out.read_text().splitlines()) == 20
    assert report_of(out)["n_units"] == 20 - len(done)
    assert failure_lines(tmp_path / "out.tsv.failures.tsv") == []


def test_sigkill_of_the_driver_then_resume_exactly_once(slurm, tmp_path):
    ids = [f"id{i:02d}" for i in range(20)]
    args, out = _slow_batch(tmp_path, ids)
    driver = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_lines(out, 3, driver)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    (job,) = job_ids_in(tmp_path / "out.tsv.slurm")
    before = len(read_tsv(out))
    # its array goes on without a driver; the next driver cancels it and computes what --out lacks
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(out) == {e: [str(len(e))] for e in ids}  # read_tsv fails on a duplicate id
    assert len(out.read_text().splitlines()) == 20
    report = report_of(out)
    details = report["backend_details"]
    assert details["earlier_jobs"] == [job]
    assert report["n_units"] == 20 - before  # what the killed driver's tasks finished is taken, the rest computed
    assert 0 <= details["salvaged"] <= 20 - before
    states = slurm.run("squeue", "-h", "-r", "-t", "all", "-j", job, "-o", "%T").stdout.split()
    assert states and all(state in ("COMPLETED", "CANCELLED") for state in states)


def test_after_sigkill_the_orphaned_arrays_results_are_taken_not_recomputed(slurm, tmp_path):
    ids = [f"id{i:02d}" for i in range(20)]
    args, out = _slow_batch(tmp_path, ids, seconds=0.2)
    driver = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_lines(out, 3, driver)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    (job,) = job_ids_in(tmp_path / "out.tsv.slurm")
    before = len(read_tsv(out))
    deadline = time.monotonic() + 90
    while True:  # the array finishes on its own, without a driver
        states = slurm.run("squeue", "-h", "-r", "-t", "all", "-j", job, "-o", "%T").stdout.split()
        if states == ["COMPLETED"] * 4:
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.5)
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(out) == {e: [str(len(e))] for e in ids}
    assert len(out.read_text().splitlines()) == 20
    report = report_of(out)
    details = report["backend_details"]
    assert details["earlier_jobs"] == [job] and details["salvaged"] == 20 - before
    assert details["job_ids"] == [] and details["tasks"] == {}  # nothing was left to compute
    assert report["n_units"] == 20 - before and report["comp_status"] == "completed"


def test_salvage_only_when_the_computation_is_the_same(slurm, tmp_path):
    """A different --timeout gives other tasks (a compute may fail that did not): nothing is taken."""
    ids = [f"id{i:02d}" for i in range(20)]
    args, out = _slow_batch(tmp_path, ids, seconds=0.2)
    driver = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_lines(out, 3, driver)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    before = len(read_tsv(out))
    time.sleep(3)  # the orphaned tasks finish some more entities meanwhile
    proc = subprocess.run([*args, "--timeout", "30"], cwd=tmp_path, capture_output=True, text=True, timeout=180,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(out) == {e: [str(len(e))] for e in ids}
    assert len(out.read_text().splitlines()) == 20
    report = report_of(out)
    assert report["backend_details"]["salvaged"] == 0 and report["n_units"] == 20 - before


def test_ctrl_c_cancels_the_array_and_leaves_a_resumable_state(slurm, tmp_path):
    ids = [f"id{i:02d}" for i in range(20)]
    args, out = _slow_batch(tmp_path, ids)
    driver = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_lines(out, 2, driver)
    (job,) = job_ids_in(tmp_path / "out.tsv.slurm")
    driver.send_signal(signal.SIGINT)
    _stdout, stderr = driver.communicate(timeout=60)
    assert driver.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "batch-compute: interrupted"
    states = slurm.run("squeue", "-h", "-r", "-t", "all", "-j", job, "-o", "%T").stdout.split()
    assert "RUNNING" not in states and "PENDING" not in states and "CANCELLED" in states
    assert report_of(out)["backend_details"]["job_ids"] == [job]
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(out) == {e: [str(len(e))] for e in ids}
    assert len(out.read_text().splitlines()) == 20


def test_a_task_that_cannot_load_the_plugin_stops_the_batch(slurm, tmp_path, ids_file):
    plugin = _length_plugin(tmp_path)
    plugin.write_text('import os\nif "SLURM_ARRAY_TASK_ID" in os.environ:\n'
                      '    raise ImportError("numpy is not installed on the nodes")\n' + plugin.read_text())
    out = tmp_path / "out.tsv"
    proc = run_cli(plugin, ids_file(["a", "bb"]), "--backend", "slurm", "--workers", "2", "--out", out,
                   "--attributes", tmp_path / "attribute_definitions.yaml")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("batch-compute: error: Slurm task ")
    assert lines[0].endswith("could not start the plugin: PluginLoadError: "
                             f"{plugin}:3: ImportError: numpy is not installed on the nodes")
    assert report_of(out)["comp_status"] == "aborted"
    states = slurm.run("squeue", "-h", "-r", "-t", "all", "-o", "%T").stdout.split()
    assert "RUNNING" not in states and "PENDING" not in states


def test_without_slurm_on_path_a_one_line_error(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = run_cli("plugins/gc_content.py", "examples/genomes.txt", "--backend", "slurm", "--out", tmp_path / "o.tsv",
                   env={"PATH": str(empty)})
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "batch-compute: error: --backend slurm: Slurm command(s) sbatch, squeue, scancel, scontrol, sinfo, sacct "
        "not found on PATH (run on a Slurm login node, or install slurm-client)")
    assert not (tmp_path / "o.tsv").exists()


def test_unreachable_controller_a_one_line_error(slurm_cluster, tmp_path):
    conf = tmp_path / "slurm.conf"
    from slurm_cluster import free_port

    port = free_port()  # nothing listens there
    conf.write_text("".join(
        f"SlurmctldPort={port}\n" if line.startswith("SlurmctldPort=") else line + "\n"
        for line in slurm_cluster.conf.read_text().splitlines()))
    proc = run_cli("plugins/gc_content.py", "examples/genomes.txt", "--backend", "slurm", "--out", tmp_path / "o.tsv",
                   env={"SLURM_CONF": str(conf)})
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "batch-compute: error: --backend slurm: the Slurm controller is not reachable (scontrol ping: Slurmctld(primary) at ")
    assert lines[0].endswith(" is DOWN)")
    assert not (tmp_path / "o.tsv").exists()


def test_slurm_options_without_the_slurm_backend(tmp_path):
    proc = run_cli("plugins/gc_content.py", "examples/genomes.txt", "--slurm-chunk", "5", "--slurm-mem", "1G")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "batch-compute: error: --slurm-mem, --slurm-chunk only apply to --backend slurm"


def test_sbatch_refusal_is_a_one_line_error(slurm, tmp_path):
    out = tmp_path / "gc.tsv"
    proc = run_cli(PLUGINS["python"], "examples/genomes.txt", "--backend", "slurm", "--slurm-partition", "nosuch",
                   "--out", out)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("batch-compute: error: sbatch refused the job array (--partition=nosuch): "
                                   "sbatch: error: Batch job submission failed: Invalid partition name specified")
    assert out.read_text() == ""
    assert report_of(out)["comp_status"] == "aborted"


def test_a_work_directory_others_can_write_is_refused(slurm, tmp_path):
    """Tasks unpickle the configuration and load the library the driver writes there."""
    workdir = tmp_path / "shared"
    workdir.mkdir()
    workdir.chmod(0o777)
    proc = run_cli(PLUGINS["python"], "examples/genomes.txt", "--backend", "slurm", "--slurm-workdir", workdir,
                   "--out", tmp_path / "gc.tsv")
    assert proc.returncode != 0
    assert proc.stderr.strip() == (f"batch-compute: error: {workdir}: writable by group or others (mode 0777) in the "
                                   f"Slurm work directory; anyone could change what provbatch runs: chmod go-w {workdir}")
    assert list(workdir.iterdir()) == []

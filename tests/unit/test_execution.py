"""Unit tests of execution/: the backend registry, the scheduler and the pools, on real tiny plugins.

Every pool here is the real one (the driver's serial pool, worker processes
of the local pool); the crashing entity kills its real worker process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from provbatch.errors import UsageError
from provbatch.execution import registry
from provbatch.execution.auto import AutoPool
from provbatch.execution.base import NOT_STARTED, Completed, Pool, PoolOptions
from provbatch.execution.capture import OutputCapture
from provbatch.execution.local_pool import LocalPool
from provbatch.execution.runner import RunnerConfig
from provbatch.execution.scheduler import ChunkSizer, Scheduler
from provbatch.execution.serial import DRIVER_MAX_CHUNK, DRIVER_ROWS_MAX_CHUNK, SerialPool, serial_backend
from provbatch.plugins.loading import LoadedPlugin, load_plugin

PLUGIN = """\
import os, signal, time
ID = "unit"; VERSION = "1"; INPUT = "a word"; OUTPUT = ["length"]

def compute(entity, **kwargs):
    if entity == "crash":
        os.kill(os.getpid(), signal.SIGKILL)  # the worker dies, as in a segfault
    if entity == "bad":
        raise ValueError("no good")
    if entity.startswith("slow"):
        time.sleep(0.01)
    return [len(entity)], (["saw " + entity] if entity == "logme" else [])
"""


@pytest.fixture
def plugin(tmp_path: Path) -> LoadedPlugin:
    path = tmp_path / "unit_plugin.py"
    path.write_text(PLUGIN)
    return load_plugin(path)


def config(plugin: LoadedPlugin, in_worker: bool) -> RunnerConfig:
    return RunnerConfig(spec=plugin.spec, params={}, datatypes=("Integer",), output_names=tuple(plugin.output),
                        hard_timeout=in_worker)


def items(*entities: str, attempt: int = 1) -> list[tuple[str, str, int]]:
    return [(entity, entity, attempt) for entity in entities]


def run_all(pool: Pool, chunks: list[list[tuple[str, str, int]]]) -> list[Completed]:
    """Submit the chunks as the pool has room for them (as the scheduler does); all completed, in chunk order."""
    waiting = list(enumerate(chunks))
    done: list[Completed] = []
    while waiting or pool.in_flight():
        while waiting and pool.capacity() > 0:
            pool.submit(*waiting.pop(0))
        done.extend(pool.wait())
    return sorted(done, key=lambda completed: completed.chunk_id)


# ----------------------------------------------------------------------------- the registry

def test_registry_names_every_backend_once_in_order():
    assert registry.backend_names() == ("auto", "serial", "pool", "ray", "slurm")
    assert [registry.backend(name).in_driver for name in registry.backend_names()] == [True, True, False, False, False]
    assert registry.backend("ray").requires == "ray" and registry.backend("ray").fallback == "pool"
    assert registry.backend("pool").title == "local pool"


def test_registry_refuses_an_unknown_backend_naming_the_choices():
    with pytest.raises(UsageError) as info:
        registry.backend("dask")
    assert str(info.value) == "backend must be one of auto, serial, pool, ray, slurm, got 'dask'"  # in API words


def test_registry_resolves_targets_lazily_and_never_imports_ray_for_other_backends():
    code = ("import sys; from provbatch.execution import registry as r\n"
            "found = [r.pool_factory(n).__name__ for n in ('auto', 'serial', 'pool', 'slurm')]\n"
            "before = 'provbatch.execution.local_pool' in sys.modules\n"
            "print(found, 'ray' in sys.modules, r.pool_factory('ray').__name__, 'ray' in sys.modules)")
    fresh = subprocess.run([sys.executable, "-c", "import sys; from provbatch.execution import registry; "
                            "print(sorted(m for m in sys.modules if m.startswith('provbatch.execution.')))"],
                           capture_output=True, text=True, check=True)
    # importing the registry imports no backend
    assert fresh.stdout.strip() == "['provbatch.execution.registry']"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "['AutoPool', 'serial_backend', 'LocalPool', 'SlurmPool'] False RayPool False"


def test_register_backend_is_one_line_and_make_pool_uses_the_one_constructor_shape(plugin):
    registry.register_backend("driver2", "provbatch.execution.serial:SerialPool", "a second serial", in_driver=True)
    try:
        assert registry.backend_names()[-1] == "driver2"
        pool = registry.make_pool("driver2", None, config(plugin, in_worker=False), None,
                                  PoolOptions(module=plugin.module, capture=OutputCapture()))
        assert type(pool) is SerialPool
        [completed] = run_all(pool, [items("abc", "hello")])
        assert completed.outcomes == [("abc", ["3"], [], None), ("hello", ["5"], [], None)]
        pool.finish(return_state=False)
    finally:
        registry.unregister_backend("driver2")
    assert "driver2" not in registry.backend_names()


def test_import_problem_says_why_a_required_module_does_not_import():
    registry.register_backend("needs-missing", "provbatch.execution.serial:SerialPool", "test",
                              requires="provbatch_no_such_module", fallback="pool")
    try:
        assert registry.import_problem("needs-missing") == "ModuleNotFoundError: No module named 'provbatch_no_such_module'"
        assert registry.import_problem("pool") is None
    finally:
        registry.unregister_backend("needs-missing")


def test_auto_chooses_ray_for_a_named_cluster_and_serial_for_one_worker(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delitem(sys.modules, "ray", raising=False)  # as if no caller had initialized Ray in this process
    assert registry.chosen_backend("auto", None, 4) == "auto"
    assert registry.chosen_backend("auto", "127.0.0.1:6379", 4) == "ray"
    assert registry.chosen_backend("auto", "127.0.0.1:6379", 1) == "ray"  # the cluster wins over one worker
    assert registry.chosen_backend("auto", None, 1) == "serial"
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert registry.chosen_backend("auto", None, 4) == "ray"
    assert [registry.chosen_backend(name, "127.0.0.1:6379", 1) for name in ("serial", "pool", "ray", "slurm")] == [
        "serial", "pool", "ray", "slurm"]  # only auto chooses
    assert "ray" not in sys.modules  # the choice never imports Ray
    assert [name for name in registry.backend_names() if registry.backend(name).copies_state] == ["auto"]


def test_a_backend_chooser_is_part_of_its_registry_line():
    registry.register_backend("tiny", "provbatch.execution.serial:SerialPool", "serial below 8 workers",
                              chooser=f"{__name__}:tiny_chooser")
    try:
        assert (registry.chosen_backend("tiny", None, 2), registry.chosen_backend("tiny", None, 8)) == ("serial", "pool")
    finally:
        registry.unregister_backend("tiny")


def tiny_chooser(address: str | None, workers: int) -> str:
    return "serial" if workers < 8 else "pool"


# ----------------------------------------------------------------------------- the scheduler

def test_chunk_sizer_grows_by_at_most_four_and_stays_within_bounds():
    sizer = ChunkSizer(target_seconds=0.1, max_size=100)
    sizer.observe(1, 1e-6)
    assert sizer.size == 4
    sizer.observe(4, 4e-6)
    assert sizer.size == 16
    for _ in range(5):
        sizer.observe(sizer.size, sizer.size * 1e-6)
    assert sizer.size == 100
    sizer.observe(100, 10.0)  # 0.1 s per entity: one per chunk
    assert sizer.size == 1
    sizer.observe(0, 0.0)  # a lost chunk tells nothing
    assert sizer.size == 1
    fixed = ChunkSizer(size=7, max_size=7, fixed=True)
    fixed.observe(7, 1e-6)
    assert fixed.size == 7


def driver_pool(plugin: LoadedPlugin) -> SerialPool:
    return SerialPool(1, config(plugin, in_worker=False), None, PoolOptions(module=plugin.module, capture=OutputCapture()))


def test_scheduler_chunks_in_entity_order_and_follows_the_pool_limits(plugin):
    pool = driver_pool(plugin)
    scheduler = Scheduler(iter(items(*(f"e{i}" for i in range(10)))), pool, ChunkSizer(size=3, fixed=True))
    chunks = [[item[0] for item in completed.chunk] for completed in scheduler]
    assert chunks == [["e0", "e1", "e2"], ["e3", "e4", "e5"], ["e6", "e7", "e8"], ["e9"]]
    # without a sizer, the scheduler takes the pool's limits: the driver's chunks stay small
    adaptive = Scheduler(iter(()), pool)
    assert (adaptive.sizer.target_seconds, adaptive.sizer.max_size, adaptive.sizer.size) == (0.1, DRIVER_MAX_CHUNK, 1)


def test_scheduler_submits_requeued_items_first_and_alone_ones_in_a_chunk_of_their_own(plugin):
    pool = driver_pool(plugin)
    scheduler = Scheduler(iter(items("a", "b", "c", "d", "e", "f", "g")), pool, ChunkSizer(size=3, fixed=True))
    seen: list[list[tuple[str, str, int]]] = []
    for completed in scheduler:
        seen.append(completed.chunk)
        if len(seen) == 1:
            scheduler.requeue(("b", "b", 2), alone=True)
            scheduler.requeue(("a", "a", 1))  # after "b": first in, first out
            scheduler.requeue(("c", "c", 1))
            assert scheduler.pending_retries() == 3
    assert seen == [items("a", "b", "c"), [("b", "b", 2)], [("a", "a", 1), ("c", "c", 1), ("d", "d", 1)],
                    items("e", "f", "g")]
    assert scheduler.pending_retries() == 0


def test_scheduler_waits_for_a_delayed_item_before_ending(plugin):
    pool = driver_pool(plugin)
    scheduler = Scheduler(iter(items("a")), pool, ChunkSizer(size=5, fixed=True))
    seen = []
    for completed in scheduler:
        seen.append([item[0] for item in completed.chunk])
        if len(seen) == 1:
            scheduler.requeue(("a", "a", 2), delay=0.05)
    assert seen == [["a"], ["a"]]


# ----------------------------------------------------------------------------- the pools

def test_serial_pool_computes_in_the_driver_with_exact_outcomes(plugin):
    pool = driver_pool(plugin)
    [first, second] = run_all(pool, [items("abc", "bad"), items("logme")])
    assert first.outcomes[0] == ("abc", ["3"], [], None)
    entity_id, fields, logs, error = first.outcomes[1]
    assert (entity_id, fields, logs, error[:2]) == ("bad", None, [], ("ValueError", "no good"))
    assert "raise ValueError" in error[2]  # the traceback
    assert second.outcomes == [("logme", ["5"], ["saw logme"], None)]
    assert pool.finish(return_state=True) == [None]


def test_serial_backend_isolates_a_crashing_plugin_in_one_worker(plugin):
    started = []
    remarks: list[str] = []

    def start_workers(n: int) -> Pool:
        started.append(n)
        return LocalPool(n, config(plugin, in_worker=True), None, PoolOptions(module=plugin.module))

    pool = serial_backend(None, config(plugin, in_worker=False), None,
                          PoolOptions(isolated=True, start_workers=start_workers, remark=remarks.append))
    try:
        assert started == [1] and pool.label == "serial (isolated)" and pool.n_workers == 1
        assert remarks == ["serial: the plugin runs native code, so it computed in a worker process "
                           "(a crash fails only its entity)"]
        [lost, after] = run_all(pool, [items("abc", "crash"), items("xyz")])
    finally:
        pool.terminate()
    assert [outcome[3][0] for outcome in lost.outcomes] == ["WorkerLost", "WorkerLost"]
    assert re.fullmatch(r"worker process \d+ died \(signal 9\)", lost.outcomes[1][3][1])
    assert [outcome[3][0] for outcome in after.outcomes] == [NOT_STARTED]  # queued behind the crash
    assert pool.workers_lost == 1


def test_local_pool_computes_on_two_workers_and_replaces_a_dead_one(plugin):
    pool = LocalPool(2, config(plugin, in_worker=True), None, PoolOptions(module=plugin.module))
    events: list[tuple[str, dict]] = []
    pool.emit = lambda name, **details: events.append((name, details))
    try:
        assert pool.capacity() == 4  # two chunks per worker: one computing, one queued
        done = run_all(pool, [items("a", "bb"), items("ccc")])
        assert [completed.outcomes for completed in done] == [
            [("a", ["1"], [], None), ("bb", ["2"], [], None)], [("ccc", ["3"], [], None)]]
        assert all(completed.seconds > 0 for completed in done)
        [crashed] = run_all(pool, [items("crash")])
        assert crashed.outcomes[0][3][0] == "WorkerLost" and crashed.seconds == 0.0
        assert pool.workers_lost == 1 and [name for name, _ in events] == ["worker_lost"]
        # the new worker computes what comes next
        [again] = run_all(pool, [items("dddd")])
        assert again.outcomes == [("dddd", ["4"], [], None)]
        assert pool.finish(return_state=True) == [None, None]
    except BaseException:
        pool.terminate()
        raise


def test_local_pool_takes_the_machine_cpus_when_no_number_is_given(plugin):
    pool = LocalPool(None, config(plugin, in_worker=True), None, PoolOptions(module=plugin.module))
    try:
        assert pool.n_workers == len(os.sched_getaffinity(0))
    finally:
        pool.terminate()


def auto_pool(plugin: LoadedPlugin, remarks: list[str], workers: int = 2) -> AutoPool:
    def start_workers(n: int) -> Pool:
        return LocalPool(n, config(plugin, in_worker=True), None, PoolOptions(module=plugin.module))

    return AutoPool(workers, config(plugin, in_worker=False), None,
                    PoolOptions(module=plugin.module, capture=OutputCapture(), start_workers=start_workers,
                                remark=remarks.append))


def test_auto_stays_in_the_driver_for_a_small_batch(plugin):
    remarks: list[str] = []
    pool = auto_pool(plugin, remarks)
    assert (pool.target_seconds, pool.max_chunk) == (0.02, DRIVER_MAX_CHUNK)
    done = list(Scheduler(iter(items("a", "bb", "ccc")), pool))
    assert [outcome for completed in done for outcome in completed.outcomes] == [
        ("a", ["1"], [], None), ("bb", ["2"], [], None), ("ccc", ["3"], [], None)]
    assert pool.finish(return_state=False) == []
    assert pool.label == "auto (serial)" and pool.parallel is None
    assert remarks == ["auto: the batch finished within 0.2 s in the driver"]


def test_auto_starts_workers_when_entities_are_expensive(plugin):
    remarks: list[str] = []
    pool = auto_pool(plugin, remarks)
    entities = [f"slow{i:03d}" for i in range(60)]  # 10 ms each: the probe's 0.2 s ends in the batch
    try:
        done = list(Scheduler(iter(items(*entities)), pool))
        assert pool.finish(return_state=True) == [None, None, None]  # the driver's state, then each worker's
    except BaseException:
        pool.terminate()
        raise
    assert sorted(outcome[0] for completed in done for outcome in completed.outcomes) == entities
    assert all(outcome[1] == ["7"] for completed in done for outcome in completed.outcomes)
    assert pool.label == "auto (pool)" and pool.parallel is not None and pool.n_workers == 2
    assert (pool.target_seconds, pool.max_chunk) == (0.1, 20_000)  # the workers' limits from now on
    [remark] = remarks
    assert re.fullmatch(r"auto: \d+\.\d\d ms per entity: \d+ entities computed in the driver, the rest by 2 worker processes",
                        remark), remark


def test_driver_chunks_follow_the_engine_when_rows_go_to_the_caller(plugin):
    """PoolOptions.driver_chunk (the engine sets it for iter_batch/run_batch) caps the chunks computed
    in the driver, by serial and by auto before it starts workers; unset, each keeps its own."""
    serial = SerialPool(1, config(plugin, in_worker=False), None, PoolOptions(module=plugin.module, capture=OutputCapture(),
                                                                              driver_chunk=DRIVER_ROWS_MAX_CHUNK))
    default = SerialPool(1, config(plugin, in_worker=False), None, PoolOptions(module=plugin.module, capture=OutputCapture()))
    assert (serial.max_chunk, default.max_chunk) == (256, DRIVER_MAX_CHUNK)
    remarks: list[str] = []
    auto = AutoPool(2, config(plugin, in_worker=False), None,
                    PoolOptions(module=plugin.module, capture=OutputCapture(), start_workers=lambda n: serial,
                                remark=remarks.append, driver_chunk=DRIVER_ROWS_MAX_CHUNK))
    assert auto.max_chunk == 256
    sizes = [len(completed.chunk) for completed in Scheduler(iter(items(*(f"e{i}" for i in range(2000)))), serial)]
    assert sum(sizes) == 2000 and max(sizes) <= 256
    for pool in (serial, default, auto):
        pool.finish(return_state=False)

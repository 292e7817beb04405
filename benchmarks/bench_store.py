"""The results store (issue 16): load rate, why latency, export rate, batch-compute --store overhead,
and MariaDB loading side by side with prenacs-load-results 1.2.

Targets (full size): loading 1,000,000 values (100,000 entities x 10 attributes of mixed datatypes)
at >= 300,000 values/s into SQLite and >= 200,000 values/s into PostgreSQL; into MariaDB at least as
fast as prenacs-load-results on the same server and data; ``provbatch why`` under 10 ms with 1M
entities stored; exporting one attribute of 1M entities at >= 500,000 values/s; ``batch-compute
--store`` on 1M trivial entities at most 1.3x the TSV-only run.

The servers are real: PostgreSQL and MariaDB started in temp dirs (tests/dbservers.py), with
their durability settings at the defaults (fsync on); MariaDB with a team server's buffer pool and
redo log (:data:`MARIADB_OPTIONS`), the same for prenacs and provbatch. ``--quick`` runs everything
at 1/10 size.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from _scale import (  # noqa: E402
    PLUGINS,
    batch_compute,
    cache_dir,
    fresh,
    ids_file,
    load_average,
    paired_ratio,
    result,
    run_env,
    timed_run,
)

ATTRIBUTES = {
    "b_int": "Integer", "b_float": "Float", "b_bool": "Boolean", "b_text": "Text", "b_label": "String(20)",
    "b_counts": "Integer[3]", "b_pair": "Float;Integer[2]", "b_int2": "Integer", "b_float2": "Float", "b_text2": "Text",
}
#: prenacs 1.2 with what its database commands need (MariaDB through mysqlclient, SQLAlchemy 1.x), installed
#: once into the benchmarks' cache (mysqlclient builds with Debian's libmariadb-dev and pkg-config: make test-setup)
PRENACS_DB = ["prenacs==1.2", "sqlalchemy<2", "mysqlclient"]


def prenacs_db_bin() -> tuple[Path | None, str]:
    """The bin folder of a venv with prenacs 1.2 and its database drivers, installed once; (None, why) if that fails."""
    venv = cache_dir() / "prenacs-1.2-db-venv"
    bindir = venv / "bin"
    if (bindir / "prenacs-load-results").exists():
        return bindir, "reused"
    print(f"  installing {' '.join(PRENACS_DB)} into {venv} ...", flush=True)
    for step in ([sys.executable, "-m", "venv", str(venv)], [str(bindir / "pip"), "install", "-q", *PRENACS_DB]):
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            return None, f"`{' '.join(step)}` failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-800:]}"
    return (bindir, "installed") if (bindir / "prenacs-load-results").exists() else (None, "no prenacs-load-results installed")


def write_results(path: Path, n_entities: int) -> None:
    rng = random.Random(16)
    with open(path, "w") as out:
        out.writelines(f"entity_{i:08d}\t{rng.randrange(10**9)}\t{rng.random():.6f}\t{'true' if i % 3 else 'false'}\t"
                      f"text number {i}\tlab{i % 1000}\t{i % 7},{i % 11},{i % 13}\t{rng.random():.4f};{i % 5},{i % 9}\t"
                      f"{i * 3}\t{rng.random():.3f}\tanother {i % 97}\n" for i in range(n_entities))


def record(output: list[str]):
    from provbatch.store import ComputationRecord, PluginRecord

    return ComputationRecord(str(uuid.uuid4()), PluginRecord("bench_mixed", "1.0", "python", "0" * 64, {}), output,
                             plugin_sha256="0" * 64, comp_status="completed", origin="provbatch-report")


def bench_load(url: str, results: Path, n_values: int) -> tuple[float, object]:
    from provbatch.store import Store

    Store.init(url)
    store = Store(url)
    store.apply_attributes({name: {"datatype": dt} for name, dt in ATTRIBUTES.items()})
    start = time.perf_counter()
    store.load(results, record(list(ATTRIBUTES)))
    seconds = time.perf_counter() - start
    print(f"  {url.split(':')[0]:<22} {n_values:,} values in {seconds:.2f} s: {n_values / seconds:,.0f} values/s", flush=True)
    return n_values / seconds, store


def why_and_export_in_a_new_process(url: str, n_entities: int, work: Path) -> tuple[float, float]:
    """:func:`bench_why_and_export` in a process of its own, as ``provbatch why`` and ``provbatch values`` run.

    Not in this one: after the loads before it, the same export ran at two thirds of its speed in
    this process (measured on one 1,000,000-entity store: 602,331 values/s, then 411,836 after a
    1,000,000-value PostgreSQL load in the same process; ``iter_values``' dicts 384,699 then
    288,492): the heap a big load leaves behind slows every later allocation, which is the
    benchmark's state, not the export's.
    """
    import json

    code = ("import json, sys; from pathlib import Path; sys.path.insert(0, sys.argv[4]); import bench_store; "
            "from provbatch.store import Store\n"
            "with Store(sys.argv[1]) as store: print(json.dumps(bench_store.bench_why_and_export(store, int(sys.argv[2]), Path(sys.argv[3]))))")
    done = subprocess.run([sys.executable, "-c", code, url, str(n_entities), str(work), str(HERE)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"why and export: {done.stderr.strip()}")
    *lines, last = done.stdout.rstrip().splitlines()
    print("\n".join(lines), flush=True)
    median_ms, rate = json.loads(last)
    return float(median_ms), float(rate)


def bench_why_and_export(store, n_entities: int, work: Path) -> tuple[float, float]:
    """``why`` latency, and the export of one attribute: ``provbatch values b_float --out FILE`` in this
    process (``export_values``, what the command runs after its start-up), best of 2; the dicts of
    ``iter_values`` and the command as a new process are printed beside it."""
    from provbatch.store.export import export_values

    rng = random.Random(1)
    samples = []
    for _ in range(200):
        entity = f"entity_{rng.randrange(n_entities):08d}"
        start = time.perf_counter()
        answer = store.why(entity, "b_pair")
        samples.append(time.perf_counter() - start)
        assert answer is not None and answer["entity"] == entity
    median_ms = statistics.median(samples) * 1000
    out = work / "export.tsv"
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        n = export_values(store, ["b_float"], None, "tsv", str(out))
        seconds.append(time.perf_counter() - start)
    assert n == n_entities
    with open(out) as exported:
        assert next(exported) == "entity\tattribute\tvalue\n" and sum(1 for _ in exported) == n_entities
    rate = n / min(seconds)
    start = time.perf_counter()
    n_dicts = sum(1 for _ in store.iter_values(["b_float"]))
    dict_rate = n_dicts / (time.perf_counter() - start)
    argv = [str(Path(sys.executable).parent / "provbatch"), "values", "b_float", "--store", store.url, "--out", str(out)]
    timed = timed_run(argv, HERE)
    assert timed.returncode == 0, timed.stderr
    command = timed.seconds
    print(f"  why: median {median_ms:.2f} ms, p95 {sorted(samples)[int(len(samples) * 0.95)] * 1000:.2f} ms (200 lookups); "
          f"export of one attribute to TSV: {n:,} values at {rate:,.0f} values/s "
          f"(as a command, start-up included: {command:.2f} s = {n / command:,.0f} values/s; "
          f"iter_values' dicts alone: {dict_rate:,.0f} values/s)", flush=True)
    return median_ms, rate


def bench_why_cli(url: str, n_entities: int) -> float:
    """``provbatch why`` end to end (a new process: interpreter start-up included), for reference."""
    argv = [str(Path(sys.executable).parent / "provbatch"), "why", f"entity_{n_entities // 2:08d}", "b_int", "--store", url]
    best = min(timed_run(argv, HERE).seconds for _ in range(3))
    print(f"  provbatch why as a command (process start included): {best * 1000:.0f} ms", flush=True)
    return best


#: the MariaDB comparison with prenacs: scalar datatypes only, which attrtables loads column for column
PRENACS_ATTRIBUTES = {f"p_int{i}": "Integer" for i in range(4)} | {f"p_float{i}": "Float" for i in range(3)} | {
    f"p_label{i}": "String(20)" for i in range(3)}
PRENACS_PLUGIN = f'''ID = "bench_scalars"
VERSION = "1.0"
INPUT = "id"
OUTPUT = {list(PRENACS_ATTRIBUTES)!r}
METHOD = "none"
IMPLEMENTATION = "none"
REQ_SOFTWARE = "none"
REQ_HARDWARE = "none"
ADVICE = "none"
PARAMETERS = []
def compute(unit, **kwargs):
    return [], []
'''


def write_scalar_results(path: Path, n_entities: int) -> None:
    rng = random.Random(15)
    with open(path, "w") as out:
        for i in range(n_entities):
            out.write(f"entity_{i:08d}\t{rng.randrange(10**9)}\t{i}\t{i % 1000}\t{i * 7}\t{rng.random():.6f}\t"
                      f"{rng.random():.4f}\t{i / 3:.3f}\tlab{i % 1000}\tname {i % 97}\tx{i}\n")


#: the MariaDB server of the benchmark, for both tools: a team server's InnoDB settings instead of the
#: package defaults (128 MB buffer pool, 96 MB redo log), durability left on (fsync at each commit,
#: doublewrite). A 1,000,000-value load writes 150-220 MB of redo: with a 96 MB log InnoDB must flush
#: dirty pages for a checkpoint in the middle of the load. 1 GB of each is small for a team server.
MARIADB_OPTIONS = ("--innodb-buffer-pool-size=1G", "--innodb-log-file-size=1G")


def _server_cpu(server) -> float:
    """CPU seconds the server process has used (user + system): what a statement cost the server,
    much less sensitive to other processes on the machine than wall time."""
    import os

    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quiesce_mariadb(server, timeout: float = 120.0) -> None:
    """Flush the server's dirty pages before a timed load, so that neither tool pays for the writes of
    the load before it (the page cleaner otherwise flushes them during the next one)."""
    import sqlalchemy as sa

    engine = sa.create_engine(server.admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            before = connection.execute(sa.text("SELECT @@innodb_max_dirty_pages_pct")).scalar()
            connection.execute(sa.text("SET GLOBAL innodb_max_dirty_pages_pct = 0"))
            deadline = time.monotonic() + timeout
            try:
                while time.monotonic() < deadline:
                    dirty = connection.execute(sa.text("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")).one()[1]
                    if int(dirty) == 0:
                        break
                    time.sleep(0.2)
            finally:
                connection.execute(sa.text(f"SET GLOBAL innodb_max_dirty_pages_pct = {float(before)}"))
    finally:
        engine.dispose()


def bench_mariadb_vs_prenacs(server, work: Path, n: int, rounds: int = 4) -> tuple[float, float | None, float | None]:
    """The same scalar results into MariaDB: provbatch load vs prenacs-load-results 1.2, both as commands,
    each into a fresh database, interleaved (ours first in even rounds, prenacs first in odd ones), the
    server's dirty pages flushed before each. Returns the best rate of each and the median of the rounds'
    own speed ratios (_scale.paired_ratio: two rounds, best of each, swung between 0.93x and 1.13x in one
    morning, 2026-12-03); None for prenacs when it could not run."""
    import yaml

    results = work / "scalars.tsv"
    write_scalar_results(results, n)
    n_values = n * len(PRENACS_ATTRIBUTES)
    (work / "defs.yaml").write_text("".join(f"{name}:\n  datatype: {dt}\n  definition: benchmark attribute\n"
                                            for name, dt in PRENACS_ATTRIBUTES.items()))
    plugin = work / "bench_scalars.py"
    plugin.write_text(PRENACS_PLUGIN)
    report = work / "scalars.report.yaml"
    report.write_text(yaml.dump({"plugin_id": "bench_scalars", "plugin_version": "1.0", "system_id": "bench", "user_id": "bench",
                                 "reason": "new_entities", "parameters": yaml.dump({}), "uuid": uuid.uuid4().bytes,
                                 "time_start": "2024-01-01 00:00:00", "time_end": "2024-01-01 00:01:00",
                                 "n_units": n, "comp_status": "completed"}))
    provbatch = str(Path(sys.executable).parent / "provbatch")
    found, how = prenacs_db_bin()
    have_prenacs = found is not None
    bindir = found or Path()
    print(f"  prenacs: {bindir} ({how})" if have_prenacs else f"  prenacs 1.2 could not be installed here: {how}", flush=True)

    def ours() -> float:
        url = server.create_database("ours")
        setup = subprocess.run([provbatch, "attributes", "apply", "defs.yaml", "--store", url], cwd=work, capture_output=True, text=True)
        if setup.returncode != 0:
            sys.exit(f"provbatch attributes apply failed: {setup.stderr}")
        quiesce_mariadb(server)
        cpu = _server_cpu(server)
        timed = timed_run([provbatch, "load", str(results), str(report), str(plugin), "--store", url], work)
        if timed.returncode != 0:
            sys.exit(f"provbatch load failed: {timed.stderr[-800:]}")
        print(f"  provbatch load (MariaDB, process start included): {n_values:,} values in {timed.seconds:.2f} s: "
              f"{n_values / timed.seconds:,.0f} values/s (server CPU {_server_cpu(server) - cpu:.2f} s)", flush=True)
        return timed.seconds

    def prenacs() -> float | None:
        database = server.create_database("prenacs").rsplit("/", 1)[1].split("?")[0]
        db_args = ["root", "unused", database, str(server.root / "mysqld.sock")]  # the server runs without grant tables
        for command in (["prenacs-setup-database"], ["prenacs-manage-attributes", "defs.yaml"]):
            done = subprocess.run([str(bindir / command[0]), *db_args, *command[1:]], cwd=work, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"  {command[0]} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-600:]}")
                return None
        quiesce_mariadb(server)
        cpu = _server_cpu(server)
        timed = timed_run([str(bindir / "prenacs-load-results"), *db_args, str(results), str(report), str(plugin)], work)
        if timed.returncode != 0:
            errors = [line for line in timed.stderr.splitlines() if "Error" in line or "error" in line]
            print(f"  prenacs-load-results failed (exit {timed.returncode}): {(errors[-1] if errors else timed.stderr.strip())[:600]}")
            return None
        print(f"  prenacs-load-results 1.2 (MariaDB, LOAD DATA LOCAL INFILE, process start included): {n_values:,} values in "
              f"{timed.seconds:.2f} s: {n_values / timed.seconds:,.0f} values/s (server CPU {_server_cpu(server) - cpu:.2f} s)",
              flush=True)
        return timed.seconds

    times: dict[str, list[float]] = {"ours": [], "prenacs": []}
    for round_ in range(rounds):
        order = ("ours", "prenacs") if round_ % 2 == 0 else ("prenacs", "ours")
        for tool in order:
            if tool == "ours":
                times["ours"].append(ours())
            elif have_prenacs:
                seconds = prenacs()
                if seconds is None:
                    have_prenacs = False
                else:
                    times["prenacs"].append(seconds)
    ours_rate = n_values / min(times["ours"])
    if not have_prenacs:
        return ours_rate, None, None
    ratio, ratios = paired_ratio([{"ours": ours, "prenacs": theirs} for ours, theirs in zip(times["ours"], times["prenacs"])],
                                 "prenacs", "ours")
    print(f"  the rounds' speed ratios {', '.join(f'{r:.2f}' for r in ratios)}: median {ratio:.2f}x", flush=True)
    return ours_rate, n_values / min(times["prenacs"]), ratio


#: paired rounds of the batch-compute --store row: on 2026-12-03 the same tree's median of 5 rounds gave 1.25x,
#: 1.29x and (of 15) 1.39x within half an hour, each round's ratio anywhere from 1.03 to 1.70 (this VM's
#: CPU speed moves by up to 40 % between neighbouring runs: one command's user time 0.93-1.38 s); 11 rounds
#: narrow the median's spread by a third (docs/performance.md) for ~25 s more
BATCH_COMPUTE_ROUNDS = 11


def bench_batch_compute(n: int, work: Path, rounds: int = BATCH_COMPUTE_ROUNDS) -> float:
    """batch-compute of the trivial plugin on n ids: TSV only vs TSV + --store (SQLite), interleaved (the order
    alternates), the median of the rounds' own ratios (_scale.paired_ratio), the best of each printed beside it."""
    ids = ids_file(n)
    times: dict[str, list[float]] = {"tsv": [], "store": []}
    for round_ in range(rounds):
        for mode in ("tsv", "store") if round_ % 2 == 0 else ("store", "tsv"):
            folder = fresh(work / f"bc-{mode}")
            extra = ["--store", str(folder / "store.sqlite")] if mode == "store" else []
            argv = batch_compute(PLUGINS / "trivial.py", ids, "--out", folder / "out.tsv", "--attributes",
                                 PLUGINS / "attribute_definitions.yaml", "--run-dir", folder / "run", *extra)
            timed = timed_run(argv, folder, run_env(folder))
            if timed.returncode != 0:
                sys.exit(f"batch-compute ({mode}) failed: {timed.stderr[-800:]}")
            times[mode].append(timed.seconds)
    tsv, store = min(times["tsv"]), min(times["store"])
    ratio, ratios = paired_ratio([{"tsv": t, "store": s} for t, s in zip(times["tsv"], times["store"])], "store", "tsv")
    print(f"  batch-compute {n:,} trivial entities: TSV only {', '.join(f'{t:.2f}' for t in times['tsv'])} s, TSV + --store "
          f"{', '.join(f'{t:.2f}' for t in times['store'])} s: the rounds' ratios {', '.join(f'{r:.2f}' for r in ratios)}, "
          f"median {ratio:.2f}x (best of each {store:.2f} s vs {tsv:.2f} s: {store / tsv:.2f}x)", flush=True)
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1/10 of the sizes")
    parser.add_argument("--entities", type=int, help="entities loaded (x10 values)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["postgresql", "mariadb", "prenacs", "batch-compute", "why-million"])
    args = parser.parse_args()
    import dbservers

    n = args.entities or (10_000 if args.quick else 100_000)
    n_values = n * len(ATTRIBUTES)
    work = fresh(cache_dir() / "work-store")
    results = work / "mixed.tsv"
    write_results(results, n)
    print(f"store benchmarks: {n:,} entities x {len(ATTRIBUTES)} attributes = {n_values:,} values; {load_average()}", flush=True)

    servers = []
    try:
        rate, store = bench_load(f"sqlite:///{work / 'load.sqlite'}", results, n_values)
        result("store load SQLite", f"{rate:,.0f} values/s", ">= 300,000 values/s", rate >= 300_000)
        store.close()
        median_ms, export_rate = why_and_export_in_a_new_process(store.url, n, work)
        if "postgresql" not in args.skip:
            servers.append(pg := dbservers.start_postgresql(fast=False))
            rate, store = bench_load(pg.create_database(), results, n_values)
            store.close()
            result("store load PostgreSQL", f"{rate:,.0f} values/s", ">= 200,000 values/s", rate >= 200_000)
        if "mariadb" not in args.skip:
            servers.append(maria := dbservers.start_mariadb(fast=False, options=MARIADB_OPTIONS))
            rate, store = bench_load(maria.create_database(), results, n_values)
            store.close()
            if "prenacs" not in args.skip:
                ours, prenacs, speed = bench_mariadb_vs_prenacs(maria, fresh(work / "prenacs"), n, rounds=2 if args.quick else 4)
                if prenacs is None or speed is None:
                    result("store load MariaDB vs prenacs-load-results", f"{ours:,.0f} values/s; prenacs not run", ">= 1.0x", False)
                else:
                    result("store load MariaDB vs prenacs-load-results", f"{speed:.2f}x (median of {2 if args.quick else 4} "
                           f"paired rounds; best of each {ours:,.0f} vs {prenacs:,.0f} values/s; {load_average()})",
                           ">= 1.0x", speed >= 1.0)
        # the servers are done: stopped before the SQLite rows below, so that their work after the loads
        # (InnoDB's purge and page flushing, PostgreSQL's autovacuum and checkpoints) shares no CPU with them
        for server in servers:
            server.stop()
        servers.clear()
        # why and export with a million entities: one attribute of 1M entities
        big = 10 * n
        if "why-million" not in args.skip:
            from provbatch.store import Store

            one = work / "one.tsv"
            with open(one, "w") as out:
                out.writelines(f"entity_{i:08d}\t{i}\n" for i in range(big))
            url = f"sqlite:///{work / 'million.sqlite'}"
            Store.init(url)
            with Store(url) as million:
                million.apply_attributes({"b_int": {"datatype": "Integer"}, "b_pair": {"datatype": "Float;Integer[2]"},
                                          "b_float": {"datatype": "Float"}})
                million.load(one, record(["b_float"]))
                million.load(one, record(["b_int"]))
                two = work / "pair.tsv"
                with open(two, "w") as out:
                    out.writelines(f"entity_{i:08d}\t0.5;{i},{i}\n" for i in range(big))
                million.load(two, record(["b_pair"]))
                print(f"  with {big:,} entities stored (SQLite):", flush=True)
            median_ms, export_rate = why_and_export_in_a_new_process(url, big, work)
            bench_why_cli(url, big)
        result(f"why with {big:,} entities", f"median {median_ms:.2f} ms", "< 10 ms", median_ms < 10)
        result(f"export one attribute of {big:,} entities to TSV", f"{export_rate:,.0f} values/s", ">= 500,000 values/s",
               export_rate >= 500_000)
        if "batch-compute" not in args.skip:
            ratio = bench_batch_compute(big, work)
            result(f"batch-compute --store on {big:,} trivial entities",
                   f"{ratio:.2f}x the TSV-only run (median of {BATCH_COMPUTE_ROUNDS} paired rounds)",
                   "<= 1.3x", ratio <= 1.3)
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()

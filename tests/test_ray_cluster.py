"""--address: batch-compute joins an existing Ray cluster (started here with `ray start --head`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest
import yaml

from conftest import BIN, GC_EXPECTED, read_tsv, run_cli


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A one-node cluster of its own (`ray start --head --block` in its own session),
    stopped by signalling that session only: other Ray instances on the machine are left alone."""
    port = _free_port()
    log = open(tmp_path_factory.mktemp("raycluster") / "ray-start.log", "w")
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        probe = subprocess.run([str(BIN / "ray"), "status", f"--address={address}"], capture_output=True, text=True)
        if probe.returncode == 0:
            break
        assert head.poll() is None, "ray start --head exited early"
        time.sleep(1)
    else:
        pytest.fail("the Ray head did not come up")
    yield address
    os.killpg(head.pid, signal.SIGTERM)  # --block: ray start stops what it started
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
    log.close()


@pytest.mark.ray
def test_address_joins_existing_cluster(ray_cluster, tmp_path):
    out = tmp_path / "gc.tsv"
    proc = run_cli("plugins/gc_content.py", "examples/genomes.txt", "--address", ray_cluster, "--out", out,
                   env={"RAY_AUTH_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(out) == GC_EXPECTED
    report = yaml.safe_load((tmp_path / "gc.tsv.report.yaml").read_text())
    assert report["backend"] == "ray" and report["workers"] == 2  # the cluster's CPUs: auto chose Ray for the address
    # RAY_ADDRESS does the same; the cluster outlives the batches (we joined it, we did not start it)
    out2 = tmp_path / "gc2.tsv"
    proc = run_cli("plugins/gc_content.py", "examples/genomes.txt", "--out", out2,
                   env={"RAY_ADDRESS": ray_cluster, "RAY_AUTH_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(out2) == GC_EXPECTED
    # --address auto: the address file `ray start` wrote names this cluster
    out3 = tmp_path / "gc3.tsv"
    proc = run_cli("plugins/gc_content.py", "examples/genomes.txt", "--address", "auto", "--out", out3,
                   env={"RAY_ADDRESS": "", "RAY_AUTH_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(out3) == GC_EXPECTED
    assert yaml.safe_load((tmp_path / "gc3.tsv.report.yaml").read_text())["workers"] == 2
    assert subprocess.run([str(BIN / "ray"), "status", f"--address={ray_cluster}"], capture_output=True).returncode == 0


@pytest.mark.ray
def test_without_address_a_private_instance_even_beside_a_cluster(ray_cluster, tmp_path):
    out = tmp_path / "gc.tsv"
    proc = run_cli("plugins/gc_content.py", "examples/genomes.txt", "--backend", "ray", "--workers", "1", "--out", out,
                   env={"RAY_AUTH_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(out) == GC_EXPECTED
    report = yaml.safe_load((tmp_path / "gc.tsv.report.yaml").read_text())
    assert report["workers"] == 1

"""What a user sees on a terminal: the progress line; and the fallback when Ray is missing."""

from __future__ import annotations

import os
import pty
import subprocess

import yaml

from conftest import BIN, GC_EXPECTED, REPO, read_tsv, run_cli


def test_ray_not_importable_falls_back_to_local_pool(tmp_path):
    broken = tmp_path / "shadow" / "ray"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('ray is broken on this machine')\n")
    out = tmp_path / "gc.tsv"
    proc = run_cli("plugins/gc_content.py", "examples/genomes.txt", "--backend", "ray", "--out", out,
                   env={"PYTHONPATH": str(tmp_path / "shadow")})
    assert proc.returncode == 0, proc.stderr
    assert read_tsv(out) == GC_EXPECTED
    assert "Ray cannot be imported (ImportError: ray is broken on this machine): using the local pool backend instead" in proc.stderr
    report = yaml.safe_load((tmp_path / "gc.tsv.report.yaml").read_text())
    assert report["backend"] == "pool" and any("Ray cannot be imported" in r for r in report["remarks"])


def _run_on_terminal(args: list[str]) -> str:
    """Run a command with stderr on a pseudo-terminal; return what the terminal received."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    received = b""
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the command closed the terminal
            break
        if not data:
            break
        received += data
    proc.wait(timeout=120)
    os.close(leader)
    assert proc.returncode == 0, received
    return received.decode(errors="replace")


def test_progress_line_on_a_terminal_only(tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"e{i}\n" for i in range(3000)))
    plugin = REPO / "plugins" / "fault_injection.py"
    args = [str(BIN / "batch-compute"), str(plugin), str(ids), "--backend", "serial", "--out", str(tmp_path / "o.tsv"),
            "--param", "sleep_sec=0.0002"]
    screen = _run_on_terminal(args)
    assert "3000/3000 entities" in screen and "failed=0" in screen and "entities/s" in screen
    assert screen.count("\r") >= 2  # redrawn in place
    assert "entities" not in _run_on_terminal(args[:-2] + ["--out", str(tmp_path / "p.tsv"), "--no-progress"])
    # not a terminal: no progress line
    proc = subprocess.run(args[:-4] + ["--out", str(tmp_path / "q.tsv")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0 and "entities" not in proc.stderr

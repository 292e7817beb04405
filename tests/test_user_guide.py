"""The user guide's own examples, run as a reader would copy them: the pandas pipeline (its printed
table must be what the guide shows) and the Snakemake rule (run by a real snakemake)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from conftest import BIN, GC_EXPECTED, REPO

GUIDE = REPO / "docs" / "user-guide.md"


def guide_block(marker: str) -> str:
    """The fenced code block whose first line is ``# docs-test: MARKER``."""
    for block in re.findall(r"```[a-z]*\n(.*?)```", GUIDE.read_text(), flags=re.S):
        if block.startswith(f"# docs-test: {marker}\n"):
            return block
    raise AssertionError(f"no block '# docs-test: {marker}' in {GUIDE}")


def block_after(marker: str) -> str:
    """The fenced block right after the one marked ``marker`` (what the guide says it prints)."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", GUIDE.read_text(), flags=re.S)
    index = next(i for i, block in enumerate(blocks) if block.startswith(f"# docs-test: {marker}\n"))
    return blocks[index + 1]


def workspace(tmp_path):
    for name in ("examples", "plugins"):
        shutil.copytree(REPO / name, tmp_path / name)
    shutil.copy(REPO / "attribute_definitions.yaml", tmp_path)
    return {**os.environ, "PROVBATCH_RUNS": str(tmp_path / "runs"), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def test_the_pandas_pipeline_of_the_user_guide_prints_what_the_guide_says(tmp_path):
    env = workspace(tmp_path)
    script = tmp_path / "pipeline.py"
    script.write_text(guide_block("pandas-pipeline"))
    first = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert first.stdout == block_after("pandas-pipeline")
    # a second run: a resume, said as such; the printed table is the same (read from the file)
    second = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    assert "SkippedEntitiesWarning: 6 of 6 entities skipped: their results are already in gc.tsv (a resume)" in second.stderr


def test_the_snakemake_rule_of_the_user_guide_runs_in_snakemake(tmp_path):
    env = workspace(tmp_path)
    (tmp_path / "Snakefile").write_text(guide_block("Snakefile"))
    snakemake = shutil.which("snakemake", path=env["PATH"])
    assert snakemake, "snakemake is a test dependency (pyproject's test extra)"
    proc = subprocess.run([snakemake, "--cores", "1", "--quiet"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = (tmp_path / "results" / "gc_content.tsv").read_text().splitlines()
    assert lines[0] == "entity\tgc_content\tgenome_size"
    assert {line.split("\t")[0]: line.split("\t")[1:] for line in lines[1:]} == GC_EXPECTED
    assert (tmp_path / "results" / "gc_content.tsv.report.yaml").is_file()
    # up to date: a second snakemake computes nothing
    again = subprocess.run([snakemake, "--cores", "1", "--quiet"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0 and (tmp_path / "results" / "gc_content.tsv").read_text().splitlines() == lines


def test_make_demo_is_quiet_and_shows_the_results_with_their_column_names(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(["make", "--no-print-directory", "demo", f"DEMO_OUT={out}"], cwd=REPO, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PROVBATCH_RUNS": str(tmp_path / "runs")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:8] == [
        "GC content of the genomes listed in examples/genomes.txt (plugins/gc_content.py):",
        "  entity                             gc_content  genome_size",
        "  examples/genomes/ecoli_like.fna    0.5066      5000",
        "  examples/genomes/staph_like.fna    0.328       3000",
        "  examples/genomes/strepto_like.fna  0.713       4000",
        "  examples/genomes/tiny.fna          0.4083      120",
        "  examples/genomes/plasmid_mix.fna   0.4147      3200",
        "  examples/genomes/gzipped.fna.gz    0.5066      5000",
    ]
    assert lines[8] == "" and lines[9] == f"results:     {out}/gc_content.tsv (first line: the column names, from --header)"
    # then the results store beside the outputs, and where one value came from (provbatch why, issue 16)
    assert lines[14] == f"store:       {out}/provbatch.sqlite (every value with its computation); where one value came from:"
    assert lines[15] == f"$ provbatch why examples/genomes/tiny.fna gc_content --store {out}/provbatch.sqlite"
    assert lines[16] == "gc_content of examples/genomes/tiny.fna: 0.4083  [Float]"
    assert [line.split()[0] for line in lines[17:]] == ["computation", "plugin", "plugin", "parameters", "input", "user",
                                                       "time", "run", "command", "redo", "or"]
    # nothing but what the user should read: no command echo, no build or install banner
    # (the why answer names the command that computed the value, on purpose)
    text = "\n".join(lines[:15]) + proc.stderr
    for noise in ("batch-compute plugins", "touch ", "pip install", "setuptools", "Obtaining", "Building", "WARNING"):
        assert noise not in text, noise
    assert (out / "report.html").is_file()

#!/usr/bin/env bash
# The Bash twin of trivial.py: the length of the entity id, computed by bash itself (no process).
#
# Used by benchmarks/bench_bash_parallel.py, which runs the same compute function under
# GNU parallel: what a run measures is the cost of calling a Bash function per entity.

ID="bench_trivial_bash"
VERSION="1.0.0"
INPUT="any entity id"
OUTPUT=(id_length)
METHOD="\${#1}: the length of the entity id"

compute() {
  printf '%s\n' "${#1}"
}

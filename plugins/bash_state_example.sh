#!/usr/bin/env bash
# Sequence length with a batch-wide state, in Bash: initialize, compute, finalize.
#
# The Bash twin of seq_stats_state.py. A Bash state is a string, so a state
# that must collect something is a handle to a shared resource: here a
# directory. initialize creates it and prints its path (the state); compute
# gets state=<path> and appends the entity's size to a file in it; finalize
# gets the path as $1, writes the totals to the `summary` file (if given)
# and removes the directory.
#
# The directory is on the machine that ran initialize: use this pattern with
# the serial and pool backends, or with Ray on a single machine.
#   batch-compute plugins/bash_state_example.sh examples/genomes.txt --param summary=totals.tsv

ID="bash_state_example"
VERSION="1.0.0"
INPUT="path to a FASTA file (plain, or gzipped with a .gz suffix)"
OUTPUT=(genome_size)
METHOD="counts the A, C, G and T bases (any case) of all records; totals are gathered through the state"
IMPLEMENTATION="grep, tr and wc per entity; the sizes are appended to a file in a directory made by initialize"
REQ_SOFTWARE="bash >= 4.4, grep, tr, wc, mktemp; gzip for .gz files"
PARAMETERS=(
  $'summary\tString(1024)\t\tfile where finalize writes the totals (none when empty)'
)

# The value of KEY among key=value arguments ($2...), or empty.
_param() {
  local key=$1 arg
  shift
  for arg in "$@"; do
    case $arg in "$key="*) printf '%s' "${arg#"$key="}" ;; esac
  done
}

# The file's bytes, decompressed when its name ends in .gz.
_cat() {
  case $1 in
    *.gz) gzip -dc -- "$1" ;;
    *) cat -- "$1" ;;
  esac
}

initialize() {
  local dir
  dir=$(mktemp -d "${TMPDIR:-/tmp}/provbatch-state.XXXXXX") || return
  _param summary "$@" >"$dir/summary_path"
  printf '%s\n' "$dir"
}

compute() {
  local -
  set -o pipefail  # an unreadable file fails the entity
  local entity=$1 dir size
  dir=$(_param state "$@")
  if [ ! -d "$dir" ]; then
    printf 'no state directory %s: was initialize run?\n' "$dir" >&2
    return 3
  fi
  size=$(_cat "$entity" | { LC_ALL=C grep -v '^>' || [ $? -eq 1 ]; } | LC_ALL=C tr -cd 'ACGTacgt' | wc -c) || return
  size=$((size))  # wc may pad with spaces
  # one short line per write: appends from parallel workers do not interleave
  printf '%s\n' "$size" >>"$dir/sizes"
  printf '%s\n' "$size"
}

finalize() {
  local dir=$1 summary files=0 bases=0 size
  summary=$(cat -- "$dir/summary_path")
  if [ -f "$dir/sizes" ]; then
    while read -r size; do
      files=$((files + 1))
      bases=$((bases + size))
    done <"$dir/sizes"
  fi
  if [ -n "$summary" ]; then
    printf 'files\t%s\nbases\t%s\n' "$files" "$bases" >"$summary" || return
  fi
  printf 'totals\t%s files, %s bases\n' "$files" "$bases"
  rm -rf -- "$dir"
}

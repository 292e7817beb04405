#!/usr/bin/env bash
# GC content and length of the sequences in a FASTA file (plain or gzipped).
#
# Example Bash plugin for provbatch, the twin of gc_content.py: same method,
# same results, with POSIX tools. The entity is a path to a FASTA file.
#   batch-compute plugins/gc_content.sh examples/genomes.txt --param digits=3
#
# Output contract (docs/bash-plugins.md): first stdout line = the results,
# tab-separated; further stdout lines and stderr lines = logs.

ID="gc_content_sh"
VERSION="1.0.0"
INPUT="path to a FASTA file (plain, or gzipped with a .gz suffix)"
OUTPUT=(gc_content genome_size)
METHOD="counts G, C, A and T (any case) over all sequence lines; GC content = (G+C)/(A+C+G+T)"
IMPLEMENTATION="grep drops the header lines, tr keeps the bases and turns G/C into newlines, wc counts lines and bytes; awk divides and rounds like Python's round()"
REQ_SOFTWARE="bash >= 4.4, grep, tr, wc, awk; gzip for .gz files"
PARAMETERS=(
  $'digits\tInteger\t4\tdecimal digits the GC content is rounded to'
)

# The file's bytes, decompressed when its name ends in .gz.
_gc_cat() {
  case $1 in
    *.gz) gzip -dc -- "$1" ;;
    *) cat -- "$1" ;;
  esac
}

# "GC TOTAL": sequence lines only; each G or C becomes a newline and each A or
# T an x, so that wc -l counts G+C and wc -c counts A+C+G+T, in one pass.
# (grep exits 1 when no line is selected: not an error here.)
_gc_counts() {
  _gc_cat "$1" | { LC_ALL=C grep -v '^>' || [ $? -eq 1 ]; } \
    | LC_ALL=C tr -cd 'ACGTacgt' | LC_ALL=C tr 'GCgcATat' '\n\n\n\nxxxx' | wc -lc
}

_gc_records() {
  _gc_cat "$1" | { LC_ALL=C grep -c '^>' || [ $? -eq 1 ]; }
}

# round(gc / total, digits) printed as Python's str() prints a float:
# %.Nf rounds the double exactly as round() does; the shortest %.Pg that
# reads back as the same double is what repr() prints; ".0" when integral.
_gc_round() {
  awk -v gc="$1" -v total="$2" -v digits="$3" 'BEGIN {
    x = gc / total
    v = (digits < 0) ? 0 : sprintf("%." digits "f", x) + 0
    for (p = 1; p <= 17; p++) { s = sprintf("%." p "g", v); if (s + 0 == v) break }
    if (s !~ /[.e]/) s = s ".0"
    print s
  }'
}

compute() {
  local -          # the options set below end with the function
  set -o pipefail  # a failed gzip or cat fails the entity
  local entity=$1 digits=4 arg counts records gc total
  shift
  for arg in "$@"; do
    case $arg in
      digits=*) digits=${arg#digits=} ;;
    esac
  done
  case ${digits#-} in
    '' | *[!0-9]*) printf 'digits must be an integer, got %s\n' "$digits" >&2; return 2 ;;
  esac
  if [ ! -r "$entity" ]; then
    printf 'cannot read %s\n' "$entity" >&2
    return 2
  fi
  counts=$(_gc_counts "$entity") || return
  records=$(_gc_records "$entity") || return
  read -r gc total <<<"$counts"
  if [ "$total" -eq 0 ]; then
    printf '0.0\t0\nrecords\t%s\nwarning\tno A, C, G or T in the file\n' "$records"
    return 0
  fi
  printf '%s\t%s\nrecords\t%s\n' "$(_gc_round "$gc" "$total" "$digits")" "$total" "$records"
}

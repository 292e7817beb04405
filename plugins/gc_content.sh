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
IMPLEMENTATION="grep drops the header lines, tr keeps the bases and turns G/C into newlines, wc counts lines and bytes; awk divides and rounds like Python's round(); gzip -dc for .gz files"
REQ_SOFTWARE="bash >= 4.4, grep, tr, wc, awk; gzip for .gz files"
PARAMETERS=(
  $'digits\tInteger\t4\tdecimal digits the GC content is rounded to'
)

# The sequence lines (header lines dropped), decompressed when the name ends
# in .gz. grep exits 1 when it selects no line: not an error here.
_gc_sequence() {
  case $1 in
    *.gz) gzip -dc -- "$1" | { LC_ALL=C grep -v '^>' || [ $? -eq 1 ]; } ;;
    *) LC_ALL=C grep -v '^>' -- "$1" || [ $? -eq 1 ] ;;
  esac
}

_gc_records() {
  case $1 in
    *.gz) gzip -dc -- "$1" | { LC_ALL=C grep -c '^>' || [ $? -eq 1 ]; } ;;
    *) LC_ALL=C grep -c '^>' -- "$1" || [ $? -eq 1 ] ;;
  esac
}

# Reads "GC TOTAL" (from wc -lc), prints the results line and the log lines.
# round(gc / total, digits) is printed as Python's str() prints a float:
# %.Nf rounds the double exactly as round() does; the shortest %.Pg that
# reads back as the same double is what repr() prints; ".0" when integral.
_gc_report() {
  awk -v digits="$1" -v records="$2" '{
    gc = $1; total = $2
    if (total == 0) {
      print "0.0\t0"; print "records\t" records; print "warning\tno A, C, G or T in the file"
      exit
    }
    v = (digits < 0) ? 0 : sprintf("%." digits "f", gc / total) + 0
    for (p = 1; p <= 17; p++) { s = sprintf("%." p "g", v); if (s + 0 == v) break }
    if (s !~ /[.e]/) s = s ".0"
    print s "\t" total; print "records\t" records
  }'
}

compute() {
  local -          # the options set below end with the function
  set -o pipefail  # a failed gzip fails the entity
  local entity=$1 digits=4 arg records
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
  records=$(_gc_records "$entity") || return
  # each G or C becomes a newline and each A or T an x: wc -l counts G+C, wc -c counts A+C+G+T
  _gc_sequence "$entity" | LC_ALL=C tr -cd 'ACGTacgt' | LC_ALL=C tr 'GCgcATat' '\n\n\n\nxxxx' | wc -lc \
    | _gc_report "$digits" "$records"
}

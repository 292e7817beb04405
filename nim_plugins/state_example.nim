## Records and bases of FASTA files, with totals kept in a ``ref object`` state.
##
## Example of the state lifecycle of a Nim plugin: initialize builds the
## state, compute updates it for each entity, finalize sees the totals and,
## when ``summary`` is given, appends them to that file.
##
## The state lives in the worker process that created it (Python holds only a
## handle to it), so with several workers each one runs initialize and
## finalize: ``summary`` then gets one line per worker, and the batch totals
## are the sums of the lines.

import std/[os, strutils]
import nimpy

const
  ID = "state_example_nim"
  VERSION = "1.0.0"
  INPUT = "path to a FASTA file (plain text)"
  OUTPUT = @["fasta_records", "genome_size"]
  METHOD = "counts the records and the A, C, G and T bases of each file; totals are kept in the state"
  IMPLEMENTATION = "Nim; the state is a ref object kept alive by provbatch's bridge between calls"
  PARAMETERS = @[
    ("summary", "String(1024)", "", "file to which finalize appends 'pid, files, records, bases' (none when empty)"),
    ("uppercase_only", "Boolean", "false", "count only upper-case A, C, G, T"),
  ]

exportpy_consts(ID, VERSION, INPUT, OUTPUT, METHOD, IMPLEMENTATION, PARAMETERS)

type
  BatchTotals = ref object of RootObj
    summary: string
    files, records, bases: int

proc initialize(summary: string = ""): BatchTotals {.exportpy.} =
  BatchTotals(summary: summary)

proc compute(entity: string, state: BatchTotals, uppercase_only: bool = false):
             tuple[results: (int, int), logs: seq[string]] {.exportpy.} =
  let bases = if uppercase_only: {'A', 'C', 'G', 'T'} else: {'A', 'C', 'G', 'T', 'a', 'c', 'g', 't'}
  var records, count = 0
  for line in lines(entity):
    if line.startsWith('>'):
      inc records
    else:
      for c in line:
        if c in bases: inc count
  state.files += 1
  state.records += records
  state.bases += count
  result.results = (records, count)
  result.logs = @["files_in_this_worker\t" & $state.files]

proc finalize(state: BatchTotals) {.exportpy.} =
  if state.summary.len > 0:
    let f = open(state.summary, fmAppend)
    defer: f.close()
    f.write([$getCurrentProcessId(), $state.files, $state.records, $state.bases].join("\t") & "\n")

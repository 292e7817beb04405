## The Nim twin of benchmarks/plugins/trivial.py: the length of the entity id.
##
## Used by benchmarks/bench_nim.py to compare the per-entity cost of a compiled plugin
## through the engine: this one (provbatch's native nimpy bridge) against
## benchmarks/plugins/trivial.rs.

import nimpy

const
  ID = "bench_trivial_nim"
  VERSION = "1.0.0"
  INPUT = "any entity id"
  OUTPUT = @["id_length"]
  METHOD = "the length of the entity id in bytes"

exportpy_consts(ID, VERSION, INPUT, OUTPUT, METHOD)

proc compute(entity: string): tuple[results: (int, ), logs: seq[string]] {.exportpy.} =
  result.results = (entity.len, )

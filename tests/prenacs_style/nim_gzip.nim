## A MultiPlug-style Nim plugin that reads gzipped files with the nimble
## package `zip` (not part of Nim's standard library).
import nimpy
import zip/gzipfiles

const
  ID = "nim_gzip"
  VERSION = "1.0"
  INPUT = "a gzipped text file"
  OUTPUT = @["n_lines"]
exportpy_consts(ID, VERSION, INPUT, OUTPUT)

proc compute(filename: string): tuple[results: (int, ), logs: seq[string]] {.exportpy.} =
  let stream = newGzFileStream(filename)
  var n = 0
  var line: string
  while stream.readLine(line): inc n
  result.results = (n, )

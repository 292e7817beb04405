## A Nim plugin in the MultiPlug 1.2 / prenacs 1.2 style: constants through
## MultiPlug's exportpy_consts module and a hand-written py_const_ proc, a
## ref-object state, and compute_id (usable as a prenacs --idsproc module).
import strutils
import nimpy
import multiplug_nim/exportpy_consts

const
  ID = "nim_words"
  VERSION = "1.0"
  OUTPUT = @["word_length", "n_seen"]
  PARAMETERS = @[("label", "String(8)", "n", "prefix of the log line")]

exportpy_consts(ID, VERSION, OUTPUT, PARAMETERS)

proc py_const_INPUT(): string {.exportpy.} = "a word"

type State = ref object
  count: int

proc initialize(): State {.exportpy.} =
  State(count: 0)

proc compute(word: string, state: State, label = "n"):
             tuple[results: (int, int), logs: seq[string]] {.exportpy.} =
  state.count += 1
  result.results = (word.len, state.count)
  result.logs = @[label & " " & $state.count]

proc compute_id(name: string): string {.exportpy.} =
  "n_" & name.split('.')[0].toUpperAscii

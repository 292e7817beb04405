## GC content and length of the sequences of a FASTA file (plain or gzipped).
##
## The Nim twin of plugins/gc_content.py, with identical results: the file
## is read in 64 KiB blocks and each sequence byte is classified through a
## 256-entry lookup table. Gzipped files (``.gz`` suffix) are read through
## zlib, loaded from libz.so.1 when the first gzipped file comes (a missing
## zlib then fails that entity, not the plugin).

import std/[dynlib, math, strutils]
import nimpy

const
  ID = "gc_content_nim"
  VERSION = "1.0.0"
  INPUT = "path to a FASTA file (plain, or gzipped with a .gz suffix)"
  OUTPUT = @["gc_content", "genome_size"]
  METHOD = "counts G, C, A and T (any case) over all sequence lines; GC content = (G+C)/(A+C+G+T)"
  IMPLEMENTATION = "Nim; 64 KiB blocks, one lookup in a 256-entry table per byte; zlib (libz.so.1) for .gz"
  REQ_SOFTWARE = "nim >= 1.6 (to build); zlib (libz.so.1) for gzipped input"
  PARAMETERS = @[("digits", "Integer", "4", "decimal digits the GC content is rounded to")]

exportpy_consts(ID, VERSION, INPUT, OUTPUT, METHOD, IMPLEMENTATION, REQ_SOFTWARE, PARAMETERS)

const
  BlockSize = 1 shl 16
  ## table entry: 1 for A/C/G/T (low 32 bits) + 1 shl 32 more for G/C, so one
  ## addition per byte counts both; a block (64 KiB) cannot overflow the low half
  BaseTable = block:
    var t: array[256, uint64]
    for c in "ACGTacgt": t[ord(c)] = 1
    for c in "GCgc": t[ord(c)] += 1'u64 shl 32
    t

type
  Counts = object
    gc, acgt, records: int
    atLineStart, inHeader: bool

  Reader = proc (buf: pointer, size: int): int
    ## reads up to ``size`` bytes; 0 at the end

proc c_memchr(s: pointer, c: cint, n: csize_t): pointer {.importc: "memchr", header: "<string.h>".}

proc countBlock(counts: var Counts, buf: ptr UncheckedArray[char], n: int) =
  ## Add the bases of one block; header lines (starting with '>') are skipped,
  ## even when a line spans two blocks.
  var i = 0
  while i < n:
    if counts.atLineStart:
      counts.atLineStart = false
      counts.inHeader = buf[i] == '>'
      if counts.inHeader: inc counts.records
    let newline = c_memchr(buf[i].addr, cint('\n'), csize_t(n - i))
    let stop = if newline.isNil: n else: cast[int](newline) - cast[int](buf)
    if not counts.inHeader:
      var packed = 0'u64
      for j in i ..< stop:
        packed += BaseTable[ord(buf[j])]
      counts.acgt += int(packed and 0xFFFF_FFFF'u64)
      counts.gc += int(packed shr 32)
    if newline.isNil:
      i = n
    else:
      i = stop + 1
      counts.atLineStart = true

proc countAll(read: Reader): Counts =
  result.atLineStart = true
  var buf = newString(BlockSize)
  while true:
    let n = read(buf[0].addr, BlockSize)
    if n <= 0: break
    countBlock(result, cast[ptr UncheckedArray[char]](buf[0].addr), n)

# ---------------------------------------------------------------- input

proc countPlain(path: string): Counts =
  var f: File
  if not open(f, path):
    raise newException(IOError, "cannot open " & path)
  defer: f.close()
  result = countAll(proc (buf: pointer, size: int): int = readBuffer(f, buf, size))

type
  GzFile = pointer
  GzOpen = proc (path: cstring, mode: cstring): GzFile {.cdecl, gcsafe.}
  GzRead = proc (file: GzFile, buf: pointer, len: cuint): cint {.cdecl, gcsafe.}
  GzClose = proc (file: GzFile): cint {.cdecl, gcsafe.}
  GzError = proc (file: GzFile, errnum: ptr cint): cstring {.cdecl, gcsafe.}
  GzBuffer = proc (file: GzFile, size: cuint): cint {.cdecl, gcsafe.}
  Zlib = object
    loaded: bool
    open: GzOpen
    read: GzRead
    close: GzClose
    error: GzError
    buffer: GzBuffer

var zlib: Zlib

proc loadZlib(): Zlib =
  if zlib.loaded: return zlib
  let lib = loadLib("libz.so.1")
  if lib.isNil:
    raise newException(LibraryError, "cannot load libz.so.1 (zlib) to read gzipped input")
  zlib = Zlib(loaded: true,
              open: cast[GzOpen](lib.checkedSymAddr("gzopen")),
              read: cast[GzRead](lib.checkedSymAddr("gzread")),
              close: cast[GzClose](lib.checkedSymAddr("gzclose")),
              error: cast[GzError](lib.checkedSymAddr("gzerror")),
              buffer: cast[GzBuffer](lib.checkedSymAddr("gzbuffer")))
  zlib

proc countGzipped(path: string): Counts =
  let z = loadZlib()
  let gz = z.open(path.cstring, "rb")
  if gz.isNil:
    raise newException(IOError, "cannot open " & path)
  defer: discard z.close(gz)
  discard z.buffer(gz, cuint(BlockSize))
  result = countAll(proc (buf: pointer, size: int): int =
    result = int(z.read(gz, buf, cuint(size)))
    if result < 0:
      var errnum: cint
      raise newException(IOError, path & ": " & $z.error(gz, errnum.addr)))

# ---------------------------------------------------------------- compute

proc roundLikePython(x: float, digits: int): float =
  ## Python's round(x, digits): the decimal closest to x's exact value (ties to
  ## even, as printf rounds), read back as the nearest float.
  if digits >= 0:
    parseFloat(formatFloat(x, ffDecimal, digits))
  else:
    let scale = pow(10.0, float(-digits))
    let y = x / scale
    var r = round(y)
    if abs(y - trunc(y)) == 0.5 and r mod 2 != 0: r -= copySign(1.0, y)
    r * scale

proc compute(entity: string, digits: int = 4):
             tuple[results: (float, int), logs: seq[string]] {.exportpy.} =
  let counts = if entity.endsWith(".gz"): countGzipped(entity) else: countPlain(entity)
  result.logs = @["records\t" & $counts.records]
  if counts.acgt == 0:
    result.logs.add "warning\tno A, C, G or T in the file"
    result.results = (0.0, 0)
  else:
    result.results = (roundLikePython(counts.gc / counts.acgt, digits), counts.acgt)

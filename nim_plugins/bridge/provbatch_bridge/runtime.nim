## Runtime of provbatch's Nim bridge (see docs/nim-plugins.md).
##
## The ``exportpy`` macro of our ``nimpy`` module turns each exported proc
## into a C function ``pbx_<name>(args: cstring): cstring``. The Python side
## (provbatch/multiplug/nim_library.py) calls it through ctypes with the
## arguments as a JSON object (by parameter name) and gets back JSON:
## ``{"ok": <value>}`` or ``{"error": {"type": <Nim exception name>, "msg": ...}}``.
##
## Wire format of values (Nim -> JSON -> Python):
## string/char/enum -> string, integers -> number, floats -> number written
## round-trip exact (NaN/Infinity as Python's json reads them), bool -> bool,
## seq/array -> array, tuple (named or not) -> array (Python gets a tuple:
## the descriptor tells it where tuples are), object -> object (dict),
## JsonNode -> itself, ``ref`` (a plugin state) -> ``{"$nimref": id, "type": T}``,
## an opaque handle. The ref is kept alive (GC_ref) in a table until the
## Python side releases the handle (after finalize, or when the Python
## object is collected).
##
## Memory: a returned string lives in a buffer of the library, valid until
## the next call into the library; the Python side copies it at once and
## serializes calls with a lock (the library is built with threads off).

import std/[json, tables, typetraits]
import system/formatfloat

const BridgeProtocol* = 1
  ## bumped when the wire format or the exported C functions change

type
  BridgeArgumentError* = object of ValueError
    ## an argument is missing or has the wrong type (Python gets a TypeError)

  HandleEntry = object
    p: pointer
    typeName: string
    release: proc (p: pointer) {.nimcall.}

  ParamInfo* = object
    name*, typeName*, defaultRepr*: string
    hasDefault*, isRef*: bool
    default*: JsonNode

  ProcInfo = object
    name, symbol, returnType: string
    params: seq[ParamInfo]
    returns: JsonNode

var
  handles = initTable[int64, HandleEntry]()
  nextHandle: int64 = 1
  registry: seq[ProcInfo]
  outBuf: string

# ---------------------------------------------------------------- handles

proc releaseRef[T](p: pointer) {.nimcall.} =
  GC_unref(cast[T](p))

proc newHandle[T: ref](v: T): int64 =
  ## Keep ``v`` alive until the handle is released; return the handle.
  GC_ref(v)
  result = nextHandle
  inc nextHandle
  handles[result] = HandleEntry(p: cast[pointer](v), typeName: name(T), release: releaseRef[T])

proc lookupHandle[T: ref](id: int64, path: string): T =
  if id notin handles:
    raise newException(BridgeArgumentError,
      path & ": Nim state handle " & $id & " is unknown (released already, or from another process)")
  let entry = handles[id]
  if entry.typeName != name(T):
    raise newException(BridgeArgumentError,
      path & ": expected a " & name(T) & " state, got a " & entry.typeName)
  result = cast[T](entry.p)

# ---------------------------------------------------------------- Nim -> JSON

proc writeFloat(s: var string, x: float) =
  if x != x: s.add "NaN"
  elif x == Inf: s.add "Infinity"
  elif x == NegInf: s.add "-Infinity"
  else: s.addFloatRoundtrip(x)

proc writeJ*[T](s: var string, v: T) =
  ## Append the JSON form of ``v`` to ``s`` (see the wire format above).
  when T is JsonNode:
    if v.isNil: s.add "null" else: s.toUgly(v)
  elif T is string:
    escapeJson(v, s)
  elif T is cstring:
    if v.isNil: s.add "null" else: escapeJson($v, s)
  elif T is char or T is enum:
    escapeJson($v, s)
  elif T is bool:
    s.add(if v: "true" else: "false")
  elif T is SomeInteger:
    s.add $v
  elif T is SomeFloat:
    writeFloat(s, float(v))
  elif T is seq or T is array:
    s.add '['
    var first = true
    for x in v:
      if not first: s.add ','
      first = false
      writeJ(s, x)
    s.add ']'
  elif T is tuple:
    s.add '['
    var first = true
    for x in fields(v):
      if not first: s.add ','
      first = false
      writeJ(s, x)
    s.add ']'
  elif T is object:
    s.add '{'
    var first = true
    for key, x in fieldPairs(v):
      if not first: s.add ','
      first = false
      escapeJson(key, s)
      s.add ':'
      writeJ(s, x)
    s.add '}'
  elif T is ref:
    if v.isNil:
      s.add "null"
    else:
      s.add "{\"$nimref\":"
      s.add $newHandle(v)
      s.add ",\"type\":"
      escapeJson(name(T), s)
      s.add '}'
  else:
    {.error: "provbatch nimpy bridge: values of type " & $T &
             " cannot be passed to Python (use string, int, float, bool, seq, tuple, object or a ref state)".}

proc toJsonNode*[T](v: T): JsonNode =
  ## ``v`` as a JsonNode (used for the defaults shown in the descriptor).
  var s = ""
  writeJ(s, v)
  parseJson(s)

# ---------------------------------------------------------------- JSON -> Nim

proc describe(n: JsonNode): string =
  if n.isNil: return "nothing"
  case n.kind
  of JNull: "None"
  of JBool: "a bool"
  of JInt: "an integer"
  of JFloat: "a float"
  of JString: "a string"
  of JArray: "a list"
  of JObject: "a dict"

proc wrongType(path, expected: string, n: JsonNode) {.noreturn.} =
  raise newException(BridgeArgumentError, path & ": expected " & expected & ", got " & describe(n))

proc readJ*[T](n: JsonNode, dst: var T, path: string) =
  ## Convert ``n`` into ``dst``; ``path`` names the argument in error messages.
  when T is JsonNode:
    dst = n
  elif T is string:
    if n.kind != JString: wrongType(path, "a string", n)
    dst = n.str
  elif T is char:
    if n.kind != JString or n.str.len != 1: wrongType(path, "a one-character string", n)
    dst = n.str[0]
  elif T is enum:
    if n.kind != JString: wrongType(path, "the name of a " & name(T), n)
    var found = false
    for e in T:
      if $e == n.str:
        dst = e
        found = true
    if not found:
      raise newException(BridgeArgumentError, path & ": '" & n.str & "' is not a " & name(T))
  elif T is bool:
    if n.kind != JBool: wrongType(path, "a bool", n)
    dst = n.bval
  elif T is SomeInteger:
    if n.kind != JInt: wrongType(path, "an integer", n)
    dst = T(n.num)
  elif T is SomeFloat:
    case n.kind
    of JFloat: dst = T(n.fnum)
    of JInt: dst = T(n.num)
    else: wrongType(path, "a number", n)
  elif T is seq:
    if n.kind != JArray: wrongType(path, "a list", n)
    dst.setLen(n.elems.len)
    for i in 0 ..< n.elems.len:
      readJ(n.elems[i], dst[i], path & "[" & $i & "]")
  elif T is array:
    if n.kind != JArray or n.elems.len != dst.len:
      wrongType(path, "a list of " & $dst.len, n)
    var i = 0
    for x in dst.mitems:
      readJ(n.elems[i], x, path & "[" & $i & "]")
      inc i
  elif T is tuple:
    var count = 0
    for x in fields(dst): inc count
    if n.kind != JArray or n.elems.len != count:
      wrongType(path, "a list of " & $count, n)
    var i = 0
    for x in fields(dst):
      readJ(n.elems[i], x, path & "[" & $i & "]")
      inc i
  elif T is object:
    if n.kind != JObject: wrongType(path, "a dict", n)
    for key, x in fieldPairs(dst):
      if n.hasKey(key):
        readJ(n[key], x, path & "." & key)
  elif T is ref:
    if n.kind == JNull:
      dst = nil
    elif n.kind == JObject and n.hasKey("$nimref") and n["$nimref"].kind == JInt:
      dst = lookupHandle[T](n["$nimref"].num, path)
    else:
      wrongType(path, "a Nim state handle", n)
  else:
    {.error: "provbatch nimpy bridge: parameters of type " & $T &
             " cannot come from Python (use string, int, float, bool, seq, tuple, object or a ref state)".}

# ---------------------------------------------------------------- shapes

proc shapeOf*[T](): JsonNode =
  ## Where the value of type T holds tuples and handles, for the Python side:
  ## "a" plain JSON value, "r" handle, {"s": elem} list, {"t": [fields]} tuple,
  ## {"o": {field: shape}} object.
  when T is JsonNode or T is string or T is cstring or T is char or T is enum or
       T is bool or T is SomeNumber:
    result = %"a"
  elif T is seq or T is array:
    result = %*{"s": shapeOf[typeof(default(T)[0])]()}
  elif T is tuple:
    var fieldShapes = newJArray()
    var x: T
    for f in fields(x):
      fieldShapes.add shapeOf[typeof(f)]()
    result = %*{"t": fieldShapes}
  elif T is object:
    var fieldShapes = newJObject()
    var x: T
    for key, f in fieldPairs(x):
      fieldShapes[key] = shapeOf[typeof(f)]()
    result = %*{"o": fieldShapes}
  elif T is ref:
    result = %"r"
  else:
    result = %"a"

# ---------------------------------------------------------------- wrappers' helpers

proc bridgeParseArgs*(raw: cstring): JsonNode =
  result = if raw.isNil: newJObject() else: parseJson($raw)
  if result.kind != JObject:
    raise newException(BridgeArgumentError, "arguments must be a JSON object")

proc bridgeArg*[T](args: JsonNode, paramName: string, dst: var T) =
  ## Read a required argument.
  if not args.hasKey(paramName):
    raise newException(BridgeArgumentError, "missing required argument '" & paramName & "'")
  readJ(args[paramName], dst, paramName)

proc bridgeOptArg*[T](args: JsonNode, paramName: string, dst: var T): bool =
  ## Read an optional argument; false when absent (the wrapper then uses the default).
  if not args.hasKey(paramName):
    return false
  readJ(args[paramName], dst, paramName)
  true

proc bridgeOk*[T](v: T): cstring =
  outBuf.setLen(0)
  outBuf.add "{\"ok\":"
  writeJ(outBuf, v)
  outBuf.add '}'
  result = outBuf.cstring

proc bridgeOkVoid*(): cstring =
  outBuf = "{\"ok\":null}"
  result = outBuf.cstring

proc bridgeErr*(e: ref Exception): cstring =
  outBuf.setLen(0)
  outBuf.add "{\"error\":{\"type\":"
  escapeJson($e.name, outBuf)
  outBuf.add ",\"msg\":"
  escapeJson(e.msg, outBuf)
  outBuf.add ",\"argument\":"
  outBuf.add(if e of BridgeArgumentError: "true" else: "false")
  outBuf.add "}}"
  result = outBuf.cstring

proc bridgeParam*[T](paramName: string, hasDefault: bool, default: JsonNode, defaultRepr: string): ParamInfo =
  ParamInfo(name: paramName, typeName: name(T), hasDefault: hasDefault, default: default,
            defaultRepr: defaultRepr, isRef: T is ref and T isnot JsonNode)

template bridgeDefault*(d: untyped): JsonNode =
  ## The default's value as JSON when it can be computed at load time
  ## (a literal or a constant), else nil (e.g. a default naming another parameter).
  block:
    var r: JsonNode = nil
    when compiles(toJsonNode(d)):
      r = toJsonNode(d)
    r

proc bridgeRegister*(name, symbol: string, params: seq[ParamInfo], returns: JsonNode, returnType: string) =
  registry.add ProcInfo(name: name, symbol: symbol, params: params, returns: returns, returnType: returnType)

# ---------------------------------------------------------------- exported C functions

var describeBuf: string

proc provbatch_bridge_describe(): cstring {.cdecl, exportc, dynlib.} =
  ## JSON list of the exported procs, with their parameters and return shapes.
  var procs = newJArray()
  for p in registry:
    var params = newJArray()
    for q in p.params:
      params.add %*{"name": q.name, "type": q.typeName, "has_default": q.hasDefault,
                    "default": (if q.default.isNil: newJNull() else: q.default),
                    "default_known": not q.default.isNil,
                    "default_repr": q.defaultRepr, "ref": q.isRef}
    procs.add %*{"name": p.name, "symbol": p.symbol, "params": params,
                 "returns": p.returns, "return_type": p.returnType}
  describeBuf = $(%*{"protocol": BridgeProtocol, "nim_version": NimVersion, "procs": procs})
  result = describeBuf.cstring

proc provbatch_bridge_release(handle: int64): cint {.cdecl, exportc, dynlib.} =
  ## Drop the reference a handle holds; 1 if it existed, 0 otherwise.
  var entry: HandleEntry
  if handles.pop(handle, entry):
    entry.release(entry.p)
    result = 1

proc provbatch_bridge_live_handles(): int64 {.cdecl, exportc, dynlib.} =
  ## How many handles are alive (lets tests check that finalize released the state).
  handles.len.int64

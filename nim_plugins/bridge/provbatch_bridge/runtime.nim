## Runtime of provbatch's native Nim bridge (see docs/nim-plugins.md).
##
## A plugin built with our ``nimpy`` is a CPython extension module: its
## ``PyInit_<module>`` (in nimpy.nim) calls ``bridgeCreateModule``, which turns
## every proc registered by ``exportpy`` into a built-in function
## (METH_FASTCALL | METH_KEYWORDS). A call binds the arguments here, converts
## them from Python objects to Nim values, runs the proc with the GIL
## released, and converts the result to Python objects: no JSON, no ctypes.
##
## Values, Nim <-> Python: string, char, enum (by name) <-> str; integers <-> int;
## floats <-> float (an int is accepted too); bool <-> bool; seq/array <-> list (a
## tuple or set is accepted); tuple <-> tuple (a list is accepted); object <->
## dict by field name; Table/OrderedTable <-> dict; JsonNode <-> its Python value;
## a ``ref`` (a plugin state) -> an opaque handle, a capsule holding the ref
## (GC_ref'd until the capsule is freed), wrapped in provbatch's NimRef class when
## the Python side has configured it.
##
## Concurrency: the library is built with threads off, so Nim code of one
## library runs in one thread at a time, guarded by ``nimLock``. A call takes the
## lock while holding the GIL (releasing the GIL while it waits: a thread that
## holds the GIL never blocks on the lock), converts the arguments, releases the
## GIL for the proc itself (Python threads go on: a progress bar, the worker's
## timeout watchdog; alone in the interpreter, a call keeps the GIL: nobody
## could take it), takes the GIL back and converts the result. A capsule freed
## by Python while another thread runs Nim code (it holds the lock) is released
## at the next call instead.

import std/[json, tables, typetraits]
import pyapi
export pyapi

const BridgeProtocol* = 2
  ## bumped when the module's private functions or their meaning change

type
  BridgeArgumentError* = object of ValueError
    ## an argument has the wrong type or is missing (Python gets a TypeError)
  BridgeRangeError* = object of BridgeArgumentError
    ## an integer does not fit the Nim type (Python gets an OverflowError)
  BridgeBindError* = object of BridgeArgumentError
    ## the arguments do not bind to the parameters ("compute() got an unexpected ...")

  ParamInfo* = object
    name*, typeName*, defaultRepr*: string
    hasDefault*: bool
    defaultValue*: proc (): PPyObject {.closure.}
      ## the default as a Python object (called once, at import); nil when it
      ## cannot be computed outside a call (it names another parameter)

  ProcInfo* = object
    name*, returnType*: string
    params*: seq[ParamInfo]
    wrapper*: PyFastCall
    pyNames: seq[PPyObject]   # interned parameter names, filled at import
    tolerated: seq[PPyObject] # keywords dropped silently (compute <-> initialize)

  DeferredRelease = object
    p: pointer
    release: proc (p: pointer) {.nimcall.}
    next: ptr DeferredRelease

var
  registry*: seq[ProcInfo]
  errorFactory: PPyObject   # provbatch's nim_error(nim_type, message) -> exception
  refClass: PPyObject       # provbatch's NimRef(library, capsule, type_name, handle)
  refLibrary: PPyObject     # the Python object passed to refClass (the NimLibrary)
  capsuleAttr: PPyObject    # "capsule", the NimRef attribute holding the capsule
  libraryToken: int         # its address marks this library's capsules
  liveRefs: int             # refs held for Python (tests check finalize releases them)
  nextHandle = 1
  deferred: ptr DeferredRelease
  lockHeld: bool
  lockOwner: culong

# ---------------------------------------------------------------- the library lock

{.emit: """/*VARSECTION*/
#include <pthread.h>
static pthread_mutex_t pbxNimLock = PTHREAD_MUTEX_INITIALIZER;
static PyModuleDef pbxModuleDef = { PyModuleDef_HEAD_INIT, NULL, NULL, -1, NULL };
static int pbxLockTry(void) { return pthread_mutex_trylock(&pbxNimLock); }
static int pbxLockWait(void) { return pthread_mutex_lock(&pbxNimLock); }
static int pbxLockRelease(void) { return pthread_mutex_unlock(&pbxNimLock); }
""".}

proc lockTry(): cint {.importc: "pbxLockTry", nodecl.}
proc lockWait(): cint {.importc: "pbxLockWait", nodecl.}
proc lockRelease(): cint {.importc: "pbxLockRelease", nodecl.}
var pbxModuleDef {.importc, nodecl.}: PyModuleDef

proc c_malloc(size: csize_t): pointer {.importc: "malloc", header: "<stdlib.h>".}
proc c_calloc(n, size: csize_t): pointer {.importc: "calloc", header: "<stdlib.h>".}
proc c_free(p: pointer) {.importc: "free", header: "<stdlib.h>".}

proc ownsLock(): bool {.inline.} =
  lockHeld and lockOwner == PyThread_get_thread_ident()

proc drainDeferred() =
  while deferred != nil:
    let node = deferred
    deferred = node.next
    node.release(node.p)
    c_free(node)

proc bridgeEnter*(): bool =
  ## Take the library lock (with the GIL held); false with a Python error set
  ## when this thread holds it already (a re-entrant call from a Python callback).
  if lockTry() != 0:
    if ownsLock():
      PyErr_SetString(PyExc_RuntimeError, "a Nim plugin was called again from inside one of its own calls")
      return false
    let saved = PyEval_SaveThread()
    discard lockWait()
    PyEval_RestoreThread(saved)
  lockOwner = PyThread_get_thread_ident()
  lockHeld = true
  if deferred != nil: drainDeferred()
  true

proc bridgeReleaseGil*(): ptr PyThreadState {.inline.} =
  ## Release the GIL for the proc when another Python thread exists (it may run
  ## meanwhile: a progress bar, a worker's timeout watchdog); nil when this is the
  ## only thread of the interpreter: nobody could take the GIL, releasing it would
  ## only cost time. A thread created during the call waits for the GIL until it ends.
  if PyThreadState_Next(PyInterpreterState_ThreadHead(PyInterpreterState_Get())) != nil:
    PyEval_SaveThread()
  else:
    nil

proc bridgeLeave*() =
  lockHeld = false
  discard lockRelease()

# ---------------------------------------------------------------- refs

proc releaseRef[T](p: pointer) {.nimcall.} =
  GC_unref(cast[T](p))
  dec liveRefs

proc refDestructor[T](capsule: PPyObject) {.cdecl.} =
  ## Python freed the capsule: drop the reference it held (now, or at the next call).
  let p = PyCapsule_GetPointer(capsule, PyCapsule_GetName(capsule))
  if p == nil:
    PyErr_Clear()
    return
  if ownsLock():
    releaseRef[T](p)
  elif lockTry() == 0:
    lockOwner = PyThread_get_thread_ident()
    lockHeld = true
    releaseRef[T](p)
    lockHeld = false
    discard lockRelease()
  else:  # another thread runs Nim code: the GIL protects the list, the next call releases
    let node = cast[ptr DeferredRelease](c_malloc(csize_t(sizeof(DeferredRelease))))
    node.p = p
    node.release = releaseRef[T]
    node.next = deferred
    deferred = node

proc pointerToRef[T](p: pointer): T =
  ## The ref behind a capsule's pointer, as a counted reference of the caller.
  cast[T](p)

# ---------------------------------------------------------------- Nim -> Python

proc pyStr*(s: string): PPyObject {.inline.} =
  ## A Python str of Nim bytes: UTF-8, with undecodable bytes as lone surrogates
  ## (surrogateescape: they come back as the same bytes).
  PyUnicode_DecodeUTF8(cstring(s), Py_ssize_t(s.len), "surrogateescape")

proc jsonToPy(n: JsonNode): PPyObject =
  if n.isNil: return pyNewRef(Py_None)
  case n.kind
  of JNull: result = pyNewRef(Py_None)
  of JBool: result = pyNewRef(if n.bval: Py_True else: Py_False)
  of JInt: result = PyLong_FromLongLong(clonglong(n.num))
  of JFloat: result = PyFloat_FromDouble(cdouble(n.fnum))
  of JString: result = pyStr(n.str)
  of JArray:
    result = PyList_New(Py_ssize_t(n.elems.len))
    if result == nil: return
    for i, x in n.elems:
      let item = jsonToPy(x)
      if item == nil:
        Py_DECREF(result)
        return nil
      PyList_SET_ITEM(result, Py_ssize_t(i), item)
  of JObject:
    result = PyDict_New()
    if result == nil: return
    for key, value in n.fields:
      let item = jsonToPy(value)
      let k = pyStr(key)
      if item == nil or k == nil or PyDict_SetItem(result, k, item) != 0:
        Py_XDECREF(item)
        Py_XDECREF(k)
        Py_DECREF(result)
        return nil
      Py_DECREF(k)
      Py_DECREF(item)

proc refToPy[T](v: T): PPyObject =
  if v.isNil: return pyNewRef(Py_None)
  const typeName = name(T)
  GC_ref(v)
  let capsule = PyCapsule_New(cast[pointer](v), cstring(typeName), refDestructor[T])
  if capsule == nil:
    GC_unref(v)
    return nil
  inc liveRefs
  discard PyCapsule_SetContext(capsule, libraryToken.addr)
  let handle = nextHandle
  inc nextHandle
  if refClass == nil:  # imported outside provbatch: the capsule is the handle
    return capsule
  let typeObj = pyStr(typeName)
  let handleObj = PyLong_FromLongLong(clonglong(handle))
  if typeObj != nil and handleObj != nil:
    result = PyObject_CallFunctionObjArgs(refClass, refLibrary, capsule, typeObj, handleObj, nil)
  Py_XDECREF(typeObj)
  Py_XDECREF(handleObj)
  Py_DECREF(capsule)

proc toPy*[T](v: T): PPyObject =
  ## A new reference to the Python value of ``v``; nil with a Python error set.
  when T is JsonNode:
    result = jsonToPy(v)
  elif T is string:
    result = pyStr(v)
  elif T is cstring:
    result = if v.isNil: pyNewRef(Py_None) else: pyStr($v)
  elif T is char:
    result = pyStr($v)
  elif T is enum:
    result = pyStr($v)
  elif T is bool:
    result = pyNewRef(if v: Py_True else: Py_False)
  elif T is SomeUnsignedInt:
    result = PyLong_FromUnsignedLongLong(culonglong(v))
  elif T is SomeSignedInt:
    result = PyLong_FromLongLong(clonglong(v))
  elif T is SomeFloat:
    result = PyFloat_FromDouble(cdouble(v))
  elif T is seq or T is array:
    result = PyList_New(Py_ssize_t(v.len))
    if result == nil: return
    var i = 0
    for x in v:
      let item = toPy(x)
      if item == nil:
        Py_DECREF(result)
        return nil
      PyList_SET_ITEM(result, Py_ssize_t(i), item)
      inc i
  elif T is tuple:
    var count = 0
    for _ in fields(v): inc count
    result = PyTuple_New(Py_ssize_t(count))
    if result == nil: return
    var i = 0
    for x in fields(v):
      let item = toPy(x)
      if item == nil:
        Py_DECREF(result)
        return nil
      PyTuple_SET_ITEM(result, Py_ssize_t(i), item)
      inc i
  elif T is Table or T is OrderedTable:
    result = PyDict_New()
    if result == nil: return
    for key, value in v.pairs:
      let k = toPy(key)
      let item = toPy(value)
      if k == nil or item == nil or PyDict_SetItem(result, k, item) != 0:
        Py_XDECREF(k)
        Py_XDECREF(item)
        Py_DECREF(result)
        return nil
      Py_DECREF(k)
      Py_DECREF(item)
  elif T is object:
    result = PyDict_New()
    if result == nil: return
    for key, x in fieldPairs(v):
      let item = toPy(x)
      if item == nil or PyDict_SetItemString(result, cstring(key), item) != 0:
        Py_XDECREF(item)
        Py_DECREF(result)
        return nil
      Py_DECREF(item)
  elif T is ref:
    result = refToPy(v)
  else:
    {.error: "provbatch nimpy bridge: values of type " & $T &
             " cannot be passed to Python (use string, int, float, bool, seq, tuple, object, Table or a ref state)".}

# ---------------------------------------------------------------- Python -> Nim

proc pyTypeName(o: PPyObject): string =
  $Py_TYPE(o).tp_name

proc describe(o: PPyObject): string =
  ## How the old bridge named a value in its messages (JSON words).
  if o == Py_None: "None"
  elif PyBool_Check(o) != 0: "a bool"
  elif PyLong_Check(o) != 0: "an integer"
  elif PyFloat_Check(o) != 0: "a float"
  elif PyUnicode_Check(o) != 0: "a string"
  elif PyList_Check(o) != 0 or PyTuple_Check(o) != 0: "a list"
  elif PyDict_Check(o) != 0: "a dict"
  else: "a " & pyTypeName(o)

proc wrongType(path, expected: string, o: PPyObject) {.noreturn.} =
  raise newException(BridgeArgumentError, path & ": expected " & expected & ", got " & describe(o))

proc pyError(): string =
  ## The pending Python error's message, cleared (for an argument that failed to convert).
  let err = PyErr_Occurred()
  result = if err != nil: $cast[PPyTypeObject](err).tp_name else: "error"
  PyErr_Clear()

proc readStr(o: PPyObject, dst: var string) =
  var size: Py_ssize_t
  let data = PyUnicode_AsUTF8AndSize(o, size.addr)
  if data != nil:
    dst = newString(int(size))
    if size > 0: copyMem(dst[0].addr, data, int(size))
    return
  PyErr_Clear()  # lone surrogates: the bytes they stand for (surrogateescape)
  let encoded = PyUnicode_AsEncodedString(o, "utf-8", "surrogateescape")
  if encoded == nil:
    raise newException(BridgeArgumentError, "cannot encode a string as UTF-8: " & pyError())
  let n = int(PyBytes_GET_SIZE(encoded))
  dst = newString(n)
  if n > 0: copyMem(dst[0].addr, PyBytes_AS_STRING(encoded), n)
  Py_DECREF(encoded)

proc fastItems(o: PPyObject, path, expected: string): PPyObject =
  ## A new reference to a list or tuple with the items of ``o`` (a set is listed).
  if PyList_Check(o) != 0 or PyTuple_Check(o) != 0:
    return pyNewRef(o)
  if PyAnySet_Check(o) != 0:
    result = PySequence_List(o)
    if result == nil: raise newException(BridgeArgumentError, path & ": " & pyError())
    return
  wrongType(path, expected, o)

proc itemAt(items: PPyObject, i: int): PPyObject {.inline.} =
  if PyList_Check(items) != 0: PyList_GET_ITEM(items, Py_ssize_t(i))
  else: PyTuple_GET_ITEM(items, Py_ssize_t(i))

proc itemCount(items: PPyObject): int {.inline.} =
  if PyList_Check(items) != 0: int(PyList_GET_SIZE(items))
  else: int(PyTuple_GET_SIZE(items))

proc jsonFromPy(o: PPyObject, path: string): JsonNode =
  if o == Py_None: return newJNull()
  if PyBool_Check(o) != 0: return newJBool(o == Py_True)
  if PyLong_Check(o) != 0:
    let v = PyLong_AsLongLong(o)
    if v == -1 and PyErr_Occurred() != nil:
      PyErr_Clear()
      raise newException(BridgeRangeError, path & ": the integer does not fit in a JSON integer (int64)")
    return newJInt(BiggestInt(v))
  if PyFloat_Check(o) != 0: return newJFloat(float(PyFloat_AS_DOUBLE(o)))
  if PyUnicode_Check(o) != 0:
    var s: string
    readStr(o, s)
    return newJString(s)
  if PyDict_Check(o) != 0:
    result = newJObject()
    var pos: Py_ssize_t
    var k, v: PPyObject
    while PyDict_Next(o, pos.addr, k.addr, v.addr) != 0:
      if PyUnicode_Check(k) == 0: wrongType(path & " key", "a string", k)
      var key: string
      readStr(k, key)
      result[key] = jsonFromPy(v, path & "." & key)
    return
  if PyList_Check(o) != 0 or PyTuple_Check(o) != 0 or PyAnySet_Check(o) != 0:
    let items = fastItems(o, path, "a list")
    defer: Py_DECREF(items)
    result = newJArray()
    for i in 0 ..< itemCount(items):
      result.add jsonFromPy(itemAt(items, i), path & "[" & $i & "]")
    return
  raise newException(BridgeArgumentError, path & ": a " & pyTypeName(o) & " cannot be passed to Nim")

proc refFromPy[T](o: PPyObject, dst: var T, path: string) =
  if o == Py_None:
    dst = nil
    return
  var capsule = o
  var owned = false
  if refClass != nil and PyObject_TypeCheck(o, cast[PPyTypeObject](refClass)) != 0:
    capsule = PyObject_GetAttr(o, capsuleAttr)
    if capsule == nil: raise newException(BridgeArgumentError, path & ": " & pyError())
    owned = true
  defer:
    if owned: Py_DECREF(capsule)
  if capsule == Py_None:
    let r = PyObject_Repr(o)
    var text = "the state"
    if r != nil:
      readStr(r, text)
      Py_DECREF(r)
    else:
      PyErr_Clear()
    raise newException(BridgeArgumentError, path & ": " & text & " was released (finalize was called)")
  if PyCapsule_CheckExact(capsule) == 0:
    wrongType(path, "a Nim state handle", o)
  if PyCapsule_GetContext(capsule) != libraryToken.addr:
    raise newException(BridgeArgumentError, path & ": the state belongs to another Nim library")
  const typeName = name(T)
  let held = $PyCapsule_GetName(capsule)
  if held != typeName:
    raise newException(BridgeArgumentError, path & ": expected a " & typeName & " state, got a " & held)
  dst = pointerToRef[T](PyCapsule_GetPointer(capsule, cstring(typeName)))

proc fromPy*[T](o: PPyObject, dst: var T, path: string) =
  ## Convert ``o`` into ``dst``; ``path`` names the argument in error messages.
  when T is JsonNode:
    dst = jsonFromPy(o, path)
  elif T is string:
    if PyUnicode_Check(o) == 0: wrongType(path, "a string", o)
    readStr(o, dst)
  elif T is char:
    var s: string
    if PyUnicode_Check(o) != 0: readStr(o, s)
    if PyUnicode_Check(o) == 0 or s.len != 1: wrongType(path, "a one-character string", o)
    dst = s[0]
  elif T is enum:
    if PyUnicode_Check(o) == 0: wrongType(path, "the name of a " & name(T), o)
    var s: string
    readStr(o, s)
    var found = false
    for e in T:
      if $e == s:
        dst = e
        found = true
    if not found:
      raise newException(BridgeArgumentError, path & ": '" & s & "' is not a " & name(T))
  elif T is bool:
    if PyBool_Check(o) == 0: wrongType(path, "a bool", o)
    dst = o == Py_True
  elif T is SomeInteger:
    if PyLong_Check(o) == 0 or PyBool_Check(o) != 0: wrongType(path, "an integer", o)
    when T is SomeUnsignedInt:
      let v = PyLong_AsUnsignedLongLong(o)
      if v == high(culonglong) and PyErr_Occurred() != nil:
        PyErr_Clear()
        raise newException(BridgeRangeError, path & ": the integer does not fit in a " & name(T))
      if v > culonglong(high(T)):
        raise newException(BridgeRangeError, path & ": " & $v & " does not fit in a " & name(T))
      dst = T(v)
    else:
      let v = PyLong_AsLongLong(o)
      if v == -1 and PyErr_Occurred() != nil:
        PyErr_Clear()
        raise newException(BridgeRangeError, path & ": the integer does not fit in a " & name(T))
      if v < clonglong(low(T)) or v > clonglong(high(T)):
        raise newException(BridgeRangeError, path & ": " & $v & " does not fit in a " & name(T))
      dst = T(v)
  elif T is SomeFloat:
    if PyFloat_Check(o) != 0:
      dst = T(PyFloat_AS_DOUBLE(o))
    elif PyLong_Check(o) != 0 and PyBool_Check(o) == 0:
      let v = PyLong_AsDouble(o)
      if v == -1.0 and PyErr_Occurred() != nil:
        PyErr_Clear()
        raise newException(BridgeRangeError, path & ": the integer is too large for a float")
      dst = T(v)
    else:
      wrongType(path, "a number", o)
  elif T is seq:
    let items = fastItems(o, path, "a list")
    defer: Py_DECREF(items)
    let n = itemCount(items)
    dst.setLen(n)
    for i in 0 ..< n:
      fromPy(itemAt(items, i), dst[i], path & "[" & $i & "]")
  elif T is array:
    let items = fastItems(o, path, "a list of " & $dst.len)
    defer: Py_DECREF(items)
    if itemCount(items) != dst.len: wrongType(path, "a list of " & $dst.len, o)
    var i = 0
    for x in dst.mitems:
      fromPy(itemAt(items, i), x, path & "[" & $i & "]")
      inc i
  elif T is tuple:
    var count = 0
    for _ in fields(dst): inc count
    if (PyList_Check(o) == 0 and PyTuple_Check(o) == 0) or itemCount(o) != count:
      wrongType(path, "a list of " & $count, o)
    var i = 0
    for x in fields(dst):
      fromPy(itemAt(o, i), x, path & "[" & $i & "]")
      inc i
  elif T is Table or T is OrderedTable:
    if PyDict_Check(o) == 0: wrongType(path, "a dict", o)
    var pos: Py_ssize_t
    var k, v: PPyObject
    while PyDict_Next(o, pos.addr, k.addr, v.addr) != 0:
      var key: typeof(default(T).keys)
      fromPy(k, key, path & " key")
      var value: typeof(default(T).values)
      fromPy(v, value, path & "[" & $key & "]")
      dst[key] = value
  elif T is object:
    if PyDict_Check(o) == 0: wrongType(path, "a dict", o)
    for key, x in fieldPairs(dst):
      let item = PyDict_GetItemString(o, cstring(key))
      if item != nil:
        fromPy(item, x, path & "." & key)
  elif T is ref:
    refFromPy(o, dst, path)
  else:
    {.error: "provbatch nimpy bridge: parameters of type " & $T &
             " cannot come from Python (use string, int, float, bool, seq, tuple, object, Table or a ref state)".}

# ---------------------------------------------------------------- calls

proc setError(kind: PPyObject, message: string) =
  let text = pyStr(message)
  if text == nil: return
  PyErr_SetObject(kind, text)
  Py_DECREF(text)

proc bridgeRaise*(e: ref Exception, label: string) =
  ## Set the Python exception for a Nim exception: an argument the bridge refused
  ## is a TypeError (OverflowError for a range), any other one is provbatch's
  ## NimError subclass named after the Nim exception (a RuntimeError outside provbatch).
  if e of BridgeBindError:
    setError(PyExc_TypeError, label & "() " & e.msg)
  elif e of BridgeRangeError:
    setError(PyExc_OverflowError, label & "(): " & e.msg)
  elif e of BridgeArgumentError:
    setError(PyExc_TypeError, label & "(): " & e.msg)
  elif errorFactory == nil:
    setError(PyExc_RuntimeError, $e.name & ": " & e.msg)
  else:
    let kind = pyStr($e.name)
    let message = pyStr(e.msg)
    if kind != nil and message != nil:
      let exc = PyObject_CallFunctionObjArgs(errorFactory, kind, message, nil)
      if exc != nil:
        PyErr_SetObject(cast[PPyObject](Py_TYPE(exc)), exc)
        Py_DECREF(exc)
    Py_XDECREF(kind)
    Py_XDECREF(message)

proc nameIndex(info: ptr ProcInfo, key: PPyObject): int =
  for i in 0 ..< info.pyNames.len:
    if info.pyNames[i] == key: return i  # the caller's keyword is the interned name
  for i in 0 ..< info.pyNames.len:
    if PyUnicode_Compare(info.pyNames[i], key) == 0: return i
  -1

proc isTolerated(info: ptr ProcInfo, key: PPyObject): bool =
  for i in 0 ..< info.tolerated.len:
    if info.tolerated[i] == key or PyUnicode_Compare(info.tolerated[i], key) == 0: return true
  false

proc bridgeBind*(index: int, args: PyArgs, nargs: Py_ssize_t, kwnames: PPyObject,
                 slots: var openArray[PPyObject]) =
  ## Bind positional and keyword arguments to the parameters, as Python does:
  ## ``slots[i]`` is the argument of parameter i (borrowed), nil if not given.
  let info = registry[index].addr
  let count = info.params.len
  if int(nargs) > count:
    raise newException(BridgeBindError, "takes " & $count & " positional argument(s) but " & $nargs & " were given")
  for i in 0 ..< int(nargs):
    slots[i] = args[i]
  if kwnames != nil:
    for k in 0 ..< int(PyTuple_GET_SIZE(kwnames)):
      let key = PyTuple_GET_ITEM(kwnames, Py_ssize_t(k))
      let at = nameIndex(info, key)
      if at >= 0:
        if slots[at] != nil:
          raise newException(BridgeBindError, "got multiple values for argument '" & info.params[at].name & "'")
        slots[at] = args[int(nargs) + k]
      elif not isTolerated(info, key):
        var keyName: string
        readStr(key, keyName)
        var accepted = ""
        for p in info.params:
          if accepted.len > 0: accepted.add ", "
          accepted.add p.name
        if accepted.len == 0: accepted = "no arguments"
        raise newException(BridgeBindError, "got an unexpected keyword argument '" & keyName &
                           "' (the Nim proc accepts: " & accepted & ")")
  var missing = ""
  for i in 0 ..< count:  # by index: no copy of the ParamInfo
    if slots[i] == nil and not info.params[i].hasDefault:
      if missing.len > 0: missing.add ", "
      missing.add info.params[i].name
  if missing.len > 0:
    raise newException(BridgeBindError, "missing required argument(s): " & missing)

proc bridgeReleaseRefs*(slots: openArray[PPyObject]) =
  ## After finalize: drop the references the NimRef arguments hold.
  if refClass == nil: return
  for o in slots:
    if o != nil and PyObject_TypeCheck(o, cast[PPyTypeObject](refClass)) != 0:
      if PyObject_SetAttr(o, capsuleAttr, Py_None) != 0: PyErr_Clear()

# ---------------------------------------------------------------- registration

proc bridgeParam*[T](paramName: string, hasDefault: bool, defaultValue: proc (): PPyObject {.closure.},
                     defaultRepr: string): ParamInfo =
  ParamInfo(name: paramName, typeName: name(T), hasDefault: hasDefault,
            defaultValue: defaultValue, defaultRepr: defaultRepr)

template bridgeDefault*(d, T: untyped): proc (): PPyObject {.closure.} =
  ## The default (of type T) as a Python object, made at import, when it can be
  ## computed outside a call (a literal or a constant); else nil.
  block:
    var r: proc (): PPyObject {.closure.} = nil
    when compiles((let k: T = d; toPy(k))):
      let known: T = d
      r = proc (): PPyObject = toPy(known)
    r

proc bridgeRegister*(name: string, wrapper: PyFastCall, params: seq[ParamInfo], returnType: string): int =
  registry.add ProcInfo(name: name, wrapper: wrapper, params: params, returnType: returnType)
  registry.len - 1

# ---------------------------------------------------------------- the module

proc cCopy(s: string): cstring =
  ## A C string that lives as long as the process (names and docs of the module's functions).
  let p = cast[cstring](c_malloc(csize_t(s.len + 1)))
  if s.len > 0: copyMem(p, s[0].unsafeAddr, s.len)
  cast[ptr UncheckedArray[char]](p)[s.len] = '\0'
  p

proc pyRepr(o: PPyObject): string =
  let r = PyObject_Repr(o)
  if r == nil:
    PyErr_Clear()
    return "..."
  readStr(r, result)
  Py_DECREF(r)

proc textSignature(info: ProcInfo, defaults: seq[PPyObject]): string =
  ## The ``__text_signature__`` inspect.signature reads: known defaults by their
  ## Python repr, the others as ``...`` (computed in Nim at each call).
  result = info.name & "("
  for i, p in info.params:
    if i > 0: result.add ", "
    result.add p.name
    if p.hasDefault:
      result.add "="
      result.add(if defaults[i] != nil: pyRepr(defaults[i]) else: "...")
  result.add ")\n--\n\n"

proc docOf(info: ProcInfo): string =
  result = "Nim proc " & info.name & "("
  for i, p in info.params:
    if i > 0: result.add ", "
    result.add p.name & ": " & p.typeName
    if p.hasDefault: result.add " = " & p.defaultRepr
  result.add "): " & info.returnType

var describeCache: PPyObject
var defaultsOf: seq[seq[PPyObject]]

proc pySet(d: PPyObject, key: cstring, value: PPyObject): bool =
  ## d[key] = value, stealing value; false on error
  if value == nil: return false
  result = PyDict_SetItemString(d, key, value) == 0
  Py_DECREF(value)

proc describeModule(): PPyObject =
  ## {protocol, nim_version, procs: [{name, params: [{name, type, has_default, default,
  ## default_known, default_repr}], return_type}]}
  let procs = PyList_New(0)
  if procs == nil: return nil
  for i, info in registry:
    let entry = PyDict_New()
    let params = PyList_New(0)
    var ok = entry != nil and params != nil
    if ok:
      for j, p in info.params:
        let d = PyDict_New()
        if d == nil: (ok = false; break)
        let known = defaultsOf[i][j]
        ok = pySet(d, "name", pyStr(p.name)) and pySet(d, "type", pyStr(p.typeName)) and
             pySet(d, "has_default", toPy(p.hasDefault)) and
             pySet(d, "default", pyNewRef(if known != nil: known else: Py_None)) and
             pySet(d, "default_known", toPy(known != nil)) and
             pySet(d, "default_repr", pyStr(p.defaultRepr)) and PyList_Append(params, d) == 0
        Py_DECREF(d)
        if not ok: break
    ok = ok and pySet(entry, "name", pyStr(info.name)) and pySet(entry, "params", pyNewRef(params)) and
         pySet(entry, "return_type", pyStr(info.returnType)) and PyList_Append(procs, entry) == 0
    Py_XDECREF(params)
    Py_XDECREF(entry)
    if not ok:
      Py_DECREF(procs)
      return nil
  result = PyDict_New()
  if result == nil or not (pySet(result, "protocol", toPy(BridgeProtocol)) and
                           pySet(result, "nim_version", pyStr(NimVersion)) and pySet(result, "procs", procs)):
    Py_XDECREF(result)
    return nil

proc moduleDescribe(self: PPyObject, args: PyArgs, nargs: Py_ssize_t, kwnames: PPyObject): PPyObject {.cdecl.} =
  if not bridgeEnter(): return nil
  try:
    if describeCache == nil: describeCache = describeModule()
    result = if describeCache == nil: nil else: pyNewRef(describeCache)
  except Exception as e:
    bridgeRaise(e, "__provbatch_describe__")
  bridgeLeave()

proc moduleLiveHandles(self: PPyObject, args: PyArgs, nargs: Py_ssize_t, kwnames: PPyObject): PPyObject {.cdecl.} =
  if not bridgeEnter(): return nil  # drains the deferred releases
  result = PyLong_FromLongLong(clonglong(liveRefs))
  bridgeLeave()

proc moduleConfigure(self: PPyObject, args: PyArgs, nargs: Py_ssize_t, kwnames: PPyObject): PPyObject {.cdecl.} =
  ## __provbatch_configure__(error_factory, ref_class, library): how provbatch wants
  ## Nim exceptions and refs to look in Python.
  if nargs != 3 or kwnames != nil:
    PyErr_SetString(PyExc_TypeError, "__provbatch_configure__(error_factory, ref_class, library)")
    return nil
  for i, slot in [errorFactory.addr, refClass.addr, refLibrary.addr]:
    Py_XDECREF(slot[])
    slot[] = pyNewRef(args[i])
  result = pyNewRef(Py_None)

proc bridgeCreateModule*(moduleName: cstring): PPyObject =
  ## The body of ``PyInit_<module>``: the module with one built-in function per exported proc.
  if not bridgeEnter(): return nil
  defer: bridgeLeave()
  try:
    capsuleAttr = PyUnicode_InternFromString("capsule")
    let flags = METH_FASTCALL or METH_KEYWORDS
    let methods = cast[ptr UncheckedArray[PyMethodDef]](c_calloc(csize_t(registry.len + 4), csize_t(sizeof(PyMethodDef))))
    var batchNames: seq[string]
    for info in registry:
      if info.name in ["compute", "initialize"]:
        for p in info.params: batchNames.add p.name
    defaultsOf.setLen(registry.len)
    for i, info in registry.mpairs:
      for p in info.params:
        let name = PyUnicode_InternFromString(cstring(p.name))
        if name == nil: return nil
        info.pyNames.add name
        defaultsOf[i].add(if p.defaultValue != nil: p.defaultValue() else: nil)
        if defaultsOf[i][^1] == nil: PyErr_Clear()
      if info.name in ["compute", "initialize"]:
        for n in batchNames:
          var own = false
          for p in info.params: own = own or p.name == n
          if not own: info.tolerated.add PyUnicode_InternFromString(cstring(n))
      methods[i] = PyMethodDef(ml_name: cCopy(info.name), ml_meth: cast[pointer](info.wrapper),
                               ml_flags: flags, ml_doc: cCopy(textSignature(info, defaultsOf[i]) & docOf(info)))
    let extra = [("__provbatch_describe__", cast[pointer](moduleDescribe)),
                 ("__provbatch_live_handles__", cast[pointer](moduleLiveHandles)),
                 ("__provbatch_configure__", cast[pointer](moduleConfigure))]
    for j, (name, fn) in extra:
      methods[registry.len + j] = PyMethodDef(ml_name: cstring(name), ml_meth: fn, ml_flags: flags, ml_doc: nil)
    pbxModuleDef.m_name = moduleName
    pbxModuleDef.m_doc = "A Nim plugin built with provbatch's nimpy bridge"
    pbxModuleDef.m_methods = methods[0].addr
    result = PyModule_Create(pbxModuleDef.addr)
  except Exception as e:
    setError(PyExc_SystemError, "provbatch nimpy bridge: " & $e.name & ": " & e.msg)
    result = nil

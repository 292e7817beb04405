## provbatch's ``nimpy`` compatibility module: a plugin becomes a CPython extension module.
##
## nimpy (the usual Nim-Python bridge) cannot be installed here, so provbatch
## builds Nim plugins with this module first on the Nim path: a plugin
## written as the ProvBatch guide shows (``import nimpy``, procs marked
## ``{.exportpy.}``, a ``ref object`` state) compiles unchanged, into a
## library with a ``PyInit_<plugin file name>`` that Python imports like any
## C extension (see provbatch_bridge/runtime.nim for the calls and values).
##
## It is the compatibility surface the guide uses, nothing more:
##
## - ``{.exportpy.}`` (or ``{.exportpy: "pyname".}``) on a proc: exports it to
##   Python. The proc stays callable from Nim as usual; the macro adds a
##   METH_FASTCALL wrapper that binds and converts the arguments, calls the
##   proc (without the GIL when other Python threads exist) and converts its
##   result, and registers the proc's parameters and defaults for the module's
##   built-in function (its ``__text_signature__`` and docstring).
## - ``exportpy_consts(ID, VERSION, ...)``: exports constants, as procs named
##   ``py_const_<NAME>`` (``exportpy_consts_wpfx("pfx_", ...)`` for another
##   prefix); a proc named ``py_const_<NAME>`` marked ``{.exportpy.}`` does
##   the same by hand.

import std/[compilesettings, macros]
import provbatch_bridge/runtime

const pbxModuleName = querySetting(projectName)
  ## the plugin file's name without .nim: Python imports the module as ``<package>.<this>``

proc pbxPyInit(): PPyObject {.exportc: "PyInit_" & pbxModuleName, dynlib, cdecl.} =
  ## The entry point Python's import calls (the Nim runtime started when the library was loaded).
  bridgeCreateModule(pbxModuleName)

const PY_CONST_PFX* = "py_const_"
  ## the default prefix of constant-defining procs

var exportedNames {.compileTime.}: seq[string]

proc fail(node: NimNode, msg: string) =
  error("exportpy: " & msg, node)

proc nameOf(n: NimNode): string =
  ## The plain name of a proc or parameter (ident, symbol, exported or quoted).
  case n.kind
  of nnkPostfix: result = nameOf(n[1])
  of nnkPragmaExpr: result = nameOf(n[0])
  of nnkAccQuoted:
    for part in n: result.add nameOf(part)
  else: result = $n

proc paramNames(identDefs: NimNode): seq[NimNode] =
  for i in 0 ..< identDefs.len - 2:
    var n = identDefs[i]
    if n.kind == nnkPragmaExpr: n = n[0]
    result.add n

proc checkParamType(typ, where: NimNode) =
  if typ.kind == nnkVarTy:
    fail(where, "'var' parameters cannot be exported; return the new value instead")
  if typ.kind == nnkBracketExpr and typ[0].kind == nnkIdent and
     (typ[0].eqIdent("openArray") or typ[0].eqIdent("varargs")):
    fail(where, "openArray/varargs parameters cannot be exported; use seq")

proc wrapperFor(def: NimNode, pyName: string): NimNode =
  ## The built-in function of one proc (a METH_FASTCALL wrapper) and its registration.
  let procName = def.name
  let args = genSym(nskParam, "args")
  let nargs = genSym(nskParam, "nargs")
  let kwnames = genSym(nskParam, "kwnames")
  let slots = genSym(nskVar, "slots")
  let saved = genSym(nskLet, "saved")
  let failure = genSym(nskVar, "failure")
  let res = genSym(nskVar, "res")
  let err = genSym(nskLet, "e")
  let outerErr = genSym(nskLet, "e")
  let wArgs = genSym(nskParam, "args")
  let wNargs = genSym(nskParam, "nargs")
  let wKwnames = genSym(nskParam, "kwnames")
  let index = genSym(nskVar, "pbxIndex_" & pyName)
  let impl = genSym(nskProc, "pbxImpl_" & pyName)
  let wrapperName = genSym(nskProc, "pbxWrapper_" & pyName)
  let formal = def.params
  let label = newLit(pyName)
  var count = 0
  for i in 1 ..< formal.len: count += paramNames(formal[i]).len
  var body = newStmtList()
  body.add nnkVarSection.newTree(nnkIdentDefs.newTree(slots,
    nnkBracketExpr.newTree(ident"array", newLit(max(count, 1)), bindSym"PPyObject"), newEmptyNode()))
  body.add newCall(bindSym"bridgeBind", index, args, nargs, kwnames, slots)
  var callArgs: seq[NimNode]
  var infos = nnkBracket.newTree()
  # the registration runs in a block of its own: the defaults are computed
  # first (a default naming another parameter cannot be: it shows as
  # unknown), then the parameters are declared, so that the type of an
  # untyped parameter, typeof(its default), can name the ones before it
  var defaults = newStmtList()
  var decls = newStmtList()
  var position = 0
  for i in 1 ..< formal.len:
    let identDefs = formal[i]
    let typ = identDefs[^2]
    let default = identDefs[^1]
    checkParamType(typ, identDefs)
    for name in paramNames(identDefs):
      let nameStr = newLit(nameOf(name))
      let localType = if typ.kind == nnkEmpty: newCall("typeof", default) else: typ
      let local = ident(nameOf(name))
      callArgs.add local
      let decl = nnkVarSection.newTree(nnkIdentDefs.newTree(local, localType, newEmptyNode()))
      body.add decl
      decls.add decl.copyNimTree
      let slot = nnkBracketExpr.newTree(slots, newLit(position))
      let convert = newCall(bindSym"fromPy", slot, local, nameStr)
      let paramInfo = nnkBracketExpr.newTree(bindSym"bridgeParam", newCall("typeof", local))
      if default.kind == nnkEmpty:
        body.add convert
        infos.add newCall(paramInfo, nameStr, newLit(false), newNilLit(), newLit(""))
      else:
        body.add nnkIfStmt.newTree(
          nnkElifBranch.newTree(infix(slot, "!=", newNilLit()), convert),
          nnkElse.newTree(newAssignment(local, default)))
        let known = genSym(nskLet, "default")
        let defaultType = if typ.kind == nnkEmpty: newCall("typeof", default) else: typ
        defaults.add newLetStmt(known, newCall(bindSym"bridgeDefault", default, defaultType))
        infos.add newCall(paramInfo, nameStr, newLit(true), known, newLit(default.repr))
      inc position
  let call = newCall(procName, callArgs)
  let retType = formal[0]
  let isVoid = retType.kind == nnkEmpty or (retType.kind == nnkIdent and retType.eqIdent("void"))
  # the proc runs with the GIL released; its exception is raised in Python once the GIL is back
  let run = if isVoid: call else: newAssignment(res, call)
  if not isVoid:
    body.add nnkVarSection.newTree(nnkIdentDefs.newTree(res, newCall("typeof", call), newEmptyNode()))
  body.add quote do:
    var `failure`: ref Exception = nil
    let `saved` = bridgeReleaseGil()
    try:
      `run`
    except Exception as `err`:
      `failure` = `err`
    if `saved` != nil: PyEval_RestoreThread(`saved`)
    if `failure` != nil:
      bridgeRaise(`failure`, `label`)
  if isVoid:
    body.add quote do:
      if `failure` == nil: result = pyNewRef(Py_None)
  else:
    body.add quote do:
      if `failure` == nil: result = toPy(`res`)
  if pyName == "finalize":
    body.add newCall(bindSym"bridgeReleaseRefs", slots)
  let pyObj = bindSym"PPyObject"
  let argsType = bindSym"PyArgs"
  let sizeType = bindSym"Py_ssize_t"
  let implDef = quote do:
    proc `impl`(`args`: `argsType`, `nargs`: `sizeType`, `kwnames`: `pyObj`): `pyObj` =
      try:
        `body`
      except Exception as `outerErr`:  # an argument refused, or a default that raised
        bridgeRaise(`outerErr`, `label`)
        result = nil
  let wrapper = quote do:
    proc `wrapperName`(self: `pyObj`, `wArgs`: `argsType`, `wNargs`: `sizeType`, `wKwnames`: `pyObj`): `pyObj` {.cdecl.} =
      if not bridgeEnter(): return nil
      result = `impl`(`wArgs`, `wNargs`, `wKwnames`)
      bridgeLeave()
  let register = newAssignment(index, newCall(bindSym"bridgeRegister", newLit(pyName), wrapperName,
                         prefix(infos, "@"), newLit(if isVoid: "void" else: retType.repr)))
  result = newStmtList(
    nnkVarSection.newTree(nnkIdentDefs.newTree(index, ident"int", newEmptyNode())),
    implDef, wrapper, newBlockStmt(newStmtList(defaults, decls, register)))

proc exportProc(def: NimNode, pyName: string): NimNode =
  if def.kind notin {nnkProcDef, nnkFuncDef}:
    fail(def, "only procs can be exported")
  if def[2].kind != nnkEmpty:
    fail(def, "generic procs cannot be exported")
  let name = if pyName.len > 0: pyName else: nameOf(def.name)
  if name in exportedNames:
    fail(def, "'" & name & "' is exported twice; export one proc per name")
  exportedNames.add name
  result = newStmtList(def, wrapperFor(def, name))


macro exportpy*(nameOrDef: untyped, def: untyped = nil): untyped =
  ## Export a proc to Python: ``{.exportpy.}`` under its own name,
  ## ``{.exportpy: "name".}`` under another one.
  if def.kind == nnkNilLit:
    result = exportProc(nameOrDef, "")
  else:
    if nameOrDef.kind notin {nnkStrLit, nnkRStrLit, nnkTripleStrLit, nnkIdent}:
      fail(nameOrDef, "the exported name must be a string literal: {.exportpy: \"name\".}")
    result = exportProc(def, nameOf(nameOrDef))

macro exportpy_consts_wpfx*(pfx: static string, consts: varargs[untyped]): untyped =
  ## Export constants as procs named ``<pfx><NAME>`` returning their value.
  result = newStmtList()
  for c in consts:
    let procName = ident(pfx & $c)
    let def = quote do:
      proc `procName`(): typeof(`c`) = `c`
    result.add exportProc(def, "")

macro exportpy_consts*(consts: varargs[untyped]): untyped =
  ## Export constants as procs named ``py_const_<NAME>``: ``exportpy_consts(ID, VERSION)``.
  result = newStmtList()
  for c in consts:
    let procName = ident(PY_CONST_PFX & $c)
    let def = quote do:
      proc `procName`(): typeof(`c`) = `c`
    result.add exportProc(def, "")

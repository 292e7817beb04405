## provbatch's ``nimpy`` compatibility module.
##
## nimpy (the usual Nim-Python bridge) cannot be installed here, so provbatch
## builds Nim plugins with this module first on the Nim path: a plugin
## written as the ProvBatch guide shows (``import nimpy``, procs marked
## ``{.exportpy.}``, a ``ref object`` state) compiles unchanged.
##
## It is the compatibility surface the guide uses, nothing more:
##
## - ``{.exportpy.}`` (or ``{.exportpy: "pyname".}``) on a proc: exports it to
##   Python. The proc stays callable from Nim as usual; the macro adds a C
##   function ``pbx_<pyname>`` taking the arguments as a JSON object and
##   returning the result as JSON (see provbatch_bridge/runtime.nim), and
##   registers the proc's parameters, defaults and result shape for the
##   Python side.
## - ``exportpy_consts(ID, VERSION, ...)``: exports constants, as procs named
##   ``py_const_<NAME>`` (``exportpy_consts_wpfx("pfx_", ...)`` for another
##   prefix); a proc named ``py_const_<NAME>`` marked ``{.exportpy.}`` does
##   the same by hand.

import std/[json, macros]
import provbatch_bridge/runtime

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
  ## The C-exported wrapper and the registration call of one proc.
  let procName = def.name
  let symbol = "pbx_" & pyName
  let raw = genSym(nskParam, "raw")
  let args = genSym(nskVar, "args")
  let err = genSym(nskLet, "e")
  let formal = def.params
  var body = newStmtList()
  var callArgs: seq[NimNode]
  var infos = nnkBracket.newTree()
  # the registration runs in a block of its own: the defaults are computed
  # first (a default naming another parameter cannot be: it shows as
  # unknown), then the parameters are declared, so that the type of an
  # untyped parameter, typeof(its default), can name the ones before it
  var defaults = newStmtList()
  var decls = newStmtList()
  body.add newAssignment(args, newCall(bindSym"bridgeParseArgs", raw))
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
      let paramInfo = nnkBracketExpr.newTree(bindSym"bridgeParam", newCall("typeof", local))
      if default.kind == nnkEmpty:
        body.add newCall(bindSym"bridgeArg", args, nameStr, local)
        infos.add newCall(paramInfo, nameStr, newLit(false), newNilLit(), newLit(""))
      else:
        body.add nnkIfStmt.newTree(nnkElifBranch.newTree(
          newCall("not", newCall(bindSym"bridgeOptArg", args, nameStr, local)),
          newAssignment(local, default)))
        let known = genSym(nskLet, "default")
        defaults.add newLetStmt(known, newCall(bindSym"bridgeDefault", default))
        infos.add newCall(paramInfo, nameStr, newLit(true), known, newLit(default.repr))
  let call = newCall(procName, callArgs)
  let retType = formal[0]
  let isVoid = retType.kind == nnkEmpty or (retType.kind == nnkIdent and retType.eqIdent("void"))
  if isVoid:
    body.add call
    body.add newAssignment(ident"result", newCall(bindSym"bridgeOkVoid"))
  else:
    body.add newAssignment(ident"result", newCall(bindSym"bridgeOk", call))
  let tryStmt = nnkTryStmt.newTree(body, nnkExceptBranch.newTree(
    infix(ident"Exception", "as", err),
    newAssignment(ident"result", newCall(bindSym"bridgeErr", err))))
  let wrapperName = genSym(nskProc, "pbxWrapper_" & pyName)
  let jsonNode = bindSym"JsonNode"  # resolves even if the plugin does not import std/json
  let wrapper = quote do:
    proc `wrapperName`(`raw`: cstring): cstring {.cdecl, exportc: `symbol`, dynlib.} =
      var `args`: `jsonNode`
      `tryStmt`
  let shape = if isVoid: newCall(bindSym"newJString", newLit("n"))
              else: newCall(nnkBracketExpr.newTree(bindSym"shapeOf", retType))
  let register = newCall(bindSym"bridgeRegister", newLit(pyName), newLit(symbol),
                         prefix(infos, "@"), shape, newLit(if isVoid: "void" else: retType.repr))
  result = newStmtList(wrapper, newBlockStmt(newStmtList(defaults, decls, register)))

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

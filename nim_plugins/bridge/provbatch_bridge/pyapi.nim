## The part of the CPython C API that provbatch's bridge uses, imported from ``Python.h``.
##
## The build puts the include directory of the Python that loads the plugin on the C
## compiler's path (``--passC:-I...``, see provbatch's Nim build), so the macros and
## inline functions (``Py_INCREF``, ``PyList_SET_ITEM``, the type checks) are the real
## ones of that Python version and cost what they cost in a C extension. An extension
## does not link libpython: the symbols resolve against the interpreter that imports it.

{.pragma: py, importc, header: "Python.h".}
{.pragma: pyVar, importc, header: "Python.h", nodecl.}

type
  PyObject* {.importc: "PyObject", header: "Python.h", incompleteStruct.} = object
  PPyObject* = ptr PyObject
  PyTypeObject* {.importc: "PyTypeObject", header: "Python.h", incompleteStruct.} = object
    tp_name*: cstring
  PPyTypeObject* = ptr PyTypeObject
  PyThreadState* {.importc: "PyThreadState", header: "Python.h", incompleteStruct.} = object
  Py_ssize_t* {.importc: "Py_ssize_t", header: "Python.h".} = int
  PyMethodDef* {.importc: "PyMethodDef", header: "Python.h".} = object
    ml_name*: cstring
    ml_meth*: pointer
    ml_flags*: cint
    ml_doc*: cstring
  PyModuleDef* {.importc: "PyModuleDef", header: "Python.h", incompleteStruct.} = object
    m_name*: cstring
    m_doc*: cstring
    m_size*: Py_ssize_t
    m_methods*: ptr PyMethodDef
  PyArgs* = ptr UncheckedArray[PPyObject]
    ## the arguments of a METH_FASTCALL function: positional ones, then keyword values
  PyCapsuleDestructor* = proc (capsule: PPyObject) {.cdecl.}
  PyFastCall* = proc (self: PPyObject, args: PyArgs, nargs: Py_ssize_t, kwnames: PPyObject): PPyObject {.cdecl.}

var
  METH_FASTCALL* {.pyVar.}: cint
  METH_KEYWORDS* {.pyVar.}: cint
  Py_None* {.pyVar.}: PPyObject
  Py_True* {.pyVar.}: PPyObject
  Py_False* {.pyVar.}: PPyObject
  PyExc_TypeError* {.pyVar.}: PPyObject
  PyExc_OverflowError* {.pyVar.}: PPyObject
  PyExc_RuntimeError* {.pyVar.}: PPyObject
  PyExc_SystemError* {.pyVar.}: PPyObject

# reference counts
proc Py_INCREF*(o: PPyObject) {.py.}
proc Py_DECREF*(o: PPyObject) {.py.}
proc Py_XDECREF*(o: PPyObject) {.py.}
proc Py_TYPE*(o: PPyObject): PPyTypeObject {.py.}

# type checks (macros)
proc PyUnicode_Check*(o: PPyObject): cint {.py.}
proc PyLong_Check*(o: PPyObject): cint {.py.}
proc PyBool_Check*(o: PPyObject): cint {.py.}
proc PyFloat_Check*(o: PPyObject): cint {.py.}
proc PyList_Check*(o: PPyObject): cint {.py.}
proc PyTuple_Check*(o: PPyObject): cint {.py.}
proc PyDict_Check*(o: PPyObject): cint {.py.}
proc PyAnySet_Check*(o: PPyObject): cint {.py.}
proc PyCapsule_CheckExact*(o: PPyObject): cint {.py.}
proc PyObject_TypeCheck*(o: PPyObject, t: PPyTypeObject): cint {.py.}

# numbers
proc PyLong_FromLongLong*(v: clonglong): PPyObject {.py.}
proc PyLong_FromUnsignedLongLong*(v: culonglong): PPyObject {.py.}
proc PyLong_AsLongLong*(o: PPyObject): clonglong {.py.}
proc PyLong_AsUnsignedLongLong*(o: PPyObject): culonglong {.py.}
proc PyLong_AsDouble*(o: PPyObject): cdouble {.py.}
proc PyFloat_FromDouble*(v: cdouble): PPyObject {.py.}
proc PyFloat_AS_DOUBLE*(o: PPyObject): cdouble {.py.}

# strings
proc PyUnicode_DecodeUTF8*(s: cstring, size: Py_ssize_t, errors: cstring): PPyObject {.py.}
proc PyUnicode_AsUTF8AndSize*(o: PPyObject, size: ptr Py_ssize_t): cstring {.py.}
proc PyUnicode_AsEncodedString*(o: PPyObject, encoding, errors: cstring): PPyObject {.py.}
proc PyUnicode_InternFromString*(s: cstring): PPyObject {.py.}
proc PyUnicode_Compare*(a, b: PPyObject): cint {.py.}
proc PyBytes_AS_STRING*(o: PPyObject): cstring {.py.}
proc PyBytes_GET_SIZE*(o: PPyObject): Py_ssize_t {.py.}

# containers
proc PyList_New*(size: Py_ssize_t): PPyObject {.py.}
proc PyList_SET_ITEM*(l: PPyObject, i: Py_ssize_t, o: PPyObject) {.py.}
proc PyList_GET_ITEM*(l: PPyObject, i: Py_ssize_t): PPyObject {.py.}
proc PyList_GET_SIZE*(l: PPyObject): Py_ssize_t {.py.}
proc PyList_Append*(l, o: PPyObject): cint {.py.}
proc PyTuple_New*(size: Py_ssize_t): PPyObject {.py.}
proc PyTuple_SET_ITEM*(t: PPyObject, i: Py_ssize_t, o: PPyObject) {.py.}
proc PyTuple_GET_ITEM*(t: PPyObject, i: Py_ssize_t): PPyObject {.py.}
proc PyTuple_GET_SIZE*(t: PPyObject): Py_ssize_t {.py.}
proc PySequence_List*(o: PPyObject): PPyObject {.py.}
proc PyDict_New*(): PPyObject {.py.}
proc PyDict_SetItem*(d, k, v: PPyObject): cint {.py.}
proc PyDict_SetItemString*(d: PPyObject, k: cstring, v: PPyObject): cint {.py.}
proc PyDict_GetItemWithError*(d, k: PPyObject): PPyObject {.py.}
proc PyDict_GetItemString*(d: PPyObject, k: cstring): PPyObject {.py.}
proc PyDict_Next*(d: PPyObject, pos: ptr Py_ssize_t, k, v: ptr PPyObject): cint {.py.}

# capsules (the Nim refs handed to Python)
proc PyCapsule_New*(p: pointer, name: cstring, destructor: PyCapsuleDestructor): PPyObject {.py.}
proc PyCapsule_GetPointer*(c: PPyObject, name: cstring): pointer {.py.}
proc PyCapsule_GetName*(c: PPyObject): cstring {.py.}
proc PyCapsule_GetContext*(c: PPyObject): pointer {.py.}
proc PyCapsule_SetContext*(c: PPyObject, context: pointer): cint {.py.}

# objects and calls
proc PyObject_Repr*(o: PPyObject): PPyObject {.py.}
proc PyObject_GetAttr*(o, name: PPyObject): PPyObject {.py.}
proc PyObject_SetAttr*(o, name, v: PPyObject): cint {.py.}
proc PyObject_CallFunctionObjArgs*(callable: PPyObject): PPyObject {.py, varargs.}

# errors
proc PyErr_SetString*(t: PPyObject, msg: cstring) {.py.}
proc PyErr_SetObject*(t, v: PPyObject) {.py.}
proc PyErr_Occurred*(): PPyObject {.py.}
proc PyErr_Clear*() {.py.}
proc PyErr_ExceptionMatches*(t: PPyObject): cint {.py.}
proc PyErr_NoMemory*(): PPyObject {.py.}

# the GIL and threads
proc PyEval_SaveThread*(): ptr PyThreadState {.py.}
proc PyEval_RestoreThread*(s: ptr PyThreadState) {.py.}
proc PyThread_get_thread_ident*(): culong {.py.}
proc PyInterpreterState_Get*(): pointer {.py.}
proc PyInterpreterState_ThreadHead*(interp: pointer): pointer {.py.}
proc PyThreadState_Next*(t: pointer): pointer {.py.}

# modules
proc PyModule_Create*(def: ptr PyModuleDef): PPyObject {.py.}

template pyNewRef*(o: PPyObject): PPyObject =
  ## ``o`` with one more reference (Py_NewRef)
  (let x = o; Py_INCREF(x); x)

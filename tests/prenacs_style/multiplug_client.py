"""Code written against MultiPlug 1.2, as an application using it would be.

usage: python multiplug_client.py PLUGINS_DIR [python] [bash] [rust] [nim]

Prints what it got from each plugin, one ``label: repr`` line each.
tests/test_prenacs_compat.py runs it with MultiPlug 1.2 itself and, with the
one import line changed to ``import provbatch.multiplug as multiplug``, with
provbatch, and compares the lines.
"""
import inspect
import io
import os
import sys
from contextlib import redirect_stderr

import multiplug

folder = sys.argv[1]
langs = sys.argv[2:] or ["python", "bash", "rust", "nim"]


def path(name):
    return os.path.join(folder, name)


def show(label, value):
    print(f"{label}: {value!r}")


def attempt(label, function, *args, **kwargs):
    try:
        function(*args, **kwargs)
        show(label, "no error")
    except multiplug.error.MultiplugError as exc:
        message = str(exc).replace(folder, "DIR").split(" (full build log")[0]
        show(label, f"{type(exc).__name__}: {message}")


for name in ("importer", "py", "bash", "rust", "nim"):
    show(f"{name} parameters", [(p.name, p.default) for p in inspect.signature(getattr(multiplug, name)).parameters.values()])
for name in ("MultiplugError", "ExtensionCompilationError", "InterfaceRequirementError", "UnsupportedLangError"):
    show(f"{name} bases", [c.__name__ for c in getattr(multiplug.error, name).__mro__])

if "python" in langs:
    err = io.StringIO()
    with redirect_stderr(err):
        m = multiplug.importer(path("py_letters.py"), verbose=True, req_const=["ID", "OUTPUT"],
                               opt_const=["ADVICE"], req_func=["compute"], opt_func=["initialize", "finalize"])
    show("py verbose", err.getvalue().replace(folder, "DIR"))
    show("py lang", m.__lang__)
    show("py constants", (m.ID, m.VERSION, m.OUTPUT, m.PARAMETERS, m.ADVICE))
    show("py optional functions", (m.initialize, m.finalize))
    show("py compute", m.compute("abc"))
    show("py compute label", m.compute("hello", label="x"))
    m = multiplug.py(path("py_letters.py"), req_func=["compute"])
    show("py() lang", m.__lang__)
    attempt("py missing function", multiplug.importer, path("py_letters.py"), req_func=["initialize"])
    attempt("py missing constant", multiplug.py, path("py_letters.py"), req_const=["ADVICE"])
    attempt("unknown suffix", multiplug.importer, path("README.md"))

if "bash" in langs:
    m = multiplug.importer(path("sh_words.sh"), req_const=["ID", "OUTPUT", "PARAMETERS"], opt_const=["ADVICE"],
                           req_func=["compute"], opt_func=["initialize", "finalize"])
    show("sh lang", m.__lang__)
    show("sh constants", (m.ID, m.VERSION, m.OUTPUT, m.METHOD, m.PARAMETERS, m.ADVICE))
    show("sh optional functions", (m.initialize, m.finalize))
    show("sh compute", m.compute("abc"))
    show("sh compute param", m.compute("abc", suffix="?"))
    show("sh compute no value", m.compute("none"))
    show("sh compute one line", m.compute("solo"))
    show("sh helpers", (m.upper("abc"), m.compute_id("abc")))
    m = multiplug.bash(path("sh_words.sh"), opt_func=["merge"])
    show("bash() lang", (m.__lang__, m.merge))
    attempt("sh disabled", multiplug.importer, path("sh_words.sh"), disable_bash=True)
    attempt("sh missing function", multiplug.bash, path("sh_words.sh"), req_func=["merge"])

if "rust" in langs:
    m = multiplug.importer(path("rs_counter.rs"), req_const=["ID", "OUTPUT"], opt_const=["PARAMETERS"],
                           req_func=["compute"], opt_func=["initialize", "finalize", "merge"])
    show("rs lang", m.__lang__)
    show("rs constants", (m.ID, m.VERSION, m.INPUT, m.OUTPUT, m.METHOD, m.PARAMETERS, hasattr(m, "Constants")))
    show("rs merge", m.merge)
    state = m.initialize()
    show("rs compute", [m.compute(w, state) for w in ("abc", "hello")])
    show("rs compute_id", m.compute_id("x"))
    m = multiplug.rust(path("rs_gilrefs.rs"), req_const=["ID"], req_func=["compute"], const_cls="Constants")
    state = m.initialize()
    show("rs gil refs", (m.__lang__, m.ID, m.compute("abc", state), m.compute("hello", state, label="x")))
    attempt("rs missing constant", multiplug.rust, path("rs_counter.rs"), req_const=["ADVICE"])

if "nim" in langs:
    m = multiplug.importer(path("nim_words.nim"), req_const=["ID", "INPUT"], opt_const=["ADVICE"],
                           req_func=["compute"], opt_func=["finalize"])
    show("nim lang", m.__lang__)
    show("nim constants", (m.ID, m.VERSION, m.INPUT, m.OUTPUT, m.PARAMETERS, m.ADVICE, m.finalize))
    state = m.initialize()
    show("nim compute", [m.compute("abc", state), m.compute("hello", state, label="x")])
    show("nim compute_id", m.compute_id("g/seq_one.fa"))
    m = multiplug.nim(path("nim_words.nim"), const_pfx="")
    show("nim no prefix", (hasattr(m, "ID"), m.py_const_ID(), m.py_const_INPUT()))
    attempt("nim build error", multiplug.nim, path("nim_gzip.nim"))
    attempt("nim missing function", multiplug.nim, path("nim_words.nim"), req_func=["merge"])

"""Nim plugins: compiled with ``nim c --app:lib`` and our nimpy bridge (:mod:`.build`, ``bridge/``)
into CPython extension modules, imported with importlib (:mod:`.library`, :mod:`.loader`)."""

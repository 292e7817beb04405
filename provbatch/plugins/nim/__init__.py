"""Nim plugins: compiled with ``nim c --app:lib`` and our nimpy bridge (:mod:`.build`, ``bridge/``),
loaded with ctypes (:mod:`.library`, :mod:`.loader`)."""

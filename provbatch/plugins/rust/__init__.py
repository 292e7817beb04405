"""Rust plugins: a ``.rs`` file or a crate, built with maturin against pyo3 (:mod:`.build`),
loaded as an extension module (:mod:`.loader`)."""

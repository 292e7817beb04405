//! The Rust twin of benchmarks/plugins/trivial.py: the length of the entity id.
//!
//! Used by benchmarks/bench_nim.py to compare the per-entity cost of a compiled plugin
//! through the engine: this one (pyo3) against benchmarks/plugins/trivial.nim.

use pyo3::prelude::*;
use pyo3::types::PyDict;

#[pyclass]
struct Constants;

#[pymethods]
impl Constants {
    #[classattr]
    const ID: &'static str = "bench_trivial_rs";
    #[classattr]
    const VERSION: &'static str = "1.0.0";
    #[classattr]
    const INPUT: &'static str = "any entity id";
    #[classattr]
    const OUTPUT: [&'static str; 1] = ["id_length"];
    #[classattr]
    const METHOD: &'static str = "the length of the entity id in bytes";
}

#[pyfunction]
#[pyo3(signature = (entity, **_kwargs))]
fn compute(entity: &str, _kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<((usize,), Vec<String>)> {
    Ok(((entity.len(),), Vec::new()))
}

// A GIL-ref Rust plugin whose author pins pyo3 (MultiPlug's `// [dependencies]` line):
// without the pin it would build with pyo3 0.22 (gil-refs); the pin says 0.18.3.
// [dependencies] pyo3 = "0.18.3"
use pyo3::prelude::*;
use pyo3::wrap_pyfunction;

#[pyclass] struct Constants {}
#[pymethods]
impl Constants {
  #[classattr] const ID:      &'static str = "rs_pinned";
  #[classattr] const VERSION: &'static str = "1.0";
  #[classattr] const INPUT:   &'static str = "a word";
  #[classattr] const OUTPUT: [&'static str; 1] = ["word_length"];
}

#[pyfunction]
fn compute(word: &str) -> ((usize, ), Vec<String>) {
  ((word.len(), ), vec![])
}

#[pymodule]
fn rs_pinned(_py: Python, m: &PyModule) -> PyResult<()> {
    m.add_class::<Constants>()?;
    m.add_function(wrap_pyfunction!(compute, m)?)?;
    Ok(())
}

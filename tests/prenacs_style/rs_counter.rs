// A Rust plugin in the MultiPlug 1.2 style: pyo3 0.13 GIL-ref API
// (`m: &PyModule`, `Python::acquire_gil()`), constants in a `Constants`
// class, a state object counting the entities seen.
use pyo3::prelude::*;
use pyo3::wrap_pyfunction;

#[pyclass] struct Constants {}
#[pymethods]
impl Constants {
  #[classattr] const ID:      &'static str = "rs_counter";
  #[classattr] const VERSION: &'static str = "1.0";
  #[classattr] const INPUT:   &'static str = "a word";
  #[classattr] const OUTPUT: [&'static str; 2] = ["word_length", "n_seen"];
  #[classattr] const METHOD:  &'static str = "length of the word; entities seen so far";
}

#[pyclass] struct State { count: u64 }

#[pyfunction]
fn initialize() -> PyResult<Py<State>> {
  let gil = Python::acquire_gil();
  let py = gil.python();
  let state = Py::new(py, State { count: 0 })?;
  Ok(state)
}

#[pyfunction]
fn compute(word: &str, state: Py<State>) -> PyResult<((usize, u64), Vec<String>)> {
  let gil = Python::acquire_gil();
  let py = gil.python();
  let mut state = state.borrow_mut(py);
  state.count += 1;
  Ok(((word.len(), state.count), vec![format!("seen {}", state.count)]))
}

#[pyfunction]
fn finalize(state: Py<State>) {
  let gil = Python::acquire_gil();
  let py = gil.python();
  let state = state.borrow(py);
  eprintln!("finalized state, count={}", state.count);
}

#[pyfunction]
fn compute_id(name: &str) -> String {
  format!("rs_{}", name)
}

#[pymodule]
fn rs_counter(_py: Python, m: &PyModule) -> PyResult<()> {
    m.add_class::<Constants>()?;
    m.add_function(wrap_pyfunction!(compute, m)?)?;
    m.add_function(wrap_pyfunction!(initialize, m)?)?;
    m.add_function(wrap_pyfunction!(finalize, m)?)?;
    m.add_function(wrap_pyfunction!(compute_id, m)?)?;
    Ok(())
}

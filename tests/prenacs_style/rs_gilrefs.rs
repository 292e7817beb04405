// A Rust plugin in the pyo3 0.19-0.22 GIL-ref style, without `Python::acquire_gil`:
// the module function takes `m: &PyModule`, classes are added with `m.add_class`,
// the state is borrowed through a GIL ref (`&PyCell<State>`), kwargs come as `&PyDict`.
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::wrap_pyfunction;

#[pyclass] struct Constants {}
#[pymethods]
impl Constants {
  #[classattr] const ID:      &'static str = "rs_gilrefs";
  #[classattr] const VERSION: &'static str = "1.0";
  #[classattr] const INPUT:   &'static str = "a word";
  #[classattr] const OUTPUT: [&'static str; 2] = ["word_length", "n_seen"];
  #[classattr] const METHOD:  &'static str = "length of the word; entities seen so far";
}

#[pyclass] struct State { count: u64 }

#[pyfunction]
fn initialize(py: Python) -> PyResult<Py<State>> {
  Py::new(py, State { count: 0 })
}

#[pyfunction]
#[pyo3(signature = (word, state, **kwargs))]
fn compute(word: &str, state: &PyCell<State>, kwargs: Option<&PyDict>) -> PyResult<((usize, u64), Vec<String>)> {
  let mut state = state.borrow_mut();
  state.count += 1;
  let n_kwargs = kwargs.map(|k| k.len()).unwrap_or(0);
  Ok(((word.len(), state.count), vec![format!("seen {} ({} params)", state.count, n_kwargs)]))
}

#[pyfunction]
fn compute_id(name: &str) -> String {
  format!("g_{}", name)
}

#[pymodule]
fn rs_gilrefs(_py: Python, m: &PyModule) -> PyResult<()> {
    m.add_class::<Constants>()?;
    m.add_function(wrap_pyfunction!(compute, m)?)?;
    m.add_function(wrap_pyfunction!(initialize, m)?)?;
    m.add_function(wrap_pyfunction!(compute_id, m)?)?;
    Ok(())
}

//! FASTA records per file, with a batch state kept in a Rust struct.
//!
//! Example of the state lifecycle in Rust: initialize() returns a #[pyclass]
//! value, compute() receives it (mutably) for every entity, finalize() gets it
//! at the end and appends this process's totals to the `summary` file.
//! A #[pyclass] value cannot be pickled, so with several workers every worker
//! process runs its own initialize/finalize: the summary gets one line per process.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

#[pyclass]
struct Constants;

#[pymethods]
impl Constants {
    #[classattr]
    const ID: &'static str = "state_counter_rs";
    #[classattr]
    const VERSION: &'static str = "1.0.0";
    #[classattr]
    const INPUT: &'static str = "path to a FASTA file (plain text)";
    #[classattr]
    const OUTPUT: [&'static str; 1] = ["fasta_records"];
    #[classattr]
    const METHOD: &'static str = "counts the header lines ('>' at a line start); totals are kept in the state";
    #[classattr]
    const PARAMETERS: [(&'static str, &'static str, &'static str, &'static str); 1] = [(
        "summary",
        "String(1024)",
        "",
        "file to which finalize appends 'files, records' of each worker process (none when empty)",
    )];
}

/// The batch state: what this process has counted so far.
#[pyclass]
struct Totals {
    summary: String,
    #[pyo3(get)]
    files: u64,
    #[pyo3(get)]
    records: u64,
    #[pyo3(get)]
    finalized: bool,
}

#[pyfunction]
#[pyo3(signature = (summary = String::new(), **_kwargs))]
fn initialize(summary: String, _kwargs: Option<&Bound<'_, PyDict>>) -> Totals {
    Totals { summary, files: 0, records: 0, finalized: false }
}

fn count_records(path: &str) -> std::io::Result<u64> {
    let mut reader = BufReader::with_capacity(1 << 16, File::open(path)?);
    let (mut records, mut line) = (0u64, Vec::new());
    while reader.read_until(b'\n', &mut line)? > 0 {
        records += u64::from(line.first() == Some(&b'>'));
        line.clear();
    }
    Ok(records)
}

#[pyfunction]
#[pyo3(signature = (entity, state, **_kwargs))]
fn compute(
    entity: &str,
    mut state: PyRefMut<'_, Totals>,
    _kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<(Vec<u64>, Vec<String>)> {
    let records = count_records(entity).map_err(|err| PyOSError::new_err(format!("{entity}: {err}")))?;
    state.files += 1;
    state.records += records;
    Ok((vec![records], vec![format!("files_in_this_worker\t{}", state.files)]))
}

#[pyfunction]
fn finalize(mut state: PyRefMut<'_, Totals>) -> PyResult<()> {
    state.finalized = true;
    if state.summary.is_empty() {
        return Ok(());
    }
    let line = format!("files\t{}\trecords\t{}\n", state.files, state.records);
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&state.summary)
        .and_then(|mut out| out.write_all(line.as_bytes()))
        .map_err(|err| PyOSError::new_err(format!("{}: {err}", state.summary)))
}

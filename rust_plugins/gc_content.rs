//! GC content and length of the sequences in a FASTA file (plain or gzipped).
//!
//! The Rust twin of plugins/gc_content.py: same constants, same results.
//! The file is read in 1 MiB blocks. Header lines are found with memchr (SIMD);
//! the sequence bytes between them are counted into a 256-entry histogram, and a
//! 256-entry class table (G/C, A/T or neither) turns it into the two counts at the
//! end: no per-line and no per-byte branching.
//!
//! Crates used besides pyo3, declared for the generated Cargo.toml:
// [dependencies] flate2 = { version = "1", default-features = false, features = ["zlib-rs"] }
// [dependencies] memchr = "2"

use std::fs::File;
use std::io::{self, BufRead, BufReader};

use flate2::read::MultiGzDecoder;
use pyo3::exceptions::{PyFileNotFoundError, PyOSError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

#[pyclass]
struct Constants;

#[pymethods]
impl Constants {
    #[classattr]
    const ID: &'static str = "gc_content_rs";
    #[classattr]
    const VERSION: &'static str = "1.0.0";
    #[classattr]
    const INPUT: &'static str = "path to a FASTA file (plain, or gzipped with a .gz suffix)";
    #[classattr]
    const OUTPUT: [&'static str; 2] = ["gc_content", "genome_size"];
    #[classattr]
    const METHOD: &'static str =
        "counts G, C, A and T (any case) over all sequence lines; GC content = (G+C)/(A+C+G+T)";
    #[classattr]
    const IMPLEMENTATION: &'static str =
        "Rust (pyo3): 1 MiB buffered reads, memchr for headers, a byte histogram and a 256-entry class table, flate2 (zlib-rs) for gzip";
    #[classattr]
    const PARAMETERS: [(&'static str, &'static str, &'static str, &'static str); 1] =
        [("digits", "Integer", "4", "decimal digits the GC content is rounded to")];
}

const GC: u8 = 1;
const AT: u8 = 2;

/// Byte -> class: bit 0 set for G/C, bit 1 set for A/T (either case), 0 for anything else.
const CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let gc = *b"GCgc";
    let at = *b"ATat";
    let mut i = 0;
    while i < 4 {
        table[gc[i] as usize] = GC;
        table[at[i] as usize] = AT;
        i += 1;
    }
    table
};

/// Byte-value histogram of the sequence lines, and the number of records (header lines).
struct Counts {
    /// four histograms filled in turn, so that runs of one byte value do not wait on one counter
    histograms: Box<[[u64; 256]; 4]>,
    records: u64,
}

impl Counts {
    fn new() -> Self {
        Counts { histograms: Box::new([[0; 256]; 4]), records: 0 }
    }

    fn add_sequence(&mut self, bytes: &[u8]) {
        let [h0, h1, h2, h3] = &mut *self.histograms;
        let mut quads = bytes.chunks_exact(4);
        for quad in &mut quads {
            h0[quad[0] as usize] += 1;
            h1[quad[1] as usize] += 1;
            h2[quad[2] as usize] += 1;
            h3[quad[3] as usize] += 1;
        }
        for &byte in quads.remainder() {
            h0[byte as usize] += 1;
        }
    }

    /// (G+C, A+T) through the class table.
    fn gc_at(&self) -> (u64, u64) {
        let (mut gc, mut at) = (0, 0);
        for value in 0..256 {
            let count: u64 = self.histograms.iter().map(|histogram| histogram[value]).sum();
            let class = CLASS[value];
            gc += count * u64::from(class & GC);
            at += count * u64::from(class >> 1);
        }
        (gc, at)
    }
}

/// Index of the first '>' that starts a line, looking from index 1 (index 0 is decided by the caller).
fn next_header(bytes: &[u8]) -> usize {
    let mut from = 1;
    while let Some(offset) = bytes.get(from..).and_then(|rest| memchr::memchr(b'>', rest)) {
        let at = from + offset;
        if bytes[at - 1] == b'\n' {
            return at;
        }
        from = at + 1;
    }
    bytes.len()
}

/// Counts over a whole stream; header lines ('>' at a line start) are skipped, as in the Python plugin.
fn scan(mut reader: impl BufRead) -> io::Result<Counts> {
    let mut counts = Counts::new();
    let (mut line_start, mut in_header) = (true, false);
    loop {
        let block = reader.fill_buf()?;
        if block.is_empty() {
            return Ok(counts);
        }
        let mut i = 0;
        while i < block.len() {
            let rest = &block[i..];
            if in_header {
                match memchr::memchr(b'\n', rest) {
                    Some(end) => {
                        i += end + 1;
                        in_header = false;
                        line_start = true;
                    }
                    None => i = block.len(),
                }
            } else if line_start && rest[0] == b'>' {
                counts.records += 1;
                in_header = true;
                i += 1;
            } else {
                let end = next_header(rest);
                counts.add_sequence(&rest[..end]);
                line_start = rest[end - 1] == b'\n';
                i += end;
            }
        }
        let used = block.len();
        reader.consume(used);
    }
}

fn open(path: &str) -> PyResult<Box<dyn BufRead>> {
    let file = File::open(path).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => PyFileNotFoundError::new_err(format!("{path}: {err}")),
        _ => PyOSError::new_err(format!("{path}: {err}")),
    })?;
    Ok(if path.ends_with(".gz") {
        Box::new(BufReader::with_capacity(1 << 20, MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::with_capacity(1 << 20, file))
    })
}

/// Rounded like Python's round(): the correctly rounded decimal, ties to even.
fn round_to(value: f64, digits: usize) -> f64 {
    format!("{value:.digits$}").parse().unwrap_or(value)
}

#[pyfunction]
#[pyo3(signature = (entity, digits = 4, **_kwargs))]
fn compute(entity: &str, digits: usize, _kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<((f64, u64), Vec<String>)> {
    let counts = scan(open(entity)?).map_err(|err| PyOSError::new_err(format!("{entity}: {err}")))?;
    let (gc, at) = counts.gc_at();
    let total = gc + at;
    let mut logs = vec![format!("records\t{}", counts.records)];
    if total == 0 {
        logs.push("warning\tno A, C, G or T in the file".to_string());
        return Ok(((0.0, 0), logs));
    }
    Ok(((round_to(gc as f64 / total as f64, digits), total), logs))
}

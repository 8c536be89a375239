//! The comparison table of `orbhash bench retrieval`: one row per method, mAP at each code length
//! as mean ± standard deviation over seeds, and classification OA where the method has a
//! classifier. Same harness, same data, same split for every row, so the rows compare like with
//! like.
//!
//! Standard deviation is the sample one (n − 1); with a single seed only the mean is shown. OA is
//! taken at one code length (the longest, by default: DHCNN's default K = 64), since a classifier
//! sits on the K-bit layer and its OA depends on K.

use std::fmt::Write as _;

use orbhash_cli::Table;
use serde::{Deserialize, Serialize};

use crate::eval::EvalReport;

/// The methods of issue 5, in the order the table lists them.
pub const STANDARD_METHODS: [&str; 5] = ["LSH", "ITQ", "DPSH", "classification-only", "DHCNN"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRow {
    pub method: String,
    /// `map[i]` holds one mAP per seed at `BenchTable::bits[i]`.
    pub map: Vec<Vec<f64>>,
    /// OA per seed at `BenchTable::oa_bits`; empty for methods without a classifier.
    pub oa: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchTable {
    pub dataset: String,
    pub bits: Vec<usize>,
    pub oa_bits: usize,
    pub rows: Vec<BenchRow>,
}

/// Mean and sample standard deviation (0 for one value); `None` for no values.
pub fn mean_std(values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let std = if values.len() > 1 {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    Some((mean, std))
}

fn cell(values: &[f64]) -> String {
    match mean_std(values) {
        None => "—".into(),
        Some((mean, _)) if values.len() == 1 => format!("{mean:.4}"),
        Some((mean, std)) => format!("{mean:.4} ± {std:.4}"),
    }
}

impl BenchTable {
    /// An empty table over the code lengths `bits` (e.g. 16, 32, 64) with rows for
    /// [`STANDARD_METHODS`] in order; OA is read at the longest code.
    pub fn new(dataset: impl Into<String>, bits: &[usize]) -> Self {
        let mut table = Self {
            dataset: dataset.into(),
            bits: bits.to_vec(),
            oa_bits: bits.iter().copied().max().unwrap_or(0),
            rows: Vec::new(),
        };
        for method in STANDARD_METHODS {
            table.row_mut(method);
        }
        table
    }

    fn row_mut(&mut self, method: &str) -> &mut BenchRow {
        let index = match self.rows.iter().position(|r| r.method == method) {
            Some(i) => i,
            None => {
                self.rows.push(BenchRow {
                    method: method.to_string(),
                    map: vec![Vec::new(); self.bits.len()],
                    oa: Vec::new(),
                });
                self.rows.len() - 1
            }
        };
        &mut self.rows[index]
    }

    /// Adds one seed's mAP for `method` at `bits`; a code length outside the table is ignored and
    /// reported as `false`. A method not yet in the table gets a new row at the end.
    pub fn record_map(&mut self, method: &str, bits: usize, map: f64) -> bool {
        let Some(column) = self.bits.iter().position(|&b| b == bits) else {
            return false;
        };
        self.row_mut(method).map[column].push(map);
        true
    }

    /// Adds one seed's OA for `method`.
    pub fn record_oa(&mut self, method: &str, oa: f64) {
        self.row_mut(method).oa.push(oa);
    }

    /// Adds a report: its mAP at its code length, and its OA when it has a classification and its
    /// code length is the table's OA length. Returns whether its code length is a column.
    pub fn record(&mut self, report: &EvalReport) -> bool {
        let recorded = self.record_map(&report.method, report.bits, report.retrieval.map);
        if let (Some(c), true) = (&report.classification, report.bits == self.oa_bits) {
            self.record_oa(&report.method, c.overall_accuracy);
        }
        recorded
    }

    fn header(&self) -> Vec<String> {
        let mut header = vec!["method".to_string()];
        header.extend(self.bits.iter().map(|b| format!("mAP {b} bits")));
        header.push(format!("OA ({} bits)", self.oa_bits));
        header
    }

    fn cells(&self) -> Vec<Vec<String>> {
        self.rows
            .iter()
            .map(|row| {
                let mut cells = vec![row.method.clone()];
                cells.extend(row.map.iter().map(|v| cell(v)));
                cells.push(cell(&row.oa));
                cells
            })
            .collect()
    }

    fn seeds_note(&self) -> String {
        let seeds = self
            .rows
            .iter()
            .flat_map(|r| r.map.iter().map(Vec::len))
            .filter(|&n| n > 0);
        let (lo, hi) = seeds.fold((usize::MAX, 0), |(lo, hi), n| (lo.min(n), hi.max(n)));
        match (lo, hi) {
            (usize::MAX, _) => "no runs recorded".into(),
            (lo, hi) if lo == hi => format!("{lo} seed(s) per cell, mean ± sample std"),
            (lo, hi) => format!("{lo}–{hi} seeds per cell, mean ± sample std"),
        }
    }

    /// A plain-text table for the terminal.
    pub fn to_terminal(&self) -> String {
        let mut table = Table::new(self.header());
        for row in self.cells() {
            table.row(row);
        }
        format!(
            "retrieval benchmark on {} ({})\n{table}",
            self.dataset,
            self.seeds_note()
        )
    }

    /// A GitHub-flavoured markdown table for docs/results.md.
    pub fn to_markdown(&self) -> String {
        let header = self.header();
        let mut out = format!(
            "Retrieval benchmark on {} ({}).\n\n",
            self.dataset,
            self.seeds_note()
        );
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let _ = writeln!(
            out,
            "|{}",
            std::iter::once("---|")
                .chain(std::iter::repeat_n("---:|", header.len() - 1))
                .collect::<String>()
        );
        for row in self.cells() {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        out
    }
}

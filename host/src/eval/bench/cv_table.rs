//! The cross-validated bench's tables: the data set and its size first (tiles, classes, folds,
//! pooled queries, chance levels), then per method mAP, OA, κ and AA as mean ± std over seeds and
//! DHCNN's paired bootstrap intervals against it; then the settings each fold chose, and DHCNN's
//! per-class F1 and confusion matrix.

use std::fmt::Write as _;

use orbhash_cli::{Align, Table};

use super::super::bootstrap::BootstrapInterval;
use super::cv::{CvOutcome, MethodResult, Spread};

fn spread(s: Option<Spread>) -> String {
    match s {
        None => "—".into(),
        Some(s) if s.n <= 1 => format!("{:.4}", s.mean),
        Some(s) => format!("{:.4} ± {:.4}", s.mean, s.std),
    }
}

fn interval(i: Option<BootstrapInterval>) -> String {
    match i {
        None => "—".into(),
        Some(i) => format!(
            "{:+.4} [{:+.4}, {:+.4}]{}",
            i.mean_difference,
            i.low,
            i.high,
            if i.excludes_zero() { " *" } else { "" }
        ),
    }
}

const HEADER: [&str; 8] = [
    "method",
    "bits",
    "mAP",
    "OA",
    "κ",
    "AA",
    "DHCNN − method: mAP [95 % CI]",
    "DHCNN − method: OA [95 % CI]",
];

fn cells(result: &MethodResult) -> Vec<String> {
    vec![
        result.method.clone(),
        result.bits.map_or_else(|| "—".into(), |b| b.to_string()),
        spread(Some(result.map)),
        spread(result.overall_accuracy),
        spread(result.kappa),
        spread(result.average_accuracy),
        interval(result.dhcnn_minus_this_map),
        interval(result.dhcnn_minus_this_oa),
    ]
}

impl CvOutcome {
    /// Data set, size and chance levels: the lines above every table.
    pub fn preamble(&self) -> String {
        let queries: Vec<String> = self
            .folds
            .counts
            .iter()
            .map(|c| c.iter().sum::<usize>().to_string())
            .collect();
        let seeds: Vec<String> = self.seeds.iter().map(u64::to_string).collect();
        format!(
            "cross-validated retrieval benchmark on {}: {} tiles, {} classes, {} folds ({}, {} \
             blocks), {} queries pooled (per fold {}); seeds {}; mAP tie-aware (expected over \
             tied orders); chance: OA {:.4} (uniform), {:.4} (majority share), mAP {:.4} (random \
             ranking); bootstrap {} resamples over queries, * = interval excludes 0",
            self.dataset,
            self.tiles,
            self.classes.len(),
            self.folds.folds,
            self.fold_source,
            self.spatial_blocks,
            self.tiles,
            queries.join("/"),
            seeds.join(","),
            self.chance.uniform_oa,
            self.chance.majority_share,
            self.chance.random_map,
            self.bootstrap_resamples,
        )
    }

    /// The settings each fold chose, one line per method, code length and seed.
    pub fn chosen_settings(&self) -> String {
        let mut out = String::new();
        for result in &self.methods {
            for run in &result.runs {
                if run.chosen.iter().all(Option::is_none) {
                    continue;
                }
                let chosen: Vec<String> = run
                    .chosen
                    .iter()
                    .map(|c| c.map_or_else(|| "—".into(), |s| s.to_string()))
                    .collect();
                let _ = writeln!(
                    out,
                    "{}{}{}: {}",
                    result.method,
                    result
                        .bits
                        .map_or_else(String::new, |b| format!(" {b} bits")),
                    run.seed.map_or_else(String::new, |s| format!(" seed {s}")),
                    chosen.join(" | ")
                );
            }
        }
        out
    }

    /// DHCNN's per-class F1 (mean over seeds) and its confusion matrix summed over seeds, at the
    /// longest code.
    pub fn dhcnn_detail(&self) -> Option<String> {
        let longest = self.bits.iter().copied().max()?;
        let dhcnn = self
            .methods
            .iter()
            .find(|r| r.method == "DHCNN" && r.bits == Some(longest))?;
        let classes = self.classes.len();
        let mut counts = vec![vec![0u64; classes]; classes];
        let mut f1 = vec![Vec::new(); classes];
        for run in &dhcnn.runs {
            let c = run.classification.as_ref()?;
            for (t, row) in c.confusion.counts.iter().enumerate() {
                for (p, v) in row.iter().enumerate() {
                    counts[t][p] += v;
                }
            }
            for (c, v) in run.per_class_f1.as_ref()?.iter().enumerate() {
                if let Some(v) = v {
                    f1[c].push(*v);
                }
            }
        }
        let header = ["class", "tiles", "F1"]
            .into_iter()
            .map(String::from)
            .chain((0..classes).map(|c| c.to_string()));
        let mut table = Table::new(header).align(&[Align::Left, Align::Right]);
        for (c, name) in self.classes.iter().enumerate() {
            let tiles: u64 = counts[c].iter().sum::<u64>() / dhcnn.runs.len().max(1) as u64;
            let mean_f1 =
                super::mean_std(&f1[c]).map_or_else(|| "—".into(), |(m, _)| format!("{m:.3}"));
            table.row(
                [format!("{c} {name}"), tiles.to_string(), mean_f1]
                    .into_iter()
                    .chain(counts[c].iter().map(u64::to_string)),
            );
        }
        Some(format!(
            "DHCNN {longest} bits: per-class F1 (mean over {} seeds) and confusion matrix summed \
             over seeds (rows: true class, columns: predicted)\n{table}",
            dhcnn.runs.len()
        ))
    }

    pub fn to_terminal(&self) -> String {
        let mut table = Table::new(HEADER);
        for result in &self.methods {
            table.row(cells(result));
        }
        let mut out = format!("{}\n{table}", self.preamble());
        let chosen = self.chosen_settings();
        if !chosen.is_empty() {
            out.push_str("settings chosen on the inner validation fold (fold 1 | fold 2 | …):\n");
            out.push_str(&chosen);
        }
        if let Some(detail) = self.dhcnn_detail() {
            out.push_str(&detail);
        }
        out
    }

    pub fn to_markdown(&self) -> String {
        let mut out = format!("{}.\n\n", self.preamble());
        let _ = writeln!(out, "| {} |", HEADER.join(" | "));
        let _ = writeln!(
            out,
            "|---|{}",
            std::iter::repeat_n("---:|", HEADER.len() - 1).collect::<String>()
        );
        for result in &self.methods {
            let _ = writeln!(out, "| {} |", cells(result).join(" | "));
        }
        out
    }
}

//! The `orbhash eval` entry point, its JSON and table output, the benchmark table, the metrics log
//! and the PNG plots.

use std::path::PathBuf;

use orbhash_host::eval::bench::mean_std;
use orbhash_host::eval::plot::{
    parse_metrics_log, plot_pr_curves, plot_precision_at_k, plot_training_loss, LossPoint,
};
use orbhash_host::eval::synthetic::clustered_codes;
use orbhash_host::eval::{
    evaluate, BenchTable, CodeSet, EvalError, EvalOptions, EvalReport, TieRule,
};

/// A small split: 4 classes, database and queries from the same clusters, noisy class scores.
fn split(flip: f64) -> (CodeSet, Vec<usize>, CodeSet, Vec<usize>, Vec<Vec<f32>>) {
    let (all, labels) = clustered_codes(4, 50, 32, flip, 2).unwrap();
    let db_rows: Vec<usize> = (0..all.len()).filter(|i| i % 5 != 0).collect();
    let q_rows: Vec<usize> = (0..all.len()).filter(|i| i % 5 == 0).collect();
    let scores = q_rows
        .iter()
        .enumerate()
        .map(|(n, &i)| {
            // Every seventh query is misclassified as the next class.
            let predicted = if n % 7 == 0 {
                (labels[i] + 1) % 4
            } else {
                labels[i]
            };
            (0..4)
                .map(|c| if c == predicted { 0.7 } else { 0.1 })
                .collect()
        })
        .collect();
    (
        all.select(&db_rows).unwrap(),
        db_rows.iter().map(|&i| labels[i]).collect(),
        all.select(&q_rows).unwrap(),
        q_rows.iter().map(|&i| labels[i]).collect(),
        scores,
    )
}

/// DHCNN's report on the low-noise [`split`], class scores included.
fn dhcnn_report() -> EvalReport {
    let (db, dl, q, ql, scores) = split(0.1);
    evaluate(
        &db,
        &dl,
        &q,
        &ql,
        Some(&scores),
        &EvalOptions::new("DHCNN", "toy"),
    )
    .unwrap()
}

/// Equal up to the last bit of each float: serde_json's default float parser (no
/// `float_roundtrip` feature) may read a printed f64 back one ulp off.
fn assert_same(a: &EvalReport, b: &EvalReport) {
    let (a, b) = (
        serde_json::to_value(a).unwrap(),
        serde_json::to_value(b).unwrap(),
    );
    fn walk(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
        use serde_json::Value::*;
        match (a, b) {
            (Number(x), Number(y)) => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                assert!(
                    (x - y).abs() <= 1e-12 * x.abs().max(1.0),
                    "{at}: {x} vs {y}"
                );
            }
            (Array(x), Array(y)) => {
                assert_eq!(x.len(), y.len(), "{at}");
                for (i, (x, y)) in x.iter().zip(y).enumerate() {
                    walk(x, y, &format!("{at}[{i}]"));
                }
            }
            (Object(x), Object(y)) => {
                assert_eq!(
                    x.keys().collect::<Vec<_>>(),
                    y.keys().collect::<Vec<_>>(),
                    "{at}"
                );
                for (k, v) in x {
                    walk(v, &y[k], &format!("{at}.{k}"));
                }
            }
            _ => assert_eq!(a, b, "{at}"),
        }
    }
    walk(&a, &b, "report");
}

#[test]
fn evaluate_builds_a_complete_report() {
    let report = dhcnn_report();
    assert_eq!(
        (report.bits, report.database, report.queries),
        (32, 160, 40)
    );
    assert_eq!(report.classes, 4);
    assert_eq!(report.retrieval.ties, TieRule::Stable);
    assert_eq!(report.retrieval.precision_at_k.len(), 160);
    assert_eq!(report.retrieval.radius.len(), 33);
    let c = report.classification.as_ref().unwrap();
    // Queries 0, 7, …, 35 are wrong: 6 of 40.
    assert!((c.overall_accuracy - 34.0 / 40.0).abs() < 1e-12);

    let json = report.to_json().unwrap();
    assert!(json.contains("\"ties\": \"stable\""));
    assert!(json.contains("\"empty_radius\": \"zero\""));
    let back: EvalReport = serde_json::from_str(&json).unwrap();
    assert_same(&back, &report);

    let table = report.to_table();
    for needle in [
        "DHCNN on toy: 32 bits, 160 database / 40 queries, 4 classes",
        "mAP (whole database)",
        "tie rule",
        "P@1 / R@1",
        "P@100 / R@100",
        "radius ≤ 2",
        "Cohen's kappa",
        "confusion matrix",
    ] {
        assert!(table.contains(needle), "missing {needle:?} in\n{table}");
    }
    assert!(
        !table.contains("P@500"),
        "k beyond the database is not shown"
    );
}

#[test]
fn json_file_round_trip() {
    let (db, dl, q, ql, _) = split(0.1);
    let report = evaluate(&db, &dl, &q, &ql, None, &EvalOptions::new("ITQ", "toy")).unwrap();
    assert!(report.classification.is_none());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    report.write_json(&path).unwrap();
    assert_same(&EvalReport::read_json(&path).unwrap(), &report);
    assert!(matches!(
        EvalReport::read_json(&dir.path().join("missing.json")),
        Err(EvalError::Io { .. })
    ));
}

#[test]
fn evaluate_checks_class_scores() {
    let (db, dl, q, ql, scores) = split(0.1);
    let opts = EvalOptions::new("DHCNN", "toy");
    assert!(matches!(
        evaluate(&db, &dl, &q, &ql, Some(&scores[..3]), &opts),
        Err(EvalError::ProbabilityCountMismatch {
            queries: 40,
            probs: 3
        })
    ));
    let five = EvalOptions {
        classes: Some(5),
        ..opts.clone()
    };
    assert!(matches!(
        evaluate(&db, &dl, &q, &ql, Some(&scores), &five),
        Err(EvalError::ClassCountMismatch {
            expected: 5,
            got: 4
        })
    ));
    let three = EvalOptions {
        classes: Some(3),
        ..opts
    };
    assert!(matches!(
        evaluate(&db, &dl, &q, &ql, None, &three),
        Err(EvalError::LabelOutOfRange {
            label: 3,
            classes: 3,
            ..
        })
    ));
}

#[test]
fn bench_table_terminal_and_markdown() {
    assert_eq!(mean_std(&[]), None);
    assert_eq!(mean_std(&[0.5]), Some((0.5, 0.0)));
    // Mean 2, sample variance ((1 + 0 + 1) / 2) = 1.
    assert_eq!(mean_std(&[1.0, 2.0, 3.0]), Some((2.0, 1.0)));

    let mut table = BenchTable::new("ucmd", &[16, 32, 64]);
    assert_eq!(table.oa_bits, 64);
    for (seed, map) in [0.90, 0.92].iter().enumerate() {
        table.record_map("DHCNN", 64, *map);
        table.record_map("DHCNN", 16, 0.8 + seed as f64 * 0.01);
        table.record_oa("DHCNN", 0.95);
    }
    table.record_map("LSH", 32, 0.3);
    assert!(!table.record_map("LSH", 48, 0.3), "48 bits is not a column");
    table.record_map("HashNet", 64, 0.85);

    let text = table.to_terminal();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("ucmd"));
    let row = |i: usize| lines[i].trim_start();
    assert!(row(1).starts_with("method"));
    assert!(row(1).contains("mAP 16 bits") && row(1).contains("OA (64 bits)"));
    assert!(row(2).starts_with("LSH"));
    assert!(row(2).contains("0.3000"));
    assert!(row(6).starts_with("DHCNN"));
    assert!(row(6).contains("0.9100 ± 0.0141"), "{}", lines[6]);
    assert!(row(6).contains("0.8050 ± 0.0071"));
    assert!(row(6).ends_with("0.9500 ± 0.0000"));
    assert!(row(7).starts_with("HashNet"), "a new method goes last");
    // The number columns are right-aligned, so every row ends where the header does.
    let width = lines[1].chars().count();
    assert!(
        lines[2..].iter().all(|l| l.chars().count() == width),
        "{text}"
    );

    let md = table.to_markdown();
    assert!(md.contains("| method | mAP 16 bits | mAP 32 bits | mAP 64 bits | OA (64 bits) |"));
    assert!(md.contains("|---|---:|---:|---:|---:|"));
    assert!(md.contains("| DHCNN | 0.8050 ± 0.0071 | — | 0.9100 ± 0.0141 | 0.9500 ± 0.0000 |"));
    assert!(md.contains("| ITQ | — | — | — | — |"));
}

#[test]
fn bench_table_takes_reports() {
    let report = dhcnn_report();
    let mut table = BenchTable::new("toy", &[16, 32]);
    assert!(table.record(&report));
    let row = table.rows.iter().find(|r| r.method == "DHCNN").unwrap();
    assert_eq!(row.map[1], vec![report.retrieval.map]);
    assert_eq!(row.oa.len(), 1, "32 bits is the OA length here");
}

#[test]
fn metrics_log_parsing() {
    let text = r#"{"epoch": 0, "step": 0, "loss": 2.5, "lr": 0.01}

{"epoch": 0, "step": 10, "loss": 2.0}
{"epoch": 0, "map": 0.5}
{"epoch": 1, "step": 20, "loss": null}
{"epoch": 1, "step": 30, "loss": 1.5}
"#;
    let points = parse_metrics_log(text, "log.jsonl".as_ref()).unwrap();
    assert_eq!(
        points,
        vec![
            LossPoint {
                epoch: 0.0,
                step: 0,
                loss: 2.5
            },
            LossPoint {
                epoch: 0.0,
                step: 10,
                loss: 2.0
            },
            LossPoint {
                epoch: 1.0,
                step: 30,
                loss: 1.5
            },
        ]
    );
    let bad = "{\"epoch\": 0, \"step\": 0, \"loss\": 1}\n{not json}\n";
    assert!(matches!(
        parse_metrics_log(bad, "log.jsonl".as_ref()),
        Err(EvalError::MetricsLog { line: 2, .. })
    ));
    let missing = "{\"epoch\": 0, \"loss\": 1}\n";
    assert!(matches!(
        parse_metrics_log(missing, "log.jsonl".as_ref()),
        Err(EvalError::MetricsLog { line: 1, .. })
    ));
}

/// Writes the three plots, into `$ORBHASH_EVAL_SAMPLES` when set (to look at them), else into a
/// temporary folder, and checks they are PNGs of the documented size.
#[test]
fn plots_are_written_as_png() {
    let keep = std::env::var_os("ORBHASH_EVAL_SAMPLES").map(PathBuf::from);
    let temp = tempfile::tempdir().unwrap();
    let dir = keep.unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir).unwrap();

    let good = dhcnn_report();
    let (db, dl, q, ql, _) = split(0.3);
    let worse = evaluate(&db, &dl, &q, &ql, None, &EvalOptions::new("LSH", "toy")).unwrap();

    let pr = dir.join("pr_curve.png");
    let pk = dir.join("precision_at_k.png");
    let loss = dir.join("training_loss.png");
    plot_pr_curves(&pr, &[&good, &worse]).unwrap();
    plot_precision_at_k(&pk, &[&good, &worse]).unwrap();
    let points: Vec<LossPoint> = (0..200)
        .map(|s| LossPoint {
            epoch: (s / 20) as f64,
            step: s,
            loss: 2.0 * (-(s as f64) / 60.0).exp() + 0.1 * ((s * 7919 % 13) as f64 / 13.0),
        })
        .collect();
    plot_training_loss(&loss, &points, "DHCNN training loss (synthetic test data)").unwrap();
    for path in [&pr, &pk, &loss] {
        let image = image::open(path).unwrap();
        assert_eq!(
            (image.width(), image.height()),
            (900, 600),
            "{}",
            path.display()
        );
    }
    assert!(matches!(
        plot_training_loss(&dir.join("empty.png"), &[], "empty"),
        Err(EvalError::NothingToPlot(_))
    ));
}

//! Retrieval metrics against values computed by hand and against naive reference implementations.

use orbhash_host::eval::synthetic::{clustered_codes, random_codes};
use orbhash_host::eval::{
    evaluate_retrieval, CodeSet, EmptyRadius, EvalError, RetrievalMetrics, RetrievalOptions,
    TieRule,
};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

fn options(ties: TieRule) -> RetrievalOptions {
    RetrievalOptions {
        ties,
        ..RetrievalOptions::default()
    }
}

/// The hand-worked case: K = 2, query 00 with label 0. Database (distance, label):
/// j0 (1, 1), j1 (0, 1), j2 (1, 0), j3 (2, 0), j4 (1, 0). Relevant: j2, j3, j4 (R = 3).
fn five_items() -> (CodeSet, Vec<usize>, CodeSet, Vec<usize>) {
    let database = CodeSet::from_bool_rows(&[
        vec![true, false],
        vec![false, false],
        vec![false, true],
        vec![true, true],
        vec![true, false],
    ])
    .unwrap();
    let query = CodeSet::from_bool_rows(&[vec![false, false]]).unwrap();
    (database, vec![1, 1, 0, 0, 0], query, vec![0])
}

#[test]
fn stable_ties_hand_computed() {
    let (db, dl, q, ql) = five_items();
    let m = evaluate_retrieval(&db, &dl, &q, &ql, &options(TieRule::Stable)).unwrap();
    // Stable order: j1 (d0), j0, j2, j4 (d1, database order), j3 (d2) → relevance N N R R R.
    // AP = (1/3 + 2/4 + 3/5) / 3 = 43/90.
    assert!(close(m.map, 43.0 / 90.0), "{}", m.map);
    assert_eq!(m.ties, TieRule::Stable);
    let p = [0.0, 0.0, 1.0 / 3.0, 2.0 / 4.0, 3.0 / 5.0];
    let r = [0.0, 0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0];
    assert_eq!(m.precision_at_k.len(), 5, "k capped at N");
    for k in 0..5 {
        assert!(close(m.precision_at_k[k], p[k]), "P@{}", k + 1);
        assert!(close(m.recall_at_k[k], r[k]), "R@{}", k + 1);
    }
    assert_eq!(m.precision_at(3), Some(1.0 / 3.0));
    assert_eq!(m.precision_at(0), None);
    assert_eq!(m.precision_at(6), None);
}

#[test]
fn expected_ties_hand_computed() {
    let (db, dl, q, ql) = five_items();
    let m = evaluate_retrieval(&db, &dl, &q, &ql, &options(TieRule::Expected)).unwrap();
    // The tied group at d = 1 holds {N, R, R} after one non-relevant item. Its three orders
    // RRN, RNR, NRR add 1/2 + 2/3, 1/2 + 2/4, 1/3 + 2/4 to the precision sum: mean 1.
    // j3 then adds 3/5. AP = (1 + 3/5) / 3 = 8/15.
    assert!(close(m.map, 8.0 / 15.0), "{}", m.map);
    assert_eq!(m.ties, TieRule::Expected);
    // Expected hits in the top k: 0, 2/3, 4/3, 2, 3.
    let p = [0.0, 1.0 / 3.0, 4.0 / 9.0, 2.0 / 4.0, 3.0 / 5.0];
    let r = [0.0, 2.0 / 9.0, 4.0 / 9.0, 2.0 / 3.0, 1.0];
    for k in 0..5 {
        assert!(close(m.precision_at_k[k], p[k]), "P@{}", k + 1);
        assert!(close(m.recall_at_k[k], r[k]), "R@{}", k + 1);
    }
}

#[test]
fn radius_hand_computed() {
    let (db, dl, q, ql) = five_items();
    for ties in [TieRule::Stable, TieRule::Expected] {
        let m = evaluate_retrieval(&db, &dl, &q, &ql, &options(ties)).unwrap();
        assert_eq!(m.radius.len(), 3);
        // r = 0: j1 only (not relevant). r = 1: 4 items, 2 relevant. r = 2: all 5, 3 relevant.
        let expect = [(0.0, 0.0, 1.0), (0.5, 2.0 / 3.0, 4.0), (0.6, 1.0, 5.0)];
        for (point, (p, r, n)) in m.radius.iter().zip(expect) {
            assert!(close(point.precision, p), "{ties:?} r={}", point.radius);
            assert!(close(point.recall, r));
            assert!(close(point.mean_retrieved, n));
            assert_eq!(point.empty_queries, 0);
        }
        let pr = m.pr_curve();
        assert_eq!(pr, vec![(0.0, 0.0), (2.0 / 3.0, 0.5), (1.0, 0.6)]);
    }
}

#[test]
fn empty_radius_conventions() {
    // Two queries, K = 2. Query 0 is 11 (nothing at distance 0 in a database of 00 and 01);
    // query 1 is 00 (database item 0 at distance 0, relevant).
    let db = CodeSet::from_bool_rows(&[vec![false, false], vec![true, false]]).unwrap();
    let q = CodeSet::from_bool_rows(&[vec![true, true], vec![false, false]]).unwrap();
    let (dl, ql) = (vec![0, 1], vec![0, 0]);
    let zero = evaluate_retrieval(&db, &dl, &q, &ql, &RetrievalOptions::default()).unwrap();
    // Radius 0: query 0 retrieves nothing → precision 0 (DPSH); query 1 → 1. Mean 0.5.
    assert!(close(zero.radius[0].precision, 0.5));
    assert_eq!(zero.radius[0].empty_queries, 1);
    assert!(close(zero.radius[0].recall, 0.5));
    let exclude = evaluate_retrieval(
        &db,
        &dl,
        &q,
        &ql,
        &RetrievalOptions {
            empty_radius: EmptyRadius::Exclude,
            ..RetrievalOptions::default()
        },
    )
    .unwrap();
    assert!(close(exclude.radius[0].precision, 1.0));
    assert_eq!(exclude.empty_radius, EmptyRadius::Exclude);
    // Recall is over all queries either way.
    assert!(close(exclude.radius[0].recall, 0.5));
}

#[test]
fn query_without_relevant_items_counts_as_zero() {
    let db = CodeSet::from_bool_rows(&[vec![false], vec![true]]).unwrap();
    let q = CodeSet::from_bool_rows(&[vec![false], vec![false]]).unwrap();
    // Query 1's label 7 is nowhere in the database.
    let m = evaluate_retrieval(&db, &[0, 1], &q, &[0, 7], &RetrievalOptions::default()).unwrap();
    assert!(close(m.map, 0.5));
    assert_eq!(m.average_precision, vec![1.0, 0.0]);
    assert_eq!(m.queries_without_relevant, 1);
    assert!(close(m.recall_at_k[1], 0.5));
}

/// A tiny LCG: reproducible cases without a dev-dependency.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn ap_and_hits(relevance: &[bool]) -> (f64, Vec<f64>) {
    let total = relevance.iter().filter(|&&r| r).count();
    let mut hits = 0;
    let mut sum = 0.0;
    let mut curve = Vec::new();
    for (i, &r) in relevance.iter().enumerate() {
        if r {
            hits += 1;
            sum += hits as f64 / (i + 1) as f64;
        }
        curve.push(hits as f64);
    }
    (if total > 0 { sum / total as f64 } else { 0.0 }, curve)
}

fn distances(db: &CodeSet, q: &CodeSet, qi: usize) -> Vec<u32> {
    db.distances(q.row(qi).unwrap()).unwrap()
}

/// Stable reference: a comparison sort on (distance, index).
fn naive_stable(db: &CodeSet, dl: &[usize], q: &CodeSet, ql: &[usize]) -> (f64, Vec<f64>) {
    let n = db.len();
    let mut map = 0.0;
    let mut p = vec![0.0; n];
    for (qi, &label) in ql.iter().enumerate() {
        let d = distances(db, q, qi);
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&j| (d[j], j));
        let rel: Vec<bool> = order.iter().map(|&j| dl[j] == label).collect();
        let (ap, hits) = ap_and_hits(&rel);
        map += ap;
        for k in 0..n {
            p[k] += hits[k] / (k + 1) as f64;
        }
    }
    let nq = q.len() as f64;
    (map / nq, p.iter().map(|v| v / nq).collect())
}

fn permutations(items: &mut Vec<usize>, k: usize, out: &mut Vec<Vec<usize>>) {
    if k == items.len() {
        out.push(items.clone());
        return;
    }
    for i in k..items.len() {
        items.swap(k, i);
        permutations(items, k + 1, out);
        items.swap(k, i);
    }
}

/// Expected reference: the mean over every ordering consistent with the distances.
fn naive_expected(db: &CodeSet, dl: &[usize], q: &CodeSet, ql: &[usize]) -> (f64, Vec<f64>) {
    let n = db.len();
    let mut all = Vec::new();
    permutations(&mut (0..n).collect(), 0, &mut all);
    let mut map = 0.0;
    let mut p = vec![0.0; n];
    for (qi, &label) in ql.iter().enumerate() {
        let d = distances(db, q, qi);
        let consistent: Vec<&Vec<usize>> = all
            .iter()
            .filter(|o| o.windows(2).all(|w| d[w[0]] <= d[w[1]]))
            .collect();
        let count = consistent.len() as f64;
        for order in consistent {
            let rel: Vec<bool> = order.iter().map(|&j| dl[j] == label).collect();
            let (ap, hits) = ap_and_hits(&rel);
            map += ap / count;
            for k in 0..n {
                p[k] += hits[k] / (k + 1) as f64 / count;
            }
        }
    }
    let nq = q.len() as f64;
    (map / nq, p.iter().map(|v| v / nq).collect())
}

#[test]
fn matches_naive_references_on_random_small_cases() {
    let mut rng = Lcg(7);
    for case in 0..40 {
        let bits = 1 + rng.next(3) as usize;
        let n = 1 + rng.next(6) as usize;
        let classes = 1 + rng.next(3) as usize;
        let rows = |rng: &mut Lcg, count: usize| -> Vec<Vec<bool>> {
            (0..count)
                .map(|_| (0..bits).map(|_| rng.next(2) == 1).collect())
                .collect()
        };
        let db = CodeSet::from_bool_rows(&rows(&mut rng, n)).unwrap();
        let q = CodeSet::from_bool_rows(&rows(&mut rng, 3)).unwrap();
        let dl: Vec<usize> = (0..n).map(|_| rng.next(classes as u64) as usize).collect();
        let ql: Vec<usize> = (0..3).map(|_| rng.next(classes as u64) as usize).collect();
        for (ties, reference) in [
            (TieRule::Stable, naive_stable(&db, &dl, &q, &ql)),
            (TieRule::Expected, naive_expected(&db, &dl, &q, &ql)),
        ] {
            let m = evaluate_retrieval(&db, &dl, &q, &ql, &options(ties)).unwrap();
            assert!(
                (m.map - reference.0).abs() < 1e-9,
                "case {case} {ties:?}: {} vs {}",
                m.map,
                reference.0
            );
            for (k, (a, b)) in m.precision_at_k.iter().zip(&reference.1).enumerate() {
                assert!((a - b).abs() < 1e-9, "case {case} {ties:?} P@{}", k + 1);
            }
        }
    }
}

#[test]
fn clusters_rank_well_and_random_codes_do_not() {
    let (codes, labels) = clustered_codes(5, 40, 32, 0.1, 3).unwrap();
    let m = evaluate_retrieval(
        &codes,
        &labels,
        &codes,
        &labels,
        &RetrievalOptions::default(),
    )
    .unwrap();
    assert!(m.map > 0.95, "clustered mAP {}", m.map);
    let (random, labels) = random_codes(200, 5, 32, 4).unwrap();
    let m = evaluate_retrieval(
        &random,
        &labels,
        &random,
        &labels,
        &RetrievalOptions::default(),
    )
    .unwrap();
    assert!(m.map < 0.35, "random mAP {}", m.map);
    // Curves are means of probabilities: within [0, 1], recall growing with k and radius.
    assert!(m.recall_at_k.windows(2).all(|w| w[0] <= w[1] + 1e-12));
    assert!(m
        .radius
        .windows(2)
        .all(|w| w[0].recall <= w[1].recall + 1e-12));
    assert!((m.radius.last().unwrap().recall - 1.0).abs() < 1e-12);
}

#[test]
fn max_k_caps_the_curves() {
    let (codes, labels) = clustered_codes(3, 10, 16, 0.1, 1).unwrap();
    let m: RetrievalMetrics = evaluate_retrieval(
        &codes,
        &labels,
        &codes,
        &labels,
        &RetrievalOptions {
            max_k: 7,
            ..RetrievalOptions::default()
        },
    )
    .unwrap();
    assert_eq!(m.precision_at_k.len(), 7);
    assert_eq!(m.recall_at_k.len(), 7);
    assert_eq!(m.radius.len(), 17);
}

#[test]
fn result_does_not_depend_on_thread_count() {
    let (codes, labels) = clustered_codes(4, 150, 48, 0.3, 9).unwrap();
    let run = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                evaluate_retrieval(
                    &codes,
                    &labels,
                    &codes,
                    &labels,
                    &options(TieRule::Expected),
                )
                .unwrap()
            })
    };
    assert_eq!(run(1), run(3));
}

#[test]
fn bad_input_is_a_typed_error() {
    let (db, dl, q, ql) = five_items();
    let opts = RetrievalOptions::default();
    let empty = CodeSet::new(2).unwrap();
    assert!(matches!(
        evaluate_retrieval(&empty, &[], &q, &ql, &opts),
        Err(EvalError::EmptyDatabase)
    ));
    assert!(matches!(
        evaluate_retrieval(&db, &dl, &empty, &[], &opts),
        Err(EvalError::EmptyQueries)
    ));
    assert!(matches!(
        evaluate_retrieval(&db, &dl[..4], &q, &ql, &opts),
        Err(EvalError::LabelCountMismatch {
            what: "database",
            codes: 5,
            labels: 4
        })
    ));
    assert!(matches!(
        evaluate_retrieval(&db, &dl, &q, &[0, 1], &opts),
        Err(EvalError::LabelCountMismatch {
            what: "queries",
            ..
        })
    ));
    let q3 = CodeSet::from_bool_rows(&[vec![false; 3]]).unwrap();
    assert!(matches!(
        evaluate_retrieval(&db, &dl, &q3, &ql, &opts),
        Err(EvalError::BitsMismatch {
            database: 2,
            queries: 3
        })
    ));
    let zero_k = RetrievalOptions { max_k: 0, ..opts };
    assert!(matches!(
        evaluate_retrieval(&db, &dl, &q, &ql, &zero_k),
        Err(EvalError::InvalidOption { .. })
    ));
}

/// `cargo test --release -p orbhash-host --test eval_retrieval -- --ignored
/// --nocapture`: the timing quoted in the evaluation docs (5,000 × 5,000 at 64 bits).
#[test]
#[ignore = "timing, run in release by hand"]
fn timing_5000_by_5000_at_64_bits() {
    // 10,000 clustered codes, alternate rows to database and queries: 5,000 each, 25 classes.
    let (all, labels) = clustered_codes(25, 400, 64, 0.2, 1).unwrap();
    let even: Vec<usize> = (0..all.len()).step_by(2).collect();
    let odd: Vec<usize> = (1..all.len()).step_by(2).collect();
    let (db, q) = (all.select(&even).unwrap(), all.select(&odd).unwrap());
    let dl: Vec<usize> = even.iter().map(|&i| labels[i]).collect();
    let ql: Vec<usize> = odd.iter().map(|&i| labels[i]).collect();
    for ties in [TieRule::Stable, TieRule::Expected] {
        let start = std::time::Instant::now();
        let m = evaluate_retrieval(&db, &dl, &q, &ql, &options(ties)).unwrap();
        println!(
            "{} × {} at 64 bits, {ties:?}: {:.3} s on {} threads (mAP {:.4})",
            q.len(),
            db.len(),
            start.elapsed().as_secs_f64(),
            rayon::current_num_threads(),
            m.map
        );
    }
}

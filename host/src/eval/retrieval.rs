//! Retrieval metrics by Hamming ranking: mAP over the whole database, precision and recall at the
//! first k retrieved, and precision and recall within a Hamming radius.
//!
//! Relevance is "same label". Distances are integers in `0..=K`, so each query's database is ranked
//! by a counting sort over K + 1 buckets instead of a comparison sort: O(N + K) per query. Queries
//! run in parallel (rayon) in fixed-size chunks whose partial sums are added in query order, so
//! the result is the same to the last bit whatever the thread count.
//!
//! # Ties
//! Many database items share a distance (there are only K + 1 distances), so the order inside a tie
//! changes AP and P@k. Two documented rules ([`TieRule`]):
//! - `Stable` (default): ties keep database order, the stable sort of the DPSH and DHCNN authors'
//!   MATLAB evaluation. Results from their code are comparable with this rule only.
//! - `Expected`: the expected value over all orderings inside each tied group (McSherry & Najork,
//!   "Computing information retrieval performance measures efficiently in the presence of tied
//!   scores", ECIR 2008). Independent of database order, so it cannot be flattered by how the
//!   database happens to be stored.
//!
//! # Conventions
//! - A query with no relevant item in the database has AP 0, recall 0 at every k and radius, and
//!   still counts in the means (as in the DPSH code, which sums over queries and divides by the
//!   query count). [`RetrievalMetrics::queries_without_relevant`] says how many there were.
//! - Precision within radius r of a query that retrieves nothing within r: 0 by default, as in the
//!   DPSH code ([`EmptyRadius::Zero`]); or such queries are left out of that radius's mean precision
//!   ([`EmptyRadius::Exclude`]). Recall within r is always averaged over all queries.
//! - P@k and R@k are computed for k = 1..=min(max_k, N), max_k = 1000 by default.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{CodeSet, EvalError};

/// How items at the same Hamming distance are ordered for AP and P@k. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TieRule {
    /// Ties keep database order (stable sort), as the DPSH/DHCNN authors' code.
    #[default]
    Stable,
    /// Expected value over random orderings within tied groups (McSherry & Najork 2008).
    Expected,
}

impl std::fmt::Display for TieRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TieRule::Stable => "stable (ties keep database order)",
            TieRule::Expected => "expected (tie-aware, McSherry & Najork 2008)",
        })
    }
}

/// What precision within a radius is for a query that retrieves nothing within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmptyRadius {
    /// Precision 0, averaged over all queries (the DPSH code's convention).
    #[default]
    Zero,
    /// Left out of that radius's mean precision.
    Exclude,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetrievalOptions {
    pub ties: TieRule,
    /// Longest k for P@k and R@k (capped at the database size).
    pub max_k: usize,
    pub empty_radius: EmptyRadius,
}

impl Default for RetrievalOptions {
    fn default() -> Self {
        Self {
            ties: TieRule::Stable,
            max_k: 1000,
            empty_radius: EmptyRadius::Zero,
        }
    }
}

/// Mean precision and recall over queries at one Hamming radius.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RadiusPoint {
    pub radius: u32,
    pub precision: f64,
    pub recall: f64,
    /// Mean number of database items within the radius.
    pub mean_retrieved: f64,
    /// Queries that retrieve nothing within the radius.
    pub empty_queries: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrievalMetrics {
    pub bits: usize,
    pub database: usize,
    pub queries: usize,
    pub ties: TieRule,
    pub empty_radius: EmptyRadius,
    /// Mean average precision over all queries, ranking the whole database.
    pub map: f64,
    pub queries_without_relevant: usize,
    /// `precision_at_k[k - 1]` is mean precision over the first k retrieved.
    pub precision_at_k: Vec<f64>,
    /// `recall_at_k[k - 1]` is mean recall over the first k retrieved.
    pub recall_at_k: Vec<f64>,
    /// Radii 0..=K in order.
    pub radius: Vec<RadiusPoint>,
    /// AP of each query, in query order.
    pub average_precision: Vec<f64>,
}

impl RetrievalMetrics {
    /// Mean precision over the first `k` retrieved, when computed.
    pub fn precision_at(&self, k: usize) -> Option<f64> {
        self.precision_at_k.get(k.checked_sub(1)?).copied()
    }

    /// Mean recall over the first `k` retrieved, when computed.
    pub fn recall_at(&self, k: usize) -> Option<f64> {
        self.recall_at_k.get(k.checked_sub(1)?).copied()
    }

    /// The precision-recall curve over Hamming radii 0..=K, as (recall, precision) points in order
    /// of growing radius (so growing recall).
    pub fn pr_curve(&self) -> Vec<(f64, f64)> {
        self.radius
            .iter()
            .map(|p| (p.recall, p.precision))
            .collect()
    }
}

/// Queries per parallel task: big enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 64;

/// Ranks `database` for every query by Hamming distance and averages the metrics over queries.
pub fn evaluate_retrieval(
    database: &CodeSet,
    database_labels: &[usize],
    queries: &CodeSet,
    query_labels: &[usize],
    options: &RetrievalOptions,
) -> Result<RetrievalMetrics, EvalError> {
    if database.is_empty() {
        return Err(EvalError::EmptyDatabase);
    }
    if queries.is_empty() {
        return Err(EvalError::EmptyQueries);
    }
    if database.bits() != queries.bits() {
        return Err(EvalError::BitsMismatch {
            database: database.bits(),
            queries: queries.bits(),
        });
    }
    if database_labels.len() != database.len() {
        return Err(EvalError::LabelCountMismatch {
            what: "database",
            codes: database.len(),
            labels: database_labels.len(),
        });
    }
    if query_labels.len() != queries.len() {
        return Err(EvalError::LabelCountMismatch {
            what: "queries",
            codes: queries.len(),
            labels: query_labels.len(),
        });
    }
    if options.max_k == 0 {
        return Err(EvalError::InvalidOption {
            what: "max_k",
            value: "0".into(),
            why: "P@k needs k ≥ 1",
        });
    }

    let bits = database.bits();
    let max_k = options.max_k.min(database.len());
    let query_ids: Vec<usize> = (0..queries.len()).collect();
    let partials: Vec<Partial> = query_ids
        .par_chunks(CHUNK)
        .map(|chunk| {
            let mut partial = Partial::new(bits, max_k);
            let mut scratch = Scratch::new(database.len(), bits, max_k);
            for &q in chunk {
                let (Some(row), Some(&label)) = (queries.row(q), query_labels.get(q)) else {
                    continue;
                };
                scratch.rank(database, database_labels, row, label, options.ties);
                partial.add(&scratch);
            }
            partial
        })
        .collect();

    let mut total = Partial::new(bits, max_k);
    for partial in &partials {
        total.merge(partial);
    }
    Ok(total.finish(queries.len(), database.len(), options))
}

/// Ranks `database` for every query by a float distance (smaller first) instead of a Hamming
/// distance, with the same AP and P@k as [`evaluate_retrieval`]: for methods that keep float
/// features (kNN) or only score classes (logistic regression, majority class).
///
/// `distances` is row-major, one row of `database_labels.len()` values per query. Exactly equal
/// distances are ties under `options.ties`, so a ranking that only orders classes (every item of a
/// class at one distance) gets its expected AP under [`TieRule::Expected`]. Each query's
/// distances are replaced by their dense rank (0 for the nearest value, 1 for the next, …) and
/// ranked as integer distances, so the two functions share their arithmetic. A float ranking has
/// no Hamming radius: `radius` is empty and `bits` is 0.
pub fn evaluate_float_ranking(
    distances: &[f32],
    database_labels: &[usize],
    query_labels: &[usize],
    options: &RetrievalOptions,
) -> Result<RetrievalMetrics, EvalError> {
    let n = database_labels.len();
    if n == 0 {
        return Err(EvalError::EmptyDatabase);
    }
    if query_labels.is_empty() {
        return Err(EvalError::EmptyQueries);
    }
    if distances.len() != n * query_labels.len() {
        return Err(EvalError::RaggedFlat {
            what: "query-to-database distances",
            len: distances.len(),
            row_len: n,
        });
    }
    if let Some(row) = distances
        .chunks_exact(n)
        .position(|row| row.iter().any(|d| !d.is_finite()))
    {
        return Err(EvalError::NonFinite {
            what: "query-to-database distances",
            row,
        });
    }
    if options.max_k == 0 {
        return Err(EvalError::InvalidOption {
            what: "max_k",
            value: "0".into(),
            why: "P@k needs k ≥ 1",
        });
    }
    // At most n distinct distances, so n buckets suffice (bucket n stays empty).
    let buckets = n;
    let max_k = options.max_k.min(n);
    let query_ids: Vec<usize> = (0..query_labels.len()).collect();
    let partials: Vec<Partial> = query_ids
        .par_chunks(CHUNK)
        .map(|chunk| {
            let mut partial = Partial::new(buckets, max_k);
            let mut scratch = Scratch::new(n, buckets, max_k);
            let mut order: Vec<usize> = (0..n).collect();
            for &q in chunk {
                let row = &distances[q * n..(q + 1) * n];
                order.sort_by(|&a, &b| row[a].total_cmp(&row[b]).then(a.cmp(&b)));
                let mut rank = 0u32;
                for (position, &item) in order.iter().enumerate() {
                    if position > 0 && row[item] != row[order[position - 1]] {
                        rank += 1;
                    }
                    scratch.distances[item] = rank;
                }
                scratch.rank_distances(database_labels, query_labels[q], options.ties);
                partial.add(&scratch);
            }
            partial
        })
        .collect();
    let mut total = Partial::new(buckets, max_k);
    for partial in &partials {
        total.merge(partial);
    }
    let mut metrics = total.finish(query_labels.len(), n, options);
    metrics.bits = 0;
    metrics.radius.clear();
    Ok(metrics)
}

/// Per-thread buffers, reused across queries so the hot loop allocates nothing.
struct Scratch {
    bits: usize,
    distances: Vec<u32>,
    /// Items and relevant items at each distance.
    count: Vec<u32>,
    relevant: Vec<u32>,
    /// Items and relevant items at smaller distances than each distance.
    before: Vec<u32>,
    relevant_before: Vec<u32>,
    /// Running counters per distance for the stable ranking.
    seen: Vec<u32>,
    relevant_seen: Vec<u32>,
    /// Relevance of the first max_k ranked items (stable rule).
    top: Vec<bool>,
    /// This query's results.
    ap: f64,
    total_relevant: u32,
    /// Relevant items among the first k, k = 1..=max_k (a fraction under the expected rule).
    hits_at_k: Vec<f64>,
}

impl Scratch {
    fn new(n: usize, bits: usize, max_k: usize) -> Self {
        let buckets = bits + 1;
        Self {
            bits,
            distances: vec![0; n],
            count: vec![0; buckets],
            relevant: vec![0; buckets],
            before: vec![0; buckets],
            relevant_before: vec![0; buckets],
            seen: vec![0; buckets],
            relevant_seen: vec![0; buckets],
            top: vec![false; max_k],
            ap: 0.0,
            total_relevant: 0,
            hits_at_k: vec![0.0; max_k],
        }
    }

    fn rank(
        &mut self,
        database: &CodeSet,
        labels: &[usize],
        query: &[u64],
        label: usize,
        ties: TieRule,
    ) {
        database.distances_into(query, &mut self.distances);
        self.rank_distances(labels, label, ties);
    }

    /// Ranks by `self.distances`, already filled with integer distances in `0..=bits`.
    fn rank_distances(&mut self, labels: &[usize], label: usize, ties: TieRule) {
        for v in [
            &mut self.count,
            &mut self.relevant,
            &mut self.seen,
            &mut self.relevant_seen,
        ] {
            v.fill(0);
        }
        for (&d, &l) in self.distances.iter().zip(labels) {
            // Distances never exceed K: popcount of K live bits.
            let d = (d as usize).min(self.bits);
            self.count[d] += 1;
            self.relevant[d] += u32::from(l == label);
        }
        let (mut all, mut rel) = (0u32, 0u32);
        for d in 0..=self.bits {
            self.before[d] = all;
            self.relevant_before[d] = rel;
            all += self.count[d];
            rel += self.relevant[d];
        }
        self.total_relevant = rel;
        match ties {
            TieRule::Stable => self.rank_stable(labels, label),
            TieRule::Expected => self.rank_expected(),
        }
        if self.total_relevant > 0 {
            self.ap /= f64::from(self.total_relevant);
        } else {
            self.ap = 0.0;
        }
    }

    /// Database order inside ties: item j at distance d is at 0-based position
    /// `before[d] + (earlier items at d)`, and likewise among relevant items.
    fn rank_stable(&mut self, labels: &[usize], label: usize) {
        let max_k = self.top.len();
        let mut ap = 0.0;
        for (&d, &l) in self.distances.iter().zip(labels) {
            let d = (d as usize).min(self.bits);
            let position = self.before[d] + self.seen[d];
            self.seen[d] += 1;
            let hit = l == label;
            if hit {
                let relevant_rank = self.relevant_before[d] + self.relevant_seen[d] + 1;
                self.relevant_seen[d] += 1;
                ap += f64::from(relevant_rank) / f64::from(position + 1);
            }
            if let Some(slot) = self.top.get_mut(position as usize) {
                *slot = hit;
            }
        }
        self.ap = ap;
        let mut hits = 0u32;
        for (k, slot) in self.top.iter().take(max_k).enumerate() {
            hits += u32::from(*slot);
            self.hits_at_k[k] = f64::from(hits);
        }
    }

    /// Expected values over uniformly random orders inside each tied group. For a group of n items,
    /// r of them relevant, after a items of which b relevant: position a + i (1-based i) is relevant
    /// with probability r/n, and given that, the i − 1 positions before it in the group hold
    /// (i − 1)(r − 1)/(n − 1) relevant items on average; so the group adds
    /// Σᵢ (r/n)·(b + 1 + (i − 1)(r − 1)/(n − 1)) / (a + i) to the sum of precisions, and
    /// P@k for a < k ≤ a + n counts b + (k − a)·r/n hits.
    fn rank_expected(&mut self) {
        let max_k = self.hits_at_k.len();
        let mut ap = 0.0;
        for d in 0..=self.bits {
            let n = self.count[d];
            if n == 0 {
                continue;
            }
            let r = f64::from(self.relevant[d]);
            let a = self.before[d];
            let b = f64::from(self.relevant_before[d]);
            let nf = f64::from(n);
            if r > 0.0 {
                let p_hit = r / nf;
                let slope = if n > 1 { (r - 1.0) / (nf - 1.0) } else { 0.0 };
                for i in 1..=n {
                    let before_in_group = f64::from(i - 1) * slope;
                    ap += p_hit * (b + 1.0 + before_in_group) / f64::from(a + i);
                }
            }
            let first = a as usize;
            let last = ((a + n) as usize).min(max_k);
            for k in first + 1..=last {
                self.hits_at_k[k - 1] = b + (k - first) as f64 * r / nf;
            }
        }
        self.ap = ap;
    }
}

/// Sums over a run of queries.
struct Partial {
    ap: Vec<f64>,
    without_relevant: usize,
    precision_at_k: Vec<f64>,
    recall_at_k: Vec<f64>,
    radius_precision: Vec<f64>,
    radius_nonempty: Vec<usize>,
    radius_recall: Vec<f64>,
    radius_retrieved: Vec<f64>,
}

impl Partial {
    fn new(bits: usize, max_k: usize) -> Self {
        Self {
            ap: Vec::new(),
            without_relevant: 0,
            precision_at_k: vec![0.0; max_k],
            recall_at_k: vec![0.0; max_k],
            radius_precision: vec![0.0; bits + 1],
            radius_nonempty: vec![0; bits + 1],
            radius_recall: vec![0.0; bits + 1],
            radius_retrieved: vec![0.0; bits + 1],
        }
    }

    fn add(&mut self, s: &Scratch) {
        self.ap.push(s.ap);
        let total = f64::from(s.total_relevant);
        if s.total_relevant == 0 {
            self.without_relevant += 1;
        }
        for (k, &hits) in s.hits_at_k.iter().enumerate() {
            self.precision_at_k[k] += hits / (k + 1) as f64;
            if total > 0.0 {
                self.recall_at_k[k] += hits / total;
            }
        }
        let (mut retrieved, mut hits) = (0u32, 0u32);
        for d in 0..=s.bits {
            retrieved += s.count[d];
            hits += s.relevant[d];
            self.radius_retrieved[d] += f64::from(retrieved);
            if retrieved > 0 {
                self.radius_precision[d] += f64::from(hits) / f64::from(retrieved);
                self.radius_nonempty[d] += 1;
            }
            if total > 0.0 {
                self.radius_recall[d] += f64::from(hits) / total;
            }
        }
    }

    fn merge(&mut self, other: &Partial) {
        self.ap.extend_from_slice(&other.ap);
        self.without_relevant += other.without_relevant;
        for (dst, src) in [
            (&mut self.precision_at_k, &other.precision_at_k),
            (&mut self.recall_at_k, &other.recall_at_k),
            (&mut self.radius_precision, &other.radius_precision),
            (&mut self.radius_recall, &other.radius_recall),
            (&mut self.radius_retrieved, &other.radius_retrieved),
        ] {
            for (d, s) in dst.iter_mut().zip(src) {
                *d += s;
            }
        }
        for (d, s) in self.radius_nonempty.iter_mut().zip(&other.radius_nonempty) {
            *d += s;
        }
    }

    fn finish(
        self,
        queries: usize,
        database: usize,
        options: &RetrievalOptions,
    ) -> RetrievalMetrics {
        let nq = queries as f64;
        let bits = self.radius_recall.len() - 1;
        let radius = (0..=bits)
            .map(|d| {
                let empty_queries = queries - self.radius_nonempty[d];
                let precision_denominator = match options.empty_radius {
                    EmptyRadius::Zero => nq,
                    EmptyRadius::Exclude => self.radius_nonempty[d] as f64,
                };
                RadiusPoint {
                    radius: d as u32,
                    precision: if precision_denominator > 0.0 {
                        self.radius_precision[d] / precision_denominator
                    } else {
                        0.0
                    },
                    recall: self.radius_recall[d] / nq,
                    mean_retrieved: self.radius_retrieved[d] / nq,
                    empty_queries,
                }
            })
            .collect();
        RetrievalMetrics {
            bits,
            database,
            queries,
            ties: options.ties,
            empty_radius: options.empty_radius,
            map: self.ap.iter().sum::<f64>() / nq,
            queries_without_relevant: self.without_relevant,
            precision_at_k: self.precision_at_k.iter().map(|s| s / nq).collect(),
            recall_at_k: self.recall_at_k.iter().map(|s| s / nq).collect(),
            radius,
            average_precision: self.ap,
        }
    }
}

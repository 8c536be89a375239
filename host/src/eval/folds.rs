//! Spatial-block k-fold cross-validation folds (issue 16 §4).
//!
//! Neighbouring patches of a scene look alike, so a fold takes whole spatial blocks (the blocks
//! the data builders record per patch): a query never has a near-copy of itself in the database.
//! A data set without blocks gives every tile a block of its own, which makes the same assignment
//! a seeded per-class split.
//!
//! The assignment is greedy and deterministic for a seed: blocks are taken largest first (equal
//! sizes in a seeded order) and each goes to the fold whose tile count and per-class counts it
//! brings closest to their targets (total / k), measured as the growth of
//! Σ_c (n_fc − t_c)² / t_c + (n_f − T)² / T. The first k blocks open the k folds, so no fold is
//! left empty. Every tile is in exactly one fold, hence a query exactly once over the k folds.

use std::collections::BTreeMap;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::EvalError;

/// Each sample's fold, and how the folds came about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Folds {
    pub folds: usize,
    /// `fold_of[i]`: the fold of sample `i`.
    pub fold_of: Vec<usize>,
    /// Distinct blocks per fold.
    pub blocks: Vec<usize>,
    /// Tiles per fold and class: `counts[fold][class]`.
    pub counts: Vec<Vec<usize>>,
}

impl Folds {
    /// Samples of fold `fold` (the queries of that outer fold), in sample order.
    pub fn members(&self, fold: usize) -> Vec<usize> {
        (0..self.fold_of.len())
            .filter(|&i| self.fold_of[i] == fold)
            .collect()
    }

    /// Samples of every other fold (that outer fold's database), in sample order.
    pub fn others(&self, fold: usize) -> Vec<usize> {
        (0..self.fold_of.len())
            .filter(|&i| self.fold_of[i] != fold)
            .collect()
    }
}

/// Fisher–Yates with a seeded ChaCha8 stream, so fold assignments repeat across machines.
fn shuffle<T>(items: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// Assigns whole blocks to `folds` folds. `block[i]` and `labels[i]` are sample `i`'s block id
/// and class (below `classes`).
pub fn assign_folds<B: Ord + Clone>(
    block: &[B],
    labels: &[usize],
    classes: usize,
    folds: usize,
    seed: u64,
) -> Result<Folds, EvalError> {
    if block.len() != labels.len() {
        return Err(EvalError::LabelCountMismatch {
            what: "fold assignment (blocks vs labels)",
            codes: block.len(),
            labels: labels.len(),
        });
    }
    if let Some(row) = labels.iter().position(|&l| l >= classes) {
        return Err(EvalError::LabelOutOfRange {
            what: "fold assignment",
            row,
            label: labels[row],
            classes,
        });
    }
    let mut members: BTreeMap<B, Vec<usize>> = BTreeMap::new();
    for (i, b) in block.iter().enumerate() {
        members.entry(b.clone()).or_default().push(i);
    }
    if folds < 2 || folds > members.len() {
        return Err(EvalError::InvalidOption {
            what: "folds",
            value: folds.to_string(),
            why: "cross-validation needs at least 2 folds and no more folds than spatial blocks",
        });
    }
    let mut order: Vec<Vec<usize>> = members.into_values().collect();
    shuffle(&mut order, &mut ChaCha8Rng::seed_from_u64(seed));
    // Stable: equal sizes keep the seeded order.
    order.sort_by_key(|m| std::cmp::Reverse(m.len()));

    let total = labels.len() as f64;
    let tile_target = total / folds as f64;
    let mut class_total = vec![0usize; classes];
    for &l in labels {
        class_total[l] += 1;
    }
    let class_target: Vec<f64> = class_total
        .iter()
        .map(|&n| n as f64 / folds as f64)
        .collect();
    let mut counts = vec![vec![0usize; classes]; folds];
    let mut tiles = vec![0usize; folds];
    let mut blocks = vec![0usize; folds];
    let mut fold_of = vec![usize::MAX; labels.len()];
    for (rank, samples) in order.iter().enumerate() {
        let mut histogram = vec![0usize; classes];
        for &i in samples {
            histogram[labels[i]] += 1;
        }
        let growth = |f: usize| {
            let square = |n: f64, t: f64| (n - t).powi(2) / t.max(1e-9);
            let mut g = square((tiles[f] + samples.len()) as f64, tile_target)
                - square(tiles[f] as f64, tile_target);
            for c in 0..classes {
                if histogram[c] > 0 {
                    g += square((counts[f][c] + histogram[c]) as f64, class_target[c])
                        - square(counts[f][c] as f64, class_target[c]);
                }
            }
            g
        };
        let fold = if rank < folds {
            rank
        } else {
            // Lowest growth; the lowest index on an exact tie, so the outcome is deterministic.
            (0..folds)
                .map(|f| (f, growth(f)))
                .fold(
                    (0, f64::INFINITY),
                    |best, (f, g)| {
                        if g < best.1 {
                            (f, g)
                        } else {
                            best
                        }
                    },
                )
                .0
        };
        tiles[fold] += samples.len();
        blocks[fold] += 1;
        for c in 0..classes {
            counts[fold][c] += histogram[c];
        }
        for &i in samples {
            fold_of[i] = fold;
        }
    }
    Ok(Folds {
        folds,
        fold_of,
        blocks,
        counts,
    })
}

/// An outer fold's database cut by whole blocks into inner-train and inner-validation, for
/// choosing settings without looking at the outer queries: the database's blocks get their own
/// assignment into max(k − 1, 2) folds and the first is the validation side. Both lists are in
/// sample order and hold only samples outside `outer_fold`.
pub fn inner_split<B: Ord + Clone>(
    outer: &Folds,
    outer_fold: usize,
    block: &[B],
    labels: &[usize],
    classes: usize,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>), EvalError> {
    let database = outer.others(outer_fold);
    let inner_blocks: Vec<B> = database.iter().map(|&i| block[i].clone()).collect();
    let inner_labels: Vec<usize> = database.iter().map(|&i| labels[i]).collect();
    let inner_folds = outer.folds.saturating_sub(1).max(2);
    // The seed is mixed with the outer fold so each outer fold cuts its database its own way.
    let inner_seed = seed ^ (outer_fold as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let inner = assign_folds(
        &inner_blocks,
        &inner_labels,
        classes,
        inner_folds,
        inner_seed,
    )?;
    let (mut train, mut validation) = (Vec::new(), Vec::new());
    for (position, &sample) in database.iter().enumerate() {
        if inner.fold_of[position] == 0 {
            validation.push(sample);
        } else {
            train.push(sample);
        }
    }
    Ok((train, validation))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// 60 blocks of 1–6 tiles over 4 classes, classes clumped by block as on a real scene.
    fn scene() -> (Vec<(usize, usize)>, Vec<usize>) {
        let (mut block, mut labels) = (Vec::new(), Vec::new());
        for b in 0..60usize {
            for t in 0..(1 + b * 7 % 6) {
                block.push((b / 10, b % 10));
                labels.push(if t == 0 { b % 4 } else { (b / 3) % 4 });
            }
        }
        (block, labels)
    }

    #[test]
    fn every_tile_is_a_query_once_and_no_block_straddles_folds() {
        let (block, labels) = scene();
        let folds = assign_folds(&block, &labels, 4, 5, 3).expect("folds");
        // Each sample's fold is its single query fold: the members of the 5 folds partition the
        // samples.
        let mut seen = vec![0usize; labels.len()];
        for f in 0..5 {
            for i in folds.members(f) {
                seen[i] += 1;
            }
            let database: BTreeSet<usize> = folds.others(f).into_iter().collect();
            assert!(folds.members(f).iter().all(|i| !database.contains(i)));
        }
        assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
        let mut fold_of_block: BTreeMap<(usize, usize), usize> = BTreeMap::new();
        for (i, b) in block.iter().enumerate() {
            let f = *fold_of_block.entry(*b).or_insert(folds.fold_of[i]);
            assert_eq!(f, folds.fold_of[i], "block {b:?} is in two folds");
        }
        assert_eq!(folds.blocks.iter().sum::<usize>(), 60);
        // Balanced: every fold within 25 % of the mean tile count.
        let mean = labels.len() as f64 / 5.0;
        for counts in &folds.counts {
            let n: usize = counts.iter().sum();
            assert!((n as f64 - mean).abs() <= 0.25 * mean, "{:?}", folds.counts);
        }
    }

    #[test]
    fn assignment_is_deterministic_and_seeded() {
        let (block, labels) = scene();
        let a = assign_folds(&block, &labels, 4, 5, 11).expect("folds");
        let b = assign_folds(&block, &labels, 4, 5, 11).expect("folds");
        assert_eq!(a, b);
        let c = assign_folds(&block, &labels, 4, 5, 12).expect("folds");
        assert_ne!(a.fold_of, c.fold_of);
    }

    #[test]
    fn one_block_per_tile_balances_each_class() {
        let labels: Vec<usize> = (0..100).map(|i| i % 4).collect();
        let block: Vec<usize> = (0..100).collect();
        let folds = assign_folds(&block, &labels, 4, 5, 0).expect("folds");
        for counts in &folds.counts {
            assert_eq!(counts, &vec![5, 5, 5, 5]);
        }
    }

    #[test]
    fn too_many_folds_is_an_error() {
        let labels = vec![0, 1, 0, 1];
        let block = vec![0, 0, 1, 1];
        assert!(assign_folds(&block, &labels, 2, 3, 0).is_err());
        assert!(assign_folds(&block, &labels, 2, 1, 0).is_err());
    }

    #[test]
    fn the_inner_split_never_holds_an_outer_query() {
        let (block, labels) = scene();
        let outer = assign_folds(&block, &labels, 4, 5, 1).expect("folds");
        for f in 0..5 {
            let (train, validation) =
                inner_split(&outer, f, &block, &labels, 4, 1).expect("inner split");
            let queries: BTreeSet<usize> = outer.members(f).into_iter().collect();
            assert!(!train.is_empty() && !validation.is_empty());
            for i in train.iter().chain(&validation) {
                assert!(!queries.contains(i), "outer query {i} in the inner split");
            }
            // Together they are the outer database, each sample once, blocks kept whole.
            let mut union: Vec<usize> = train.iter().chain(&validation).copied().collect();
            union.sort_unstable();
            assert_eq!(union, outer.others(f));
            let validation_blocks: BTreeSet<_> = validation.iter().map(|&i| block[i]).collect();
            assert!(train
                .iter()
                .all(|&i| !validation_blocks.contains(&block[i])));
        }
    }
}

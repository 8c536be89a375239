//! Database/query splits.
//!
//! - [`per_class_split`]: the paper's protocol (`FORMAT.md` beside this file): within each class a
//!   seeded random share of the images become queries, the rest the database (= training set).
//! - [`blocked_split`]: for patches cut from one scene. Neighbouring patches look alike (and with a
//!   stride below the patch size they share pixels), so a random split would leak the queries into
//!   the database. Whole spatial blocks go to one side instead.
//! - [`date_split`]: for a time series of one place. Every date shows the same ground, so a split
//!   by patch or by position would put the same field, seen days apart, on both sides. Whole dates
//!   go to one side instead.
//!
//! Both draw from ChaCha8 seeded with the user's seed and shuffle by a hand-written Fisher–Yates
//! over `next_u64`, so a seed gives the same split on every platform and every release of `rand`.

use std::collections::BTreeMap;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::manifest::SplitName;

/// A seeded RNG with a stable stream.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Fisher–Yates shuffle (modulo bias below 2^-40 for any slice that fits in memory).
pub fn shuffle<T>(items: &mut [T], rng: &mut impl RngCore) {
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// How many of `n` items become queries: `round(n × ratio)`, but at least one query and one
/// database item whenever `n ≥ 2`, so every class can be both searched for and found.
pub fn query_count(n: usize, query_ratio: f64) -> usize {
    let q = (n as f64 * query_ratio).round() as usize;
    if n >= 2 {
        q.clamp(1, n - 1)
    } else {
        q.min(n)
    }
}

/// The paper's per-class random split: for each label, `query_count(n, query_ratio)` of its items
/// (chosen by the seeded shuffle) are queries. Returns one [`SplitName`] per item.
pub fn per_class_split(labels: &[usize], query_ratio: f64, seed: u64) -> Vec<SplitName> {
    let mut by_class: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &label) in labels.iter().enumerate() {
        by_class.entry(label).or_default().push(i);
    }
    let mut out = vec![SplitName::Database; labels.len()];
    let mut rng = rng(seed);
    for members in by_class.values_mut() {
        shuffle(members, &mut rng);
        for &i in &members[..query_count(members.len(), query_ratio)] {
            out[i] = SplitName::Query;
        }
    }
    out
}

/// A patch's footprint and class, as the blocked split sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footprint {
    pub row: usize,
    pub col: usize,
    pub size: usize,
    pub class: u8,
}

impl Footprint {
    fn overlaps(&self, other: &Footprint) -> bool {
        self.row < other.row + other.size
            && other.row < self.row + self.size
            && self.col < other.col + other.size
            && other.col < self.col + self.size
    }
}

/// A block's patch indices and class histogram.
type BlockContent = (Vec<usize>, BTreeMap<u8, usize>);

/// The outcome of [`blocked_split`].
#[derive(Clone, Debug, PartialEq)]
pub struct BlockedSplit {
    /// Per patch: its side, or `None` when it was dropped because it shares pixels with a query
    /// patch of another block (only possible when the stride is below the patch size).
    pub assignment: Vec<Option<SplitName>>,
    /// Per patch: its block (block row, block column).
    pub block: Vec<(usize, usize)>,
    pub dropped_overlap: usize,
}

/// Spatially blocked, class-stratified split.
///
/// 1. The scene is cut into `block_size`×`block_size`-pixel blocks; a patch belongs to the block
///    holding its centre.
/// 2. Rarest class first, each class found in two blocks or more is given one query block (its
///    smallest free block) and one database block, unless it already has them: so every class
///    that can be on both sides is. A class found in a single block goes to the database.
/// 3. The other blocks, in a seeded random order, go whole to the side whose per-class targets
///    (`query_count(n_c, query_ratio)` queries for class c) they help most: the side maximising
///    Σ_c count_c × remaining_deficit_c / n_c.
/// 4. Any database patch that shares a pixel with a query patch is dropped, so no pixel is ever on
///    both sides, whatever the stride.
///
/// Patches of one block are never split apart; with `block_size` a multiple of the stride and
/// stride = patch size, blocks tile the patch grid exactly and step 3 drops nothing.
pub fn blocked_split(
    patches: &[Footprint],
    block_size: usize,
    query_ratio: f64,
    seed: u64,
) -> BlockedSplit {
    let block_size = block_size.max(1);
    let block: Vec<(usize, usize)> = patches
        .iter()
        .map(|p| {
            (
                (p.row + p.size / 2) / block_size,
                (p.col + p.size / 2) / block_size,
            )
        })
        .collect();

    // Per block: its patch indices and class histogram.
    let mut blocks: BTreeMap<(usize, usize), BlockContent> = BTreeMap::new();
    let mut totals: BTreeMap<u8, usize> = BTreeMap::new();
    for (i, p) in patches.iter().enumerate() {
        let entry = blocks.entry(block[i]).or_default();
        entry.0.push(i);
        *entry.1.entry(p.class).or_default() += 1;
        *totals.entry(p.class).or_default() += 1;
    }
    let target_query: BTreeMap<u8, f64> = totals
        .iter()
        .map(|(&c, &n)| (c, query_count(n, query_ratio) as f64))
        .collect();

    let mut order: Vec<(usize, usize)> = blocks.keys().copied().collect();
    let mut rng = rng(seed);
    shuffle(&mut order, &mut rng);
    // Stable sort after the shuffle: rarest class first, random among equals.
    let rarity = |key: &(usize, usize)| {
        blocks[key]
            .1
            .keys()
            .map(|c| totals[c])
            .min()
            .unwrap_or(usize::MAX)
    };
    order.sort_by_key(rarity);

    let mut side_of: BTreeMap<(usize, usize), SplitName> = BTreeMap::new();
    // Pass 1, rarest class first: a class found in two blocks or more gets one query block (its
    // smallest still-free block, so few patches of other classes come along) and one database
    // block, unless earlier choices already gave it those.
    let mut classes: Vec<(usize, u8)> = totals.iter().map(|(&c, &n)| (n, c)).collect();
    classes.sort();
    for &(_, class) in &classes {
        let holding: Vec<&(usize, usize)> = order
            .iter()
            .filter(|key| blocks[*key].1.contains_key(&class))
            .collect();
        if holding.len() < 2 {
            // A class found in one block only cannot be on both sides: keep it in the database,
            // where it is at least trained on and can be retrieved.
            if let Some(&&key) = holding.first() {
                side_of.entry(key).or_insert(SplitName::Database);
            }
            continue;
        }
        for side in [SplitName::Query, SplitName::Database] {
            if holding.iter().any(|key| side_of.get(*key) == Some(&side)) {
                continue;
            }
            let free = holding
                .iter()
                .filter(|key| !side_of.contains_key(**key))
                .min_by_key(|key| blocks[**key].0.len());
            if let Some(&&key) = free {
                side_of.insert(key, side);
            }
        }
    }

    // Pass 2: every other block, in the shuffled order, to the side it helps most.
    let mut have_query: BTreeMap<u8, f64> = BTreeMap::new();
    let mut have_db: BTreeMap<u8, f64> = BTreeMap::new();
    let count_in = |have: &mut BTreeMap<u8, f64>, key: &(usize, usize)| {
        for (&c, &k) in &blocks[key].1 {
            *have.entry(c).or_default() += k as f64;
        }
    };
    for (key, side) in &side_of {
        match side {
            SplitName::Query => count_in(&mut have_query, key),
            SplitName::Database => count_in(&mut have_db, key),
        }
    }
    for key in &order {
        if side_of.contains_key(key) {
            continue;
        }
        let mut need_query = 0.0;
        let mut need_db = 0.0;
        for (&c, &k) in &blocks[key].1 {
            let n = totals[&c] as f64;
            let tq = target_query[&c];
            need_query += k as f64 * (tq - have_query.get(&c).copied().unwrap_or(0.0)) / n;
            need_db += k as f64 * ((n - tq) - have_db.get(&c).copied().unwrap_or(0.0)) / n;
        }
        let side = if need_query > need_db {
            SplitName::Query
        } else {
            SplitName::Database
        };
        match side {
            SplitName::Query => count_in(&mut have_query, key),
            SplitName::Database => count_in(&mut have_db, key),
        }
        side_of.insert(*key, side);
    }
    let mut assignment = vec![None; patches.len()];
    for (key, side) in &side_of {
        for &i in &blocks[key].0 {
            assignment[i] = Some(*side);
        }
    }

    // Step 4: no pixel on both sides.
    let queries: Vec<usize> = (0..patches.len())
        .filter(|&i| assignment[i] == Some(SplitName::Query))
        .collect();
    let mut dropped_overlap = 0;
    for i in 0..patches.len() {
        if assignment[i] == Some(SplitName::Database)
            && queries.iter().any(|&q| patches[q].overlaps(&patches[i]))
        {
            assignment[i] = None;
            dropped_overlap += 1;
        }
    }
    BlockedSplit {
        assignment,
        block,
        dropped_overlap,
    }
}

/// The day a scene was acquired, as Landsat scene ids give it (year and day of the year), which
/// also orders scenes in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AcquisitionDate {
    pub year: u16,
    /// 1 = 1 January.
    pub day_of_year: u16,
}

impl AcquisitionDate {
    /// The calendar date as `YYYY-MM-DD`; `None` when `day_of_year` is not in the year.
    pub fn iso(&self) -> Option<String> {
        let leap = (self.year % 4 == 0 && self.year % 100 != 0) || self.year % 400 == 0;
        let months = [
            31,
            if leap { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        let mut day = self.day_of_year;
        if day == 0 {
            return None;
        }
        for (m, &len) in months.iter().enumerate() {
            if day <= len {
                return Some(format!("{:04}-{:02}-{:02}", self.year, m + 1, day));
            }
            day -= len;
        }
        None
    }
}

/// Split by date: `query_count(n, query_ratio)` of the `n` distinct dates become query dates, the
/// rest database dates. The dates are put in time order and cut into that many runs of
/// consecutive dates (as equal as can be); one seeded random date of each run is its query date.
/// So the queries are spread over the whole series (every year, every season that has enough
/// scenes) rather than bunched in one summer, and the same seed gives the same split.
///
/// Returns one side per entry of `dates`; entries with equal dates share a side.
pub fn date_split(dates: &[AcquisitionDate], query_ratio: f64, seed: u64) -> Vec<SplitName> {
    let distinct: Vec<AcquisitionDate> = dates
        .iter()
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let n = distinct.len();
    let runs = query_count(n, query_ratio);
    let mut rng = rng(seed);
    let mut query_dates = std::collections::BTreeSet::new();
    for k in 0..runs {
        let (start, end) = (k * n / runs, (k + 1) * n / runs);
        let pick = start + (rng.next_u64() % (end - start) as u64) as usize;
        query_dates.insert(distinct[pick]);
    }
    dates
        .iter()
        .map(|d| {
            if query_dates.contains(d) {
                SplitName::Query
            } else {
                SplitName::Database
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(year: u16, day_of_year: u16) -> AcquisitionDate {
        AcquisitionDate { year, day_of_year }
    }

    /// A 16-day revisit over five years, in scrambled order, with one date given twice.
    fn series() -> Vec<AcquisitionDate> {
        let mut dates: Vec<AcquisitionDate> = (2008..2013)
            .flat_map(|y| (0..22).map(move |k| date(y, 5 + 16 * k)))
            .collect();
        dates.push(date(2010, 69));
        let mut rng = rng(99);
        shuffle(&mut dates, &mut rng);
        dates
    }

    #[test]
    fn date_split_keeps_each_date_on_one_side_and_spreads_the_queries() {
        let dates = series();
        let sides = date_split(&dates, 0.2, 3);
        let mut side_of: BTreeMap<AcquisitionDate, SplitName> = BTreeMap::new();
        for (d, s) in dates.iter().zip(&sides) {
            assert_eq!(*side_of.entry(*d).or_insert(*s), *s, "{d:?} on both sides");
        }
        let query: Vec<AcquisitionDate> = side_of
            .iter()
            .filter(|(_, s)| **s == SplitName::Query)
            .map(|(d, _)| *d)
            .collect();
        // 110 distinct dates: 22 query dates, at least four in every year.
        assert_eq!(side_of.len(), 110);
        assert_eq!(query.len(), 22);
        for year in 2008..2013 {
            let n = query.iter().filter(|d| d.year == year).count();
            assert!(n >= 4, "{n} query dates in {year}");
        }
    }

    #[test]
    fn date_split_is_deterministic_and_depends_on_the_seed() {
        let dates = series();
        assert_eq!(date_split(&dates, 0.2, 3), date_split(&dates, 0.2, 3));
        assert_ne!(date_split(&dates, 0.2, 3), date_split(&dates, 0.2, 4));
    }

    #[test]
    fn date_split_of_few_dates_keeps_both_sides() {
        let dates = [date(2009, 10), date(2009, 26)];
        let sides = date_split(&dates, 0.2, 0);
        assert!(sides.contains(&SplitName::Query) && sides.contains(&SplitName::Database));
        assert!(date_split(&[], 0.2, 0).is_empty());
    }

    #[test]
    fn day_of_year_to_calendar_date() {
        assert_eq!(date(2008, 118).iso().as_deref(), Some("2008-04-27"));
        assert_eq!(date(2008, 366).iso().as_deref(), Some("2008-12-31"));
        assert_eq!(date(2009, 60).iso().as_deref(), Some("2009-03-01"));
        assert_eq!(date(2009, 366).iso(), None);
        assert_eq!(date(2009, 0).iso(), None);
    }
}

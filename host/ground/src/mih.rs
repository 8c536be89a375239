//! Multi-index hashing (Norouzi, Punjani & Fleet, "Fast Exact Search in Hamming Space with
//! Multi-Index Hashing", TPAMI 2014): exact k-NN and radius search without reading every code.
//!
//! Each K-bit code is cut into `m` disjoint substrings, and each substring indexes a table. By the
//! pigeonhole principle, a code within distance `r` of the query has some substring within
//! `⌊r/m⌋` of the query's. The search probes every table at substring radius 0, 1, 2, … and stops
//! as soon as nothing unseen can still beat the current k-th result: after table `j` at radius
//! `s`, an unseen code differs by at least `s + 1` bits in tables `0..=j` and `s` in the others,
//! so by at least `m·s + j + 1` bits in total.
//!
//! Implementation choices:
//! - Tables are direct-addressed (substrings of at most [`MAX_SUBSTRING_BITS`] bits): a prefix-sum
//!   offset array per table, no hashing.
//! - Each table stores the full codes in bucket order next to the row numbers, so checking a
//!   bucket's candidates reads memory sequentially instead of one cache miss per candidate. This
//!   costs `m` copies of the codes; clustered, learned codes crowd a few buckets, which is where
//!   that matters most.
//! - No visited set: a candidate is taken only at the (radius, table) pair that reaches it first,
//!   which its own substring distances tell (see `first_found_at`).
//! - Ranking is by (distance, row) as in the scan, so results are identical to it, ties included.
//! - When probing would cost more than reading everything (a filter that matches almost nothing,
//!   a query far from all codes), the query falls back to the scan: still exact.

use orbhash_wire::hamming_words;

use crate::matrix::CodeMatrix;
use crate::search::{scan, Collector, Filter, Hit, ScanOptions, SearchSpec};

/// Longest substring: a table's offset array has 2^bits + 1 entries (64 MiB at 24 bits).
pub const MAX_SUBSTRING_BITS: u32 = 24;

#[derive(Debug, Clone)]
struct Table {
    /// First bit of the substring within the code.
    start: u32,
    /// Substring length in bits.
    len: u32,
    /// Bucket `v` holds entries `offsets[v]..offsets[v + 1]`.
    offsets: Vec<u32>,
    /// Matrix row of each entry.
    rows: Vec<u32>,
    /// Each entry's full code (`words` u64), in bucket order.
    codes: Vec<u64>,
}

/// Work done by multi-index searches (summed over queries).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MihStats {
    pub queries: u64,
    /// Buckets probed.
    pub probes: u64,
    /// Entries read from probed buckets (each a full distance computation).
    pub candidates: u64,
    /// Queries handed to the scan because probing would cost more.
    pub fell_back: u64,
    /// Largest substring radius reached.
    pub max_radius: u32,
}

impl MihStats {
    fn add(&mut self, other: &MihStats) {
        self.queries += other.queries;
        self.probes += other.probes;
        self.candidates += other.candidates;
        self.fell_back += other.fell_back;
        self.max_radius = self.max_radius.max(other.max_radius);
    }
}

/// A multi-index over one code matrix.
#[derive(Debug, Clone)]
pub struct MultiIndex {
    bits: u16,
    words: usize,
    rows: usize,
    tables: Vec<Table>,
    /// Hand queries to the scan when probing would cost more (on by default).
    fallback: bool,
}

/// Bits `start..start + len` of a code (len ≤ 32).
#[inline]
fn substring(code: &[u64], start: u32, len: u32) -> u32 {
    let word = (start / 64) as usize;
    let offset = start % 64;
    let mut value = code.get(word).copied().unwrap_or(0) >> offset;
    if offset + len > 64 {
        value |= code.get(word + 1).copied().unwrap_or(0) << (64 - offset);
    }
    let mask = if len >= 32 {
        u32::MAX
    } else {
        (1u32 << len) - 1
    };
    (value as u32) & mask
}

impl MultiIndex {
    /// The number of substrings the paper recommends, `m ≈ K / log2(n)`, kept to substrings of at
    /// most [`MAX_SUBSTRING_BITS`] bits.
    pub fn default_substrings(bits: u16, rows: usize) -> usize {
        let bits = u32::from(bits);
        let log_n = (rows.max(2) as f64).log2();
        let recommended = (f64::from(bits) / log_n).round().max(1.0) as u32;
        let fewest = bits.div_ceil(MAX_SUBSTRING_BITS);
        recommended.max(fewest).min(bits) as usize
    }

    /// Builds the tables; `substrings` defaults to [`default_substrings`](Self::default_substrings).
    pub fn build(matrix: &CodeMatrix, substrings: Option<usize>) -> Self {
        let bits = u32::from(matrix.bits);
        let m = substrings
            .unwrap_or_else(|| Self::default_substrings(matrix.bits, matrix.len()))
            .clamp(bits.div_ceil(MAX_SUBSTRING_BITS) as usize, bits as usize)
            as u32;
        let words = matrix.words;
        let n = matrix.len();
        let tables = (0..m)
            .map(|j| {
                // Lengths differ by at most one bit.
                let start = j * bits / m;
                let end = (j + 1) * bits / m;
                let len = end - start;
                let buckets = 1usize << len;
                let mut offsets = vec![0u32; buckets + 1];
                for row in 0..n {
                    let value = substring(matrix.code(row), start, len) as usize;
                    if let Some(count) = offsets.get_mut(value + 1) {
                        *count += 1;
                    }
                }
                for at in 1..offsets.len() {
                    offsets[at] += offsets[at - 1];
                }
                let mut next: Vec<u32> = offsets.get(..buckets).unwrap_or(&[]).to_vec();
                let mut rows = vec![0u32; n];
                let mut codes = vec![0u64; n * words];
                for row in 0..n {
                    let code = matrix.code(row);
                    let value = substring(code, start, len) as usize;
                    if let Some(slot) = next.get_mut(value) {
                        let at = *slot as usize;
                        *slot += 1;
                        if let Some(entry) = rows.get_mut(at) {
                            *entry = row as u32;
                        }
                        if let Some(target) = codes.get_mut(at * words..(at + 1) * words) {
                            target.copy_from_slice(code);
                        }
                    }
                }
                Table {
                    start,
                    len,
                    offsets,
                    rows,
                    codes,
                }
            })
            .collect();
        Self {
            bits: matrix.bits,
            words,
            rows: n,
            tables,
            fallback: true,
        }
    }

    /// Whether queries that would cost more than a scan are scanned instead (default: yes).
    /// Results are the same either way; tests turn it off to exercise the probing alone.
    pub fn set_fallback(&mut self, enabled: bool) {
        self.fallback = enabled;
    }

    pub fn substrings(&self) -> usize {
        self.tables.len()
    }

    /// Bytes held by the tables.
    pub fn memory_bytes(&self) -> usize {
        self.tables
            .iter()
            .map(|t| t.offsets.len() * 4 + t.rows.len() * 4 + t.codes.len() * 8)
            .sum()
    }

    /// Exact search of several queries, spread over `threads`. Queries that multi-index hashing
    /// would serve worse than a scan (see [`MihStats::fell_back`]) are scanned together, batched.
    pub fn search_batch(
        &self,
        matrix: &CodeMatrix,
        queries: &[Vec<u64>],
        spec: SearchSpec,
        filter: &Filter,
        threads: usize,
    ) -> Vec<Vec<Hit>> {
        self.search_batch_with_stats(matrix, queries, spec, filter, threads)
            .0
    }

    /// [`search_batch`](Self::search_batch), with the work it did.
    pub fn search_batch_with_stats(
        &self,
        matrix: &CodeMatrix,
        queries: &[Vec<u64>],
        spec: SearchSpec,
        filter: &Filter,
        threads: usize,
    ) -> (Vec<Vec<Hit>>, MihStats) {
        let threads = threads.clamp(1, queries.len().max(1));
        let per_thread = queries.len().div_ceil(threads).max(1);
        let chunks: Vec<&[Vec<u64>]> = queries.chunks(per_thread).collect();
        let mut probed: Vec<(Vec<Option<Vec<Hit>>>, MihStats)> =
            vec![Default::default(); chunks.len()];
        // A chunk that panics re-raises its panic here (rayon's scope): dropping it would hand
        // every later query the hits of the one after it.
        rayon::scope(|scope| {
            for (_at, (chunk, slot)) in (0usize..).zip(chunks.iter().zip(probed.iter_mut())) {
                scope.spawn(move |_| {
                    #[cfg(test)]
                    if matrix.model_id == crate::search::PANICS_IN_TESTS && _at > 0 {
                        panic!("search thread failure injected by the test");
                    }
                    let mut stats = MihStats::default();
                    let hits = chunk
                        .iter()
                        .map(|query| self.probe(matrix, query, spec, filter, &mut stats))
                        .collect::<Vec<_>>();
                    *slot = (hits, stats);
                });
            }
        });
        let mut stats = MihStats::default();
        let mut results: Vec<Option<Vec<Hit>>> = Vec::with_capacity(queries.len());
        for (hits, part) in probed {
            stats.add(&part);
            results.extend(hits);
        }
        let deferred: Vec<usize> = (0..results.len())
            .filter(|&at| results.get(at).is_some_and(Option::is_none))
            .collect();
        if !deferred.is_empty() {
            let batch: Vec<Vec<u64>> = deferred
                .iter()
                .filter_map(|&at| queries.get(at).cloned())
                .collect();
            let options = ScanOptions {
                threads,
                ..ScanOptions::default()
            };
            for (&at, hits) in deferred
                .iter()
                .zip(scan(matrix, &batch, spec, filter, &options))
            {
                if let Some(slot) = results.get_mut(at) {
                    *slot = Some(hits);
                }
            }
        }
        (
            results.into_iter().map(Option::unwrap_or_default).collect(),
            stats,
        )
    }

    /// Exact search of one query (`words` u64): the same hits as the scan.
    pub fn search(
        &self,
        matrix: &CodeMatrix,
        query: &[u64],
        spec: SearchSpec,
        filter: &Filter,
    ) -> Vec<Hit> {
        let mut stats = MihStats::default();
        match self.probe(matrix, query, spec, filter, &mut stats) {
            Some(hits) => hits,
            None => {
                let options = ScanOptions {
                    threads: 1,
                    ..ScanOptions::default()
                };
                scan(matrix, &[query.to_vec()], spec, filter, &options)
                    .into_iter()
                    .next()
                    .unwrap_or_default()
            }
        }
    }

    /// The multi-index search proper; `None` when it would cost more than a scan (a filter that
    /// matches almost nothing, a query far from every code), so the caller scans instead.
    fn probe(
        &self,
        matrix: &CodeMatrix,
        query: &[u64],
        spec: SearchSpec,
        filter: &Filter,
        stats: &mut MihStats,
    ) -> Option<Vec<Hit>> {
        stats.queries += 1;
        let mut collector = Collector::new(spec, self.bits);
        if spec.k == Some(0) || self.rows == 0 {
            return Some(Vec::new());
        }
        let query_parts: Vec<u32> = self
            .tables
            .iter()
            .map(|table| substring(query, table.start, table.len))
            .collect();
        let m = self.tables.len() as u32;
        let filtered = !filter.is_empty();
        // Work budget, in units of one code of a batched scan (~0.3 ns with AVX2): a bucket probe
        // is a few cache misses (~500 codes' worth), a candidate's check ~8. Past a quarter of a
        // scan's worth, hand the query to the batched scan: at worst ~1.25× the scan's time
        // (uniform random codes; learned, clustered codes stay far below the budget).
        const PROBE_COST: u64 = 512;
        const CANDIDATE_COST: u64 = 8;
        let budget = if self.fallback {
            self.rows as u64 / 4 + (1 << 12)
        } else {
            u64::MAX
        };
        let mut work: u64 = 0;
        let give_up = |stats: &mut MihStats| {
            stats.fell_back += 1;
            None
        };
        let longest = self.tables.iter().map(|t| t.len).max().unwrap_or(0);
        for radius in 0..=longest {
            for (j, table) in self.tables.iter().enumerate() {
                if radius > table.len {
                    continue;
                }
                let probes = binomial(table.len, radius);
                if work.saturating_add(probes.saturating_mul(PROBE_COST)) > budget {
                    return give_up(stats);
                }
                work += probes * PROBE_COST;
                stats.probes += probes;
                let q = query_parts.get(j).copied().unwrap_or(0);
                let mut mask: u64 = (1u64 << radius) - 1;
                let limit = 1u64 << table.len;
                while mask < limit {
                    let bucket = (q ^ mask as u32) as usize;
                    let from = table.offsets.get(bucket).copied().unwrap_or(0) as usize;
                    let to = table.offsets.get(bucket + 1).copied().unwrap_or(0) as usize;
                    work += (to - from) as u64 * CANDIDATE_COST;
                    stats.candidates += (to - from) as u64;
                    let codes = table
                        .codes
                        .get(from * self.words..to * self.words)
                        .unwrap_or(&[]);
                    let mut threshold = collector.threshold_inclusive();
                    for (entry, code) in codes.chunks_exact(self.words).enumerate() {
                        let distance = hamming_words(code, query);
                        if distance >= threshold {
                            continue;
                        }
                        if !self.first_found_at(code, &query_parts, radius, j) {
                            continue;
                        }
                        let row = table.rows.get(from + entry).copied().unwrap_or(0);
                        if filtered && !filter.accepts(matrix, row as usize) {
                            continue;
                        }
                        collector.offer(Hit { distance, row });
                        threshold = collector.threshold_inclusive();
                    }
                    mask = next_combination(mask);
                    if radius == 0 {
                        break;
                    }
                }
                if work > budget {
                    return give_up(stats);
                }
                stats.max_radius = stats.max_radius.max(radius);
                if radius == table.len {
                    // Every substring value of this table was probed: every code has been seen.
                    return Some(collector.into_sorted());
                }
                // Unseen codes are at least this far (see the module docs).
                let bound = m * radius + j as u32 + 1;
                let done_k = collector
                    .worst()
                    .is_some_and(|worst| worst.distance < bound);
                let done_radius = spec.radius.is_some_and(|r| bound > r);
                if done_k || done_radius {
                    return Some(collector.into_sorted());
                }
            }
        }
        Some(collector.into_sorted())
    }

    /// Whether a candidate found in table `j` at substring radius `radius` is met there first:
    /// no table before `j` reaches it at `radius` or less, no table after `j` below `radius`.
    #[inline]
    fn first_found_at(&self, code: &[u64], query_parts: &[u32], radius: u32, j: usize) -> bool {
        self.tables
            .iter()
            .zip(query_parts)
            .enumerate()
            .all(|(i, (table, q))| {
                if i == j {
                    return true;
                }
                let d = (substring(code, table.start, table.len) ^ q).count_ones();
                if i < j {
                    d > radius
                } else {
                    d >= radius
                }
            })
    }
}

/// The next larger integer with as many bits set (Gosper's hack).
#[inline]
fn next_combination(x: u64) -> u64 {
    if x == 0 {
        return u64::MAX;
    }
    let lowest = x & x.wrapping_neg();
    let ripple = x + lowest;
    (((ripple ^ x) >> 2) / lowest) | ripple
}

/// C(n, k), saturating.
fn binomial(n: u32, k: u32) -> u64 {
    let k = k.min(n - k.min(n));
    (0..k).fold(1u64, |acc, i| {
        acc.saturating_mul(u64::from(n - i)) / u64::from(i + 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::brute_force;
    use orbhash_wire::ModelId;
    use proptest::prelude::*;

    #[test]
    fn combinations_and_binomials() {
        let mut count = 0;
        let mut mask = 0b111u64;
        while mask < 1 << 6 {
            assert_eq!(mask.count_ones(), 3);
            count += 1;
            mask = next_combination(mask);
        }
        assert_eq!(count, 20);
        assert_eq!(binomial(6, 3), 20);
        assert_eq!(binomial(22, 0), 1);
        assert_eq!(binomial(5, 7), 1);
        assert_eq!(substring(&[0xabcd_0000_0000_0000, 0x12], 48, 24), 0x12abcd);
    }

    fn matrix_of(bits: u16, codes: &[Vec<u8>], labels: &[u16]) -> CodeMatrix {
        let mut matrix = CodeMatrix::new(ModelId([3; 8]), bits);
        for (row, code) in codes.iter().enumerate() {
            let label = labels.get(row % labels.len().max(1)).copied().unwrap_or(0);
            matrix.push(row as i64 + 1, code, label, 0, row as u32, 0);
        }
        matrix
    }

    /// Codes near a few centres, like learned codes: many ties and crowded buckets.
    fn clustered(bits: u16) -> impl Strategy<Value = (Vec<Vec<u8>>, Vec<Vec<u8>>)> {
        let bytes = usize::from(bits / 8);
        (
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), bytes), 1..4),
            proptest::collection::vec(
                (0usize..4, proptest::collection::vec(0u8..64, 0..3)),
                1..300,
            ),
            proptest::collection::vec((0usize..4, proptest::collection::vec(0u8..64, 0..6)), 1..6),
        )
            .prop_map(move |(centres, rows, queries)| {
                let make = |(centre, flips): &(usize, Vec<u8>)| {
                    let mut code = centres[centre % centres.len()].clone();
                    for flip in flips {
                        let bit = usize::from(*flip) % (bytes * 8);
                        code[bit / 8] ^= 1 << (bit % 8);
                    }
                    code
                };
                (
                    rows.iter().map(make).collect(),
                    queries.iter().map(make).collect(),
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn mih_equals_scan_equals_brute_force(
            bits in proptest::sample::select(vec![16u16, 32, 64, 128]),
            seed_codes in clustered(64),
            k in 0usize..12,
            radius in proptest::option::of(0u32..20),
            substrings in 1usize..6,
            label_filter in proptest::option::of(0u16..3),
        ) {
            // Re-cut the generated 64-bit material to `bits`.
            let resize = |code: &Vec<u8>| {
                let mut out = code.clone();
                out.resize(usize::from(bits / 8), 0x5a);
                out
            };
            let (rows, queries) = seed_codes;
            let rows: Vec<Vec<u8>> = rows.iter().map(resize).collect();
            let matrix = matrix_of(bits, &rows, &[0, 1, 2]);
            let index = MultiIndex::build(&matrix, Some(substrings));
            let mut probing_only = index.clone();
            probing_only.set_fallback(false);
            let spec = if radius.is_some() && k == 0 {
                SearchSpec { k: None, radius }
            } else {
                SearchSpec { k: Some(k), radius }
            };
            let filter = Filter { labels: label_filter.map(|l| vec![l]), ..Filter::default() };
            let words: Vec<Vec<u64>> = queries.iter().map(|q| {
                let mut packed = vec![0u64; matrix.words];
                orbhash_wire::pack_words(&resize(q), &mut packed);
                packed
            }).collect();
            let scanned = scan(&matrix, &words, spec, &filter, &ScanOptions { threads: 2, block_rows: 64, ..ScanOptions::default() });
            for (query, scanned) in words.iter().zip(&scanned) {
                let expected = brute_force(&matrix, query, spec, &filter);
                prop_assert_eq!(scanned, &expected);
                prop_assert_eq!(&index.search(&matrix, query, spec, &filter), &expected);
                prop_assert_eq!(&probing_only.search(&matrix, query, spec, &filter), &expected);
            }
            prop_assert_eq!(index.search_batch(&matrix, &words, spec, &filter, 2), scanned);
        }
    }

    #[test]
    fn a_panicking_probe_thread_fails_the_batch_instead_of_shifting_its_answers() {
        let codes: Vec<Vec<u8>> = (0..300u32)
            .map(|row| row.wrapping_mul(2_654_435_761).to_le_bytes().to_vec())
            .collect();
        let mut matrix = matrix_of(32, &codes, &[0]);
        matrix.model_id = crate::search::PANICS_IN_TESTS;
        let index = MultiIndex::build(&matrix, None);
        let queries: Vec<Vec<u64>> = (0..6).map(|row| matrix.code(row * 40).to_vec()).collect();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            index.search_batch(
                &matrix,
                &queries,
                SearchSpec::top_k(3),
                &Filter::default(),
                3,
            )
        }));
        assert!(
            outcome.is_err(),
            "queries lost or answered with another's hits: {outcome:?}"
        );
    }

    #[test]
    fn default_substrings_follow_the_paper_within_table_limits() {
        assert_eq!(MultiIndex::default_substrings(64, 10_000_000), 3);
        assert_eq!(MultiIndex::default_substrings(64, 100_000_000), 3);
        assert_eq!(MultiIndex::default_substrings(128, 10_000_000), 6);
        assert_eq!(MultiIndex::default_substrings(16, 10), 5);
    }
}

//! Exact Hamming search over a code matrix: top-k and/or within a radius, with filters.
//!
//! The scan is a popcount over the packed matrix ([`Kernel`], dispatched at run time), blocked so
//! that a batch of queries reuses each block from cache, and split over threads by row ranges.
//! Filters (label, scene, time) are checked only for codes that beat the current k-th distance,
//! before they enter the top-k, so the result is exactly the top-k among matching tiles.
//!
//! Every method ranks by (distance, row) — row order is record-id order — so the scan, the
//! multi-index ([`super::mih`]) and any thread count return identical lists, ties included.

use std::collections::BinaryHeap;
use std::path::Path;
use std::time::Instant;

use orbhash_wire::{hamming_words, hex, Code, ModelId};
use serde::Serialize;

use crate::archive::{Archive, ModelInfo, StoredRecord};
use crate::kernel::Kernel;
use crate::matrix::{CodeMatrix, MatrixSource};
use crate::mih::MultiIndex;
use crate::milvus::{IdHit, Milvus, MilvusConfig};
use crate::{GroundError, Result};

/// One result: a matrix row and its distance. Orders by (distance, row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Hit {
    pub distance: u32,
    pub row: u32,
}

/// What to return: the `k` nearest, all within `radius`, or the `k` nearest within `radius`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchSpec {
    pub k: Option<usize>,
    pub radius: Option<u32>,
}

impl SearchSpec {
    pub fn top_k(k: usize) -> Self {
        Self {
            k: Some(k),
            radius: None,
        }
    }

    pub fn within(radius: u32) -> Self {
        Self {
            k: None,
            radius: Some(radius),
        }
    }
}

/// Which tiles may be returned. Empty: all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Predicted label indices (any of).
    pub labels: Option<Vec<u16>>,
    /// Scene ids (any of).
    pub scenes: Option<Vec<u32>>,
    /// Capture time, inclusive, ms since the Unix epoch.
    pub time_from: Option<u64>,
    pub time_to: Option<u64>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.labels.is_none()
            && self.scenes.is_none()
            && self.time_from.is_none()
            && self.time_to.is_none()
    }

    /// Whether row `row` of `matrix` passes.
    #[inline]
    pub fn accepts(&self, matrix: &CodeMatrix, row: usize) -> bool {
        if let Some(labels) = &self.labels {
            if !matrix.labels.get(row).is_some_and(|l| labels.contains(l)) {
                return false;
            }
        }
        if let Some(scenes) = &self.scenes {
            if !matrix.scenes.get(row).is_some_and(|s| scenes.contains(s)) {
                return false;
            }
        }
        if self.time_from.is_some() || self.time_to.is_some() {
            let Some(time) = matrix.times.get(row).copied() else {
                return false;
            };
            if self.time_from.is_some_and(|from| time < from)
                || self.time_to.is_some_and(|to| time > to)
            {
                return false;
            }
        }
        true
    }
}

/// Collects the best hits of one query under a [`SearchSpec`].
#[derive(Debug, Clone)]
pub struct Collector {
    k: Option<usize>,
    /// Distances below this may enter (radius + 1, or K + 1).
    cap: u32,
    /// Max-heap of the best `k` (with `k`), or every hit (without).
    heap: BinaryHeap<Hit>,
    all: Vec<Hit>,
}

impl Collector {
    pub fn new(spec: SearchSpec, bits: u16) -> Self {
        let cap = spec
            .radius
            .map_or(u32::from(bits) + 1, |radius| radius.saturating_add(1));
        Self {
            k: spec.k,
            cap,
            heap: BinaryHeap::with_capacity(spec.k.unwrap_or(0).saturating_add(1).min(1 << 16)),
            all: Vec::new(),
        }
    }

    pub fn is_full(&self) -> bool {
        self.k.is_some_and(|k| self.heap.len() >= k)
    }

    /// The worst hit kept, when full.
    pub fn worst(&self) -> Option<Hit> {
        if self.is_full() {
            self.heap.peek().copied()
        } else {
            None
        }
    }

    /// A hit with distance `d` can enter only if `d <` this, whatever its row.
    #[inline]
    pub fn threshold_inclusive(&self) -> u32 {
        match self.worst() {
            Some(worst) => (worst.distance + 1).min(self.cap),
            None if self.k == Some(0) => 0,
            None => self.cap,
        }
    }

    /// As [`threshold_inclusive`](Self::threshold_inclusive), for a caller offering rows in
    /// increasing order above every row kept: a tie then never wins.
    #[inline]
    pub fn threshold_ascending(&self) -> u32 {
        match self.worst() {
            Some(worst) => worst.distance.min(self.cap),
            None if self.k == Some(0) => 0,
            None => self.cap,
        }
    }

    #[inline]
    pub fn offer(&mut self, hit: Hit) {
        if hit.distance >= self.cap {
            return;
        }
        match self.k {
            None => self.all.push(hit),
            Some(0) => {}
            Some(k) => {
                if self.heap.len() < k {
                    self.heap.push(hit);
                } else if let Some(mut worst) = self.heap.peek_mut() {
                    if hit < *worst {
                        *worst = hit;
                    }
                }
            }
        }
    }

    /// The hits, best first.
    pub fn into_sorted(self) -> Vec<Hit> {
        let mut hits = match self.k {
            None => self.all,
            Some(_) => self.heap.into_vec(),
        };
        hits.sort_unstable();
        hits
    }
}

/// How the scan runs.
#[derive(Debug, Clone, Copy)]
pub struct ScanOptions {
    /// Parts the rows are split into, run on rayon's global pool (so at most its size at once).
    pub threads: usize,
    pub kernel: Kernel,
    /// Rows per cache block: every query of the batch runs over one block before the next.
    pub block_rows: usize,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: Kernel::detect(),
            // 16 Ki rows of 64-bit codes = 128 KiB: stays in L2 while the batch passes over it.
            block_rows: 16 * 1024,
        }
    }
}

/// Exact search of every query (each `matrix.words` u64) over the whole matrix.
pub fn scan(
    matrix: &CodeMatrix,
    queries: &[Vec<u64>],
    spec: SearchSpec,
    filter: &Filter,
    options: &ScanOptions,
) -> Vec<Vec<Hit>> {
    scan_rows(matrix, 0..matrix.len(), queries, spec, filter, options)
}

/// [`scan`] over rows `range` only.
pub fn scan_rows(
    matrix: &CodeMatrix,
    range: std::ops::Range<usize>,
    queries: &[Vec<u64>],
    spec: SearchSpec,
    filter: &Filter,
    options: &ScanOptions,
) -> Vec<Vec<Hit>> {
    let rows = range.len();
    let threads = options.threads.clamp(1, rows.max(1).div_ceil(1024).max(1));
    if threads == 1 {
        return scan_part(matrix, range, queries, spec, filter, options)
            .into_iter()
            .map(Collector::into_sorted)
            .collect();
    }
    let per_thread = rows.div_ceil(threads);
    let mut parts: Vec<Vec<Collector>> = vec![Vec::new(); threads];
    // A part that panics re-raises its panic here once every part is done (rayon's scope): a
    // failure must never pass for a part that simply had no hits.
    rayon::scope(|scope| {
        for (t, part) in parts.iter_mut().enumerate() {
            let start = range.start + (t * per_thread).min(rows);
            let end = range.start + ((t + 1) * per_thread).min(rows);
            scope.spawn(move |_| {
                *part = scan_part(matrix, start..end, queries, spec, filter, options);
            });
        }
    });
    // Merge: each part holds its own exact top-k, so the union holds the global one.
    let mut merged: Vec<Collector> = queries
        .iter()
        .map(|_| Collector::new(spec, matrix.bits))
        .collect();
    for part in parts {
        for (collector, hits) in merged.iter_mut().zip(part) {
            for hit in hits.into_sorted() {
                collector.offer(hit);
            }
        }
    }
    merged.into_iter().map(Collector::into_sorted).collect()
}

/// Tests make search threads panic on a matrix of this model id (every part but the first), to
/// check that a failure never turns into a shorter answer.
#[cfg(test)]
pub(crate) const PANICS_IN_TESTS: ModelId = ModelId(*b"panics!!");

fn scan_part(
    matrix: &CodeMatrix,
    range: std::ops::Range<usize>,
    queries: &[Vec<u64>],
    spec: SearchSpec,
    filter: &Filter,
    options: &ScanOptions,
) -> Vec<Collector> {
    #[cfg(test)]
    if matrix.model_id == PANICS_IN_TESTS && range.start > 0 {
        panic!("search thread failure injected by the test");
    }
    let words = matrix.words;
    let mut collectors: Vec<Collector> = queries
        .iter()
        .map(|_| Collector::new(spec, matrix.bits))
        .collect();
    let filtered = !filter.is_empty();
    let block = options.block_rows.max(64);
    let mut candidates = Vec::with_capacity(block);
    let mut start = range.start;
    while start < range.end {
        let end = (start + block).min(range.end);
        let codes = matrix.codes.get(start * words..end * words).unwrap_or(&[]);
        for (query, collector) in queries.iter().zip(collectors.iter_mut()) {
            candidates.clear();
            options.kernel.below(
                codes,
                words,
                query,
                collector.threshold_ascending(),
                start as u32,
                &mut candidates,
            );
            for &(row, distance) in &candidates {
                if filtered && !filter.accepts(matrix, row as usize) {
                    continue;
                }
                collector.offer(Hit { distance, row });
            }
        }
        start = end;
    }
    collectors
}

/// The reference: every distance computed, sorted, cut. For tests and benchmarks' checks.
pub fn brute_force(
    matrix: &CodeMatrix,
    query: &[u64],
    spec: SearchSpec,
    filter: &Filter,
) -> Vec<Hit> {
    let mut hits: Vec<Hit> = (0..matrix.len())
        .filter(|&row| filter.accepts(matrix, row))
        .map(|row| Hit {
            distance: hamming_words(matrix.code(row), query),
            row: row as u32,
        })
        .filter(|hit| spec.radius.is_none_or(|radius| hit.distance <= radius))
        .collect();
    hits.sort_unstable();
    if let Some(k) = spec.k {
        hits.truncate(k);
    }
    hits
}

/// What a query starts from. A query by image arrives as [`QuerySpec::Code`]: the CLI hashes the
/// image with the model file first ([`crate::by_image::hash_images`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuerySpec {
    /// A code given in hex (K/8 bytes, byte 0 first, bit i at byte i/8, bit i%8).
    Hex(String),
    /// A code computed elsewhere.
    Code(Code),
    /// The code of an archived tile (in scene `scene` when given).
    Tile { tile: u32, scene: Option<u32> },
}

/// How to search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// Multi-index hashing for large archives with enough queries to pay for building it,
    /// the scan otherwise.
    #[default]
    Auto,
    Scan,
    Mih,
}

/// Where the codes are searched. The records themselves always come from the SQLite archive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Backend {
    /// The archive's own code matrix: popcount scan or multi-index hashing, in this process.
    #[default]
    Embedded,
    /// A Milvus deployment the archive was synced to ([`crate::milvus`]).
    Milvus(MilvusConfig),
}

/// A search request against an archive.
#[derive(Debug, Clone)]
pub struct Query {
    pub queries: Vec<QuerySpec>,
    /// Which model's codes to search; needed only when the archive holds several.
    pub model: Option<ModelId>,
    pub spec: SearchSpec,
    /// Label names (from the model card) or indices.
    pub labels: Vec<String>,
    /// Only tiles with the same predicted label as the query tile (tile queries).
    pub same_label: bool,
    pub scenes: Vec<u32>,
    pub time_from: Option<u64>,
    pub time_to: Option<u64>,
    pub method: Method,
    pub threads: usize,
    pub backend: Backend,
}

impl Query {
    /// `queries` under `spec` with no filter, on the embedded backend, its method chosen for the
    /// archive, on every core.
    pub fn new(queries: Vec<QuerySpec>, spec: SearchSpec) -> Self {
        Self {
            queries,
            model: None,
            spec,
            labels: Vec::new(),
            same_label: false,
            scenes: Vec::new(),
            time_from: None,
            time_to: None,
            method: Method::Auto,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            backend: Backend::Embedded,
        }
    }
}

/// One returned tile.
#[derive(Debug, Clone, Serialize)]
pub struct Match {
    pub rank: usize,
    pub distance: u32,
    pub label_name: String,
    #[serde(flatten)]
    pub record: StoredRecord,
}

/// The answer to one query.
#[derive(Debug, Clone, Serialize)]
pub struct QueryAnswer {
    /// The query code, hex.
    pub code: String,
    pub matches: Vec<Match>,
}

/// The answer to a [`Query`].
#[derive(Debug, Clone, Serialize)]
pub struct QueryResult {
    pub model_id: String,
    pub code_bits: u16,
    pub archive_codes: usize,
    pub method: String,
    pub matrix: String,
    pub search_ms: f64,
    pub answers: Vec<QueryAnswer>,
}

/// Runs a query against the archive in `dir`.
pub fn run_query(dir: &Path, query: &Query) -> Result<QueryResult> {
    let archive = Archive::open_read_only(dir)?;
    let models = archive.models()?;
    // Resolve every query to (code, label of the query tile) and pick the model.
    let mut resolved: Vec<(Code, Option<u16>, Option<ModelId>)> = Vec::new();
    for spec in &query.queries {
        resolved.push(resolve(&archive, &models, spec, query.model)?);
    }
    let model = choose_model(&models, query.model, &resolved)?;
    let mut codes = Vec::with_capacity(resolved.len());
    for (code, _, _) in &resolved {
        if code.bits() != model.code_bits {
            return Err(GroundError::CodeLength {
                model: model.model_id,
                expected: model.code_bits,
                found: code.bits(),
            });
        }
        codes.push(code.to_words().to_vec());
    }
    let mut labels = Vec::new();
    for text in &query.labels {
        labels.push(label_index(&model, text)?);
    }
    let base_filter = Filter {
        labels: None,
        scenes: (!query.scenes.is_empty()).then(|| query.scenes.clone()),
        time_from: query.time_from,
        time_to: query.time_to,
    };
    // Queries sharing a filter run as one batch; `--same-label` gives each tile query its own.
    let mut groups: Vec<(Filter, Vec<usize>)> = Vec::new();
    for (at, (_, tile_label, _)) in resolved.iter().enumerate() {
        let mut filter = base_filter.clone();
        let mut wanted = labels.clone();
        if query.same_label {
            if let Some(label) = tile_label {
                wanted.push(*label);
            }
        }
        if !wanted.is_empty() {
            wanted.sort_unstable();
            wanted.dedup();
            filter.labels = Some(wanted);
        }
        match groups.iter_mut().find(|(existing, _)| *existing == filter) {
            Some((_, members)) => members.push(at),
            None => groups.push((filter, vec![at])),
        }
    }
    let started = Instant::now();
    let searched = match &query.backend {
        Backend::Embedded => search_embedded(&archive, &model, query, &codes, &groups)?,
        Backend::Milvus(config) => {
            let milvus = Milvus::connect(config)?;
            milvus.check_complete(&model)?;
            let mut hits: Vec<Vec<IdHit>> = vec![Vec::new(); codes.len()];
            for (filter, members) in &groups {
                let batch: Vec<Code> = members
                    .iter()
                    .filter_map(|&at| resolved.get(at).map(|(code, _, _)| code.clone()))
                    .collect();
                let found = milvus.search(&model, &batch, query.spec, filter)?;
                for (&at, result) in members.iter().zip(found) {
                    if let Some(slot) = hits.get_mut(at) {
                        *slot = result;
                    }
                }
            }
            Searched {
                hits,
                archive_codes: model.record_count as usize,
                method: format!("Milvus at {} (exact Hamming)", milvus.url()),
                matrix: "none (the codes are in Milvus)".to_string(),
            }
        }
    };
    let search_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut answers = Vec::with_capacity(searched.hits.len());
    for ((code, _, _), query_hits) in resolved.iter().zip(searched.hits) {
        let ids: Vec<i64> = query_hits.iter().map(|hit| hit.id).collect();
        let records = archive.records_by_id(&ids)?;
        let matches = query_hits
            .iter()
            .zip(records)
            .enumerate()
            .map(|(rank, (hit, record))| Match {
                rank: rank + 1,
                distance: hit.distance,
                label_name: model.label_name(record.label),
                record,
            })
            .collect();
        answers.push(QueryAnswer {
            code: hex::encode(code.as_bytes()),
            matches,
        });
    }
    Ok(QueryResult {
        model_id: model.model_id.to_string(),
        code_bits: model.code_bits,
        archive_codes: searched.archive_codes,
        method: searched.method,
        matrix: searched.matrix,
        search_ms,
        answers,
    })
}

/// What a backend found: per query, hits by (distance, record id).
struct Searched {
    hits: Vec<Vec<IdHit>>,
    archive_codes: usize,
    method: String,
    matrix: String,
}

/// The embedded backend: the code matrix, scanned or through multi-index hashing.
fn search_embedded(
    archive: &Archive,
    model: &ModelInfo,
    query: &Query,
    codes: &[Vec<u64>],
    groups: &[(Filter, Vec<usize>)],
) -> Result<Searched> {
    let (matrix, source) = CodeMatrix::open_or_build(archive, model)?;
    let method = match query.method {
        Method::Auto if matrix.len() >= 1 << 20 && codes.len() >= 64 => Method::Mih,
        Method::Auto => Method::Scan,
        other => other,
    };
    let options = ScanOptions {
        threads: query.threads.max(1),
        ..ScanOptions::default()
    };
    let index = (method == Method::Mih).then(|| MultiIndex::build(&matrix, None));
    let mut hits: Vec<Vec<IdHit>> = vec![Vec::new(); codes.len()];
    for (filter, members) in groups {
        let batch: Vec<Vec<u64>> = members
            .iter()
            .filter_map(|&at| codes.get(at).cloned())
            .collect();
        let found = match &index {
            Some(index) => index.search_batch(&matrix, &batch, query.spec, filter, options.threads),
            None => scan(&matrix, &batch, query.spec, filter, &options),
        };
        for (&at, result) in members.iter().zip(found) {
            if let Some(slot) = hits.get_mut(at) {
                // Rows are in record-id order, so (distance, row) ranks as (distance, id).
                *slot = result
                    .iter()
                    .filter_map(|hit| {
                        matrix.ids.get(hit.row as usize).map(|&id| IdHit {
                            distance: hit.distance,
                            id,
                        })
                    })
                    .collect();
            }
        }
    }
    Ok(Searched {
        hits,
        archive_codes: matrix.len(),
        method: match method {
            Method::Mih => "multi-index hashing".to_string(),
            _ => format!(
                "scan ({}, {} threads)",
                options.kernel.name(),
                options.threads
            ),
        },
        matrix: match source {
            MatrixSource::Loaded => "loaded".to_string(),
            MatrixSource::Extended(n) => format!("extended with {n} new records"),
            MatrixSource::Rebuilt(why) => format!("rebuilt ({why})"),
        },
    })
}

/// A label given by class name (model card) or index.
pub fn label_index(model: &ModelInfo, text: &str) -> Result<u16> {
    if let Some(names) = &model.class_names {
        if let Some(at) = names
            .iter()
            .position(|name| name.eq_ignore_ascii_case(text))
        {
            return u16::try_from(at).map_err(|_| GroundError::Search("label index".into()));
        }
    }
    text.parse::<u16>().map_err(|_| GroundError::UnknownLabel {
        label: text.to_string(),
        model: model.model_id,
        known: model.class_names.as_ref().map_or(
            "no model card registered: use label indices".to_string(),
            |names| names.join(", "),
        ),
    })
}

fn resolve(
    archive: &Archive,
    models: &[ModelInfo],
    spec: &QuerySpec,
    model: Option<ModelId>,
) -> Result<(Code, Option<u16>, Option<ModelId>)> {
    match spec {
        QuerySpec::Code(code) => Ok((code.clone(), None, None)),
        QuerySpec::Hex(text) => {
            let cleaned: String = text
                .trim()
                .trim_start_matches("0x")
                .chars()
                .filter(|c| !matches!(c, '_' | ' ' | ':'))
                .collect();
            let bytes =
                hex::decode(&cleaned).ok_or_else(|| GroundError::BadHex { text: text.clone() })?;
            let bits = u16::try_from(bytes.len() * 8).unwrap_or(u16::MAX);
            let code = Code::from_bytes(bits, &bytes).map_err(|source| GroundError::BadCode {
                text: text.clone(),
                source,
            })?;
            Ok((code, None, None))
        }
        QuerySpec::Tile { tile, scene } => {
            let records = archive.records_of_tile(*tile, *scene)?;
            let wanted = model.map(|id| id.to_string());
            let mut matching = records
                .iter()
                .filter(|record| wanted.as_ref().is_none_or(|id| *id == record.model_id));
            let not_found = || GroundError::NoSuchTile {
                tile: *tile,
                scene: scene.map_or(String::new(), |s| format!(" in scene {s}")),
            };
            let record = matching.next().ok_or_else(not_found)?;
            if let Some(other) = matching.find(|other| {
                other.model_id != record.model_id || other.scene_id != record.scene_id
            }) {
                return Err(GroundError::Search(format!(
                    "tile {tile} is in scene {} (model {}) and scene {} (model {}): give the \
                     scene as SCENE:TILE, or --model",
                    record.scene_id, record.model_id, other.scene_id, other.model_id
                )));
            }
            let model_id = super::parse_model_id(&record.model_id)?;
            let bits = models
                .iter()
                .find(|m| m.model_id == model_id)
                .map_or(0, |m| m.code_bits);
            let bytes = hex::decode(&record.code).ok_or_else(|| GroundError::BadHex {
                text: record.code.clone(),
            })?;
            let code = Code::from_bytes(bits, &bytes).map_err(|source| GroundError::BadCode {
                text: record.code.clone(),
                source,
            })?;
            Ok((code, Some(record.label), Some(model_id)))
        }
    }
}

fn choose_model(
    models: &[ModelInfo],
    wanted: Option<ModelId>,
    resolved: &[(Code, Option<u16>, Option<ModelId>)],
) -> Result<ModelInfo> {
    if let Some(id) = wanted {
        return models
            .iter()
            .find(|model| model.model_id == id)
            .cloned()
            .ok_or(GroundError::UnknownModel(id));
    }
    // A tile query names its model; codes of different models are never mixed in one search.
    let mut from_tiles: Vec<ModelId> = resolved.iter().filter_map(|r| r.2).collect();
    from_tiles.sort();
    from_tiles.dedup();
    let candidates: Vec<&ModelInfo> = match from_tiles.as_slice() {
        [] => {
            let bits: Vec<u16> = resolved.iter().map(|r| r.0.bits()).collect();
            models
                .iter()
                .filter(|model| model.record_count > 0 && bits.contains(&model.code_bits))
                .collect()
        }
        ids => models
            .iter()
            .filter(|model| ids.contains(&model.model_id))
            .collect(),
    };
    match candidates.as_slice() {
        [one] => Ok((*one).clone()),
        [] if models.iter().all(|model| model.record_count == 0) => Err(GroundError::EmptyArchive),
        [] => Err(GroundError::Search(
            "no model in the archive has codes of this length".to_string(),
        )),
        several => Err(GroundError::AmbiguousModel {
            models: several
                .iter()
                .map(|model| format!("{} ({} bits)", model.model_id, model.code_bits))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::{RngCore, SeedableRng};

    fn random_matrix(rows: usize, bits: u16, seed: u64) -> CodeMatrix {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut matrix = CodeMatrix::new(ModelId([9; 8]), bits);
        for row in 0..rows {
            let mut code = vec![0u8; usize::from(bits / 8)];
            rng.fill_bytes(&mut code);
            // Few distinct values make ties, which must break by row everywhere.
            if row % 3 == 0 {
                code.iter_mut().for_each(|b| *b &= 0x0f);
            }
            matrix.push(
                row as i64 + 1,
                &code,
                (row % 5) as u16,
                (row % 7) as u32,
                row as u32,
                row as u64,
            );
        }
        matrix
    }

    #[test]
    fn a_panicking_scan_thread_fails_the_search_instead_of_shortening_it() {
        let mut matrix = random_matrix(5000, 64, 1);
        matrix.model_id = PANICS_IN_TESTS;
        let queries = vec![matrix.code(4321).to_vec()];
        let options = ScanOptions {
            threads: 3,
            kernel: Kernel::Portable,
            block_rows: 700,
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            scan(
                &matrix,
                &queries,
                SearchSpec::top_k(5),
                &Filter::default(),
                &options,
            )
        }));
        assert!(
            outcome.is_err(),
            "rows went unsearched without an error: {outcome:?}"
        );
    }

    #[test]
    fn scan_matches_brute_force_for_every_kernel_and_thread_count() {
        for bits in [16u16, 64, 128, 256] {
            let matrix = random_matrix(5000, bits, u64::from(bits));
            let queries: Vec<Vec<u64>> = (0..7).map(|row| matrix.code(row * 11).to_vec()).collect();
            let filters = [
                Filter::default(),
                Filter {
                    labels: Some(vec![2]),
                    scenes: Some(vec![1, 3]),
                    time_from: Some(100),
                    time_to: Some(4000),
                },
            ];
            let specs = [
                SearchSpec::top_k(10),
                SearchSpec::within(u32::from(bits) / 3),
                SearchSpec {
                    k: Some(3),
                    radius: Some(u32::from(bits) / 4),
                },
                SearchSpec::top_k(0),
            ];
            for filter in &filters {
                for spec in specs {
                    let expected: Vec<Vec<Hit>> = queries
                        .iter()
                        .map(|q| brute_force(&matrix, q, spec, filter))
                        .collect();
                    for kernel in Kernel::available() {
                        for threads in [1, 3] {
                            let options = ScanOptions {
                                threads,
                                kernel,
                                block_rows: 700,
                            };
                            let found = scan(&matrix, &queries, spec, filter, &options);
                            assert_eq!(
                                found, expected,
                                "{bits} bits {kernel:?} {threads} threads {spec:?}"
                            );
                        }
                    }
                }
            }
        }
    }
}

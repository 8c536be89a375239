//! The Milvus search backend: the archive's codes in a Milvus deployment (standalone or
//! distributed), searched by Hamming distance there, for archives past one machine.
//!
//! SQLite stays the system of record; Milvus holds, per model id, one collection
//! `orbhash_<model id>` of the codes (`BINARY_VECTOR`, the model's bits) and the fields queries
//! filter on: `id` (the archive's record id, primary key), `label`, `scene`, `tile`,
//! `capture_ms`. Codes of different models never meet: each query names its model's collection.
//!
//! Writing is idempotent: [`Milvus::sync`] upserts the records above the collection's
//! high-water mark (kept in the archive's `milvus_sync` table, raised only after Milvus
//! acknowledged the batch), so a re-ingest adds nothing and a crash between the two writes is
//! repaired by the next sync. A collection whose size disagrees with the archive is never
//! searched: the query names the fix.
//!
//! Ranking is the embedded backend's: by (distance, record id). Milvus orders ties at the k-th
//! distance as it likes, so a top-k whose last distance may be shared is completed by a range
//! search for exactly that distance, its hits taken in id order. Range searches return at most
//! [`MILVUS_MAX_LIMIT`] hits per call; a radius search walks the distances one at a time, and a
//! distance with more hits than that is an error naming the limit rather than a short answer.

use std::collections::HashMap;
use std::time::Duration;

use milvus::v2::prelude::*;
use milvus::v2::ConsistencyLevel;
use orbhash_wire::{Code, ModelId};
use rusqlite::params;
use serde::Serialize;

use crate::archive::{Archive, ModelInfo};
use crate::search::{Filter, SearchSpec};
use crate::{GroundError, Result};

/// Milvus's largest `limit` (top-k) for one search.
pub const MILVUS_MAX_LIMIT: usize = 16_384;
/// Records per upsert.
const SYNC_BATCH: usize = 8_192;
/// Query codes per search call.
const QUERIES_PER_CALL: usize = 256;

const ID: &str = "id";
const CODE: &str = "code";
const LABEL: &str = "label";
const SCENE: &str = "scene";
const TILE: &str = "tile";
const CAPTURE: &str = "capture_ms";

/// The index Milvus builds over the codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MilvusIndex {
    /// Exact: every code compared (the only index Milvus Lite offers).
    #[default]
    BinFlat,
    /// Inverted file: codes in `nlist` clusters, `nprobe` of them searched; for collections of
    /// tens of millions on a cluster, at some loss of recall.
    BinIvfFlat { nlist: u32, nprobe: u32 },
}

/// Where the Milvus deployment is and how its collections are indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MilvusConfig {
    /// `http://host:19530` (standalone or a cluster's proxy).
    pub url: String,
    pub index: MilvusIndex,
    /// How long one call may take before it counts as the server being down.
    pub timeout: Duration,
}

impl MilvusConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            index: MilvusIndex::default(),
            timeout: Duration::from_secs(30),
        }
    }
}

/// One hit: distance and the archive's record id. Orders by (distance, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct IdHit {
    pub distance: u32,
    pub id: i64,
}

/// What a sync wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub records_written: u64,
    pub high_water: i64,
}

/// A connection to a Milvus deployment.
pub struct Milvus {
    config: MilvusConfig,
    runtime: tokio::runtime::Runtime,
    client: ClientV2,
}

impl std::fmt::Debug for Milvus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Milvus")
            .field("url", &self.config.url)
            .finish()
    }
}

/// The collection of `model`'s codes.
pub fn collection_name(model: ModelId) -> String {
    format!("orbhash_{model}")
}

impl Milvus {
    /// Connects to the deployment at `config.url`; an unreachable server is an error naming it.
    pub fn connect(config: &MilvusConfig) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| GroundError::Io {
                path: "tokio runtime".into(),
                source,
            })?;
        let connect = ConnectConfig::new()
            .uri(config.url.clone())
            .connect_timeout(config.timeout)
            .rpc_timeout(config.timeout);
        let client = runtime
            .block_on(async { tokio::time::timeout(config.timeout, ClientV2::new(&connect)).await })
            .map_err(|_| milvus_error(&config.url, "connect", "timed out"))?
            .map_err(|error| milvus_error(&config.url, "connect", error))?;
        Ok(Self {
            config: config.clone(),
            runtime,
            client,
        })
    }

    pub fn url(&self) -> &str {
        &self.config.url
    }

    fn fail(&self, what: &str, error: impl std::fmt::Display) -> GroundError {
        milvus_error(&self.config.url, what, error)
    }

    /// Runs one call with the configured timeout.
    fn call<T, E: std::fmt::Display>(
        &self,
        what: &str,
        future: impl std::future::Future<Output = std::result::Result<T, E>>,
    ) -> Result<T> {
        self.runtime
            .block_on(async { tokio::time::timeout(self.config.timeout, future).await })
            .map_err(|_| self.fail(what, "timed out"))?
            .map_err(|error| self.fail(what, error))
    }

    fn has_collection(&self, name: &str) -> Result<bool> {
        let request = HasCollectionRequest::builder()
            .collection_name(name)
            .build()
            .map_err(|e| self.fail("has-collection", e))?;
        Ok(self
            .call("has-collection", self.client.has_collection(request))?
            .exists())
    }

    /// Creates `model`'s collection with its index if it does not exist, and loads it.
    fn ensure_collection(&self, model: &ModelInfo) -> Result<String> {
        let name = collection_name(model.model_id);
        if !self.has_collection(&name)? {
            let schema = CollectionSchema::new()
                .add_field(
                    FieldSchema::new()
                        .name(ID)
                        .data_type(DataType::Int64)
                        .primary_key(true),
                )
                .add_field(
                    FieldSchema::new()
                        .name(CODE)
                        .data_type(DataType::BinaryVector)
                        .dimension(u32::from(model.code_bits)),
                )
                .add_field(FieldSchema::new().name(LABEL).data_type(DataType::Int32))
                .add_field(FieldSchema::new().name(SCENE).data_type(DataType::Int64))
                .add_field(FieldSchema::new().name(TILE).data_type(DataType::Int64))
                .add_field(FieldSchema::new().name(CAPTURE).data_type(DataType::Int64));
            let create = CreateCollectionRequest::builder()
                .collection_name(name.clone())
                .schema(schema)
                .consistency_level(ConsistencyLevel::Strong)
                .build()
                .map_err(|e| self.fail("create-collection", e))?;
            self.call("create-collection", self.client.create_collection(create))?;
            let index = match self.config.index {
                MilvusIndex::BinFlat => IndexParam::new()
                    .field_name(CODE)
                    .index_type(IndexType::BinFlat)
                    .metric_type(MetricType::Hamming),
                MilvusIndex::BinIvfFlat { nlist, .. } => IndexParam::new()
                    .field_name(CODE)
                    .index_type(IndexType::BinIvfFlat)
                    .metric_type(MetricType::Hamming)
                    .extra_params(HashMap::from([("nlist".into(), nlist.to_string())])),
            };
            let request = CreateIndexRequest::builder()
                .collection_name(name.clone())
                .index_param(index)
                .build()
                .map_err(|e| self.fail("create-index", e))?;
            self.call("create-index", self.client.create_index(request))?;
        }
        let load = LoadCollectionRequest::builder()
            .collection_name(name.clone())
            .build()
            .map_err(|e| self.fail("load-collection", e))?;
        self.call("load-collection", self.client.load_collection(load))?;
        Ok(name)
    }

    /// Codes in `model`'s collection (0 when it does not exist).
    pub fn count(&self, model: &ModelInfo) -> Result<u64> {
        let name = collection_name(model.model_id);
        if !self.has_collection(&name)? {
            return Ok(0);
        }
        let request = QueryRequest::builder()
            .collection_name(name)
            .output_fields(["count(*)"])
            .consistency_level(ConsistencyLevel::Strong)
            .build()
            .map_err(|e| self.fail("count", e))?;
        let response = self.call("count", self.client.query(request))?;
        let rows = response
            .results()
            .rows()
            .map_err(|e| self.fail("count", e))?
            .collect::<Vec<_>>();
        let count = rows
            .first()
            .ok_or_else(|| self.fail("count", "no count(*) row"))?
            .get_i64("count(*)")
            .map_err(|e| self.fail("count", e))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Writes `model`'s records above the high-water mark to its collection; idempotent.
    pub fn sync(&self, archive: &Archive, model: &ModelInfo) -> Result<SyncReport> {
        let name = self.ensure_collection(model)?;
        let mut high_water = high_water(archive, &self.config.url, model.model_id)?;
        // A server that lost acknowledged writes (killed before it persisted them, restored from
        // an old backup) holds fewer codes than the mark says: everything is written again
        // (upserts, so nothing doubles).
        if high_water > 0 && self.count(model)? < records_up_to(archive, model, high_water)? {
            high_water = 0;
        }
        let mut report = SyncReport {
            records_written: 0,
            high_water,
        };
        let mut batch = Batch::default();
        archive.for_each_matrix_row(model, high_water, |row| {
            batch.push(&row);
            if batch.len() >= SYNC_BATCH {
                self.write(&name, &mut batch, archive, model, &mut report)?;
            }
            Ok(())
        })?;
        self.write(&name, &mut batch, archive, model, &mut report)?;
        Ok(report)
    }

    fn write(
        &self,
        name: &str,
        batch: &mut Batch,
        archive: &Archive,
        model: &ModelInfo,
        report: &mut SyncReport,
    ) -> Result<()> {
        let Some(last) = batch.ids.last().copied() else {
            return Ok(());
        };
        report.records_written += self.upsert(name, std::mem::take(batch))?;
        // Raised only once Milvus has the batch: a crash before this line rewrites it next time.
        set_high_water(archive, &self.config.url, model.model_id, last)?;
        report.high_water = last;
        Ok(())
    }

    /// Writes `batch` (replacing rows of the same ids); the rows written.
    fn upsert(&self, name: &str, batch: Batch) -> Result<u64> {
        let rows = InsertRequest::builder()
            .collection_name(name)
            .columns(batch.into_columns())
            .build()
            .map_err(|e| self.fail("upsert", e))?;
        let request = UpsertRequest::builder()
            .insert(rows)
            .build()
            .map_err(|e| self.fail("upsert", e))?;
        let written = self.call("upsert", self.client.upsert(request))?;
        Ok(u64::try_from(written.upsert_count()).unwrap_or(0))
    }

    /// Drops collection `name` if it exists.
    fn drop_collection(&self, name: &str) -> Result<()> {
        if self.has_collection(name)? {
            let request = DropCollectionRequest::builder()
                .collection_name(name)
                .build()
                .map_err(|e| self.fail("drop-collection", e))?;
            self.call("drop-collection", self.client.drop_collection(request))?;
        }
        Ok(())
    }

    /// Replaces `model`'s collection with the codes of `matrix` (benchmarks: codes generated
    /// without an archive); returns the seconds the upserts took.
    pub fn load_matrix(
        &self,
        model: &ModelInfo,
        matrix: &crate::matrix::CodeMatrix,
    ) -> Result<f64> {
        let name = collection_name(model.model_id);
        self.drop_collection(&name)?;
        self.ensure_collection(model)?;
        let started = std::time::Instant::now();
        let bytes_per_code = usize::from(matrix.bits) / 8;
        let mut batch = Batch::default();
        for row in 0..matrix.len() {
            let code: Vec<u8> = matrix
                .code(row)
                .iter()
                .flat_map(|word| word.to_le_bytes())
                .take(bytes_per_code)
                .collect();
            batch.push(&crate::archive::MatrixRow {
                id: matrix.ids.get(row).copied().unwrap_or_default(),
                code: &code,
                label: matrix.labels.get(row).copied().unwrap_or_default(),
                scene_id: matrix.scenes.get(row).copied().unwrap_or_default(),
                tile_id: matrix.tiles.get(row).copied().unwrap_or_default(),
                capture_time_ms: matrix.times.get(row).copied().unwrap_or_default(),
            });
            if batch.len() >= SYNC_BATCH || row + 1 == matrix.len() {
                self.upsert(&name, std::mem::take(&mut batch))?;
            }
        }
        Ok(started.elapsed().as_secs_f64())
    }

    /// Drops `model`'s collection and writes it again from the archive.
    pub fn rebuild(&self, archive: &Archive, model: &ModelInfo) -> Result<SyncReport> {
        self.drop_collection(&collection_name(model.model_id))?;
        set_high_water(archive, &self.config.url, model.model_id, 0)?;
        self.sync(archive, model)
    }

    /// Refuses to search a collection that does not hold exactly the archive's codes of
    /// `model`: a stale index would answer with results that look complete.
    pub fn check_complete(&self, model: &ModelInfo) -> Result<()> {
        let held = self.count(model)?;
        if held != model.record_count {
            return Err(GroundError::MilvusBehind {
                url: self.config.url.clone(),
                model: model.model_id,
                held,
                archived: model.record_count,
            });
        }
        Ok(())
    }

    /// The hits of each code, ranked by (distance, record id) as the embedded backend ranks.
    /// Codes go to Milvus in batches; only the follow-ups for ties are per distance.
    pub fn search(
        &self,
        model: &ModelInfo,
        codes: &[Code],
        spec: SearchSpec,
        filter: &Filter,
    ) -> Result<Vec<Vec<IdHit>>> {
        let name = collection_name(model.model_id);
        let expression = filter_expression(filter);
        let max_distance = spec.radius.unwrap_or(u32::from(model.code_bits));
        let Some(k) = spec.k else {
            // All within the radius: one range search; a code with more hits than one search
            // returns walks the distances one at a time instead.
            let mut all = self.ann(
                &name,
                codes,
                MILVUS_MAX_LIMIT,
                Some((0, max_distance)),
                &expression,
            )?;
            for (code, hits) in codes.iter().zip(all.iter_mut()) {
                if hits.len() >= MILVUS_MAX_LIMIT {
                    hits.clear();
                    for distance in 0..=max_distance {
                        hits.extend(
                            self.at_distances(&name, &[(code, distance)], &expression)?
                                .into_iter()
                                .flatten(),
                        );
                    }
                }
                hits.sort_unstable();
            }
            return Ok(all);
        };
        if k == 0 {
            return Ok(vec![Vec::new(); codes.len()]);
        }
        let limit = k.min(MILVUS_MAX_LIMIT);
        let mut found = self.ann(
            &name,
            codes,
            limit,
            spec.radius.map(|r| (0, r)),
            &expression,
        )?;
        // Every hit nearer than the worst one returned is in the first answer; the ties at the
        // worst distance may be more than Milvus returned, and it chose among them in no stated
        // order: those come from a range search for exactly that distance, taken in id order.
        let mut pending: Vec<(usize, u32)> = Vec::new();
        for (at, hits) in found.iter_mut().enumerate() {
            hits.sort_unstable();
            if hits.len() < limit && k <= MILVUS_MAX_LIMIT {
                continue;
            }
            if let Some(worst) = hits.last().map(|hit| hit.distance) {
                hits.retain(|hit| hit.distance < worst);
                pending.push((at, worst));
            }
        }
        while !pending.is_empty() {
            let asks: Vec<(&Code, u32)> = pending
                .iter()
                .filter_map(|&(at, distance)| codes.get(at).map(|code| (code, distance)))
                .collect();
            let shells = self.at_distances(&name, &asks, &expression)?;
            let mut next = Vec::new();
            for ((at, distance), shell) in pending.into_iter().zip(shells) {
                let Some(hits) = found.get_mut(at) else {
                    continue;
                };
                hits.extend(shell);
                if hits.len() < k && distance < max_distance {
                    next.push((at, distance + 1));
                }
                hits.truncate(k);
            }
            pending = next;
        }
        Ok(found)
    }

    /// For each (code, distance): every hit at exactly that distance, in id order. Codes asking
    /// for the same distance share one search.
    fn at_distances(
        &self,
        name: &str,
        asks: &[(&Code, u32)],
        expression: &str,
    ) -> Result<Vec<Vec<IdHit>>> {
        let mut out: Vec<Vec<IdHit>> = vec![Vec::new(); asks.len()];
        let mut distances: Vec<u32> = asks.iter().map(|&(_, d)| d).collect();
        distances.sort_unstable();
        distances.dedup();
        for distance in distances {
            let members: Vec<usize> = (0..asks.len())
                .filter(|&at| asks.get(at).is_some_and(|&(_, d)| d == distance))
                .collect();
            let codes: Vec<Code> = members
                .iter()
                .filter_map(|&at| asks.get(at).map(|(code, _)| (*code).clone()))
                .collect();
            let shells = self.ann(
                name,
                &codes,
                MILVUS_MAX_LIMIT,
                Some((distance, distance)),
                expression,
            )?;
            for (at, mut shell) in members.into_iter().zip(shells) {
                if shell.len() >= MILVUS_MAX_LIMIT {
                    return Err(self.fail(
                        "search",
                        format!(
                            "more than {MILVUS_MAX_LIMIT} codes at Hamming distance {distance}: \
                             narrow the query (a filter, a smaller radius) or use the embedded \
                             backend"
                        ),
                    ));
                }
                shell.retain(|hit| hit.distance == distance);
                shell.sort_unstable();
                if let Some(slot) = out.get_mut(at) {
                    *slot = shell;
                }
            }
        }
        Ok(out)
    }

    /// Milvus searches: for each code the `limit` nearest, within `range` (inclusive
    /// distances) if given; codes go in batches of [`QUERIES_PER_CALL`].
    fn ann(
        &self,
        name: &str,
        codes: &[Code],
        limit: usize,
        range: Option<(u32, u32)>,
        expression: &str,
    ) -> Result<Vec<Vec<IdHit>>> {
        let mut out = Vec::with_capacity(codes.len());
        for chunk in codes.chunks(QUERIES_PER_CALL) {
            let vectors = chunk.iter().map(|code| code.as_bytes().to_vec()).collect();
            let mut request = SearchRequest::builder()
                .collection_name(name)
                .vector_field(CODE)
                .vectors(SearchVectors::Binary(vectors))
                .metric_type(MetricType::Hamming)
                .limit(limit as i64)
                .consistency_level(ConsistencyLevel::Strong);
            if let MilvusIndex::BinIvfFlat { nprobe, .. } = self.config.index {
                request =
                    request.extra_params(HashMap::from([("nprobe".into(), nprobe.to_string())]));
            }
            if let Some((nearest, farthest)) = range {
                // Milvus keeps range_filter <= distance < radius for Hamming.
                request = request
                    .radius(f64::from(farthest) + 1.0)
                    .range_filter(f64::from(nearest));
            }
            if !expression.is_empty() {
                request = request.filter(expression);
            }
            let request = request.build().map_err(|e| self.fail("search", e))?;
            let response = self.call("search", self.client.search(request))?;
            let results: Vec<_> = response.results().iter().collect();
            if results.len() != chunk.len() {
                return Err(self.fail(
                    "search",
                    format!("{} answers to {} queries", results.len(), chunk.len()),
                ));
            }
            for result in results {
                let Ids::Int64(ids) = result.get_ids() else {
                    return Err(self.fail("search", "primary keys are not integers"));
                };
                out.push(
                    ids.iter()
                        .zip(result.get_scores())
                        .map(|(id, score)| IdHit {
                            distance: score.round().max(0.0) as u32,
                            id: *id,
                        })
                        .collect(),
                );
            }
        }
        Ok(out)
    }
}

/// Syncs every model of the archive in `dir` to Milvus; what each sync wrote.
pub fn sync_all(
    dir: &std::path::Path,
    config: &MilvusConfig,
) -> Result<Vec<(ModelId, SyncReport)>> {
    let archive = Archive::open(dir)?;
    let milvus = Milvus::connect(config)?;
    let mut reports = Vec::new();
    for model in archive.models()? {
        if model.record_count > 0 {
            reports.push((model.model_id, milvus.sync(&archive, &model)?));
        }
    }
    Ok(reports)
}

/// Keeps Milvus following an ingest: [`Follower::committed`] after each SQLite commit wakes a
/// thread of its own (Milvus's client runs its own runtime, never inside the listener's) that
/// syncs what is new; [`Follower::finish`] syncs the rest and reports how it went. A failed sync
/// is logged and repaired by the next one: the archive stays the system of record.
pub struct Follower {
    wake: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<u64>>>,
}

impl Follower {
    pub fn spawn(dir: &std::path::Path, config: &MilvusConfig) -> Self {
        let (wake, woken) = std::sync::mpsc::channel::<()>();
        let (dir, config) = (dir.to_path_buf(), config.clone());
        let thread = std::thread::spawn(move || {
            let mut written = 0u64;
            // Runs once per wake-up burst, and once more when the ingest ends.
            loop {
                let ended = woken.recv().is_err();
                while woken.try_recv().is_ok() {}
                let outcome = sync_all(&dir, &config).map(|reports| {
                    written += reports.iter().map(|(_, r)| r.records_written).sum::<u64>();
                });
                if ended {
                    return outcome.map(|()| written);
                }
                if let Err(error) = outcome {
                    eprintln!(
                        "orbhash ground: {}; the next sync repairs it",
                        orbhash_cli::error_chain(&error)
                    );
                }
            }
        });
        Self {
            wake: Some(wake),
            thread: Some(thread),
        }
    }

    /// Something was committed: sync soon.
    pub fn committed(&self) {
        if let Some(wake) = &self.wake {
            let _ = wake.send(());
        }
    }

    /// A handle for a commit hook on another thread.
    pub fn waker(&self) -> Option<std::sync::mpsc::Sender<()>> {
        self.wake.clone()
    }

    /// Syncs what is left; the records written in all, or the last sync's error.
    pub fn finish(mut self) -> Result<u64> {
        self.wake = None;
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(outcome)) => outcome,
            Some(Err(_)) => Err(GroundError::Search("the Milvus sync thread failed".into())),
            None => Ok(0),
        }
    }
}

fn milvus_error(url: &str, what: &str, error: impl std::fmt::Display) -> GroundError {
    GroundError::Milvus {
        url: url.to_string(),
        what: what.to_string(),
        reason: error.to_string(),
    }
}

/// The filter as a Milvus boolean expression ("" for none).
fn filter_expression(filter: &Filter) -> String {
    let list = |values: &mut dyn Iterator<Item = String>| values.collect::<Vec<_>>().join(", ");
    let mut terms = Vec::new();
    if let Some(labels) = &filter.labels {
        terms.push(format!(
            "{LABEL} in [{}]",
            list(&mut labels.iter().map(u16::to_string))
        ));
    }
    if let Some(scenes) = &filter.scenes {
        terms.push(format!(
            "{SCENE} in [{}]",
            list(&mut scenes.iter().map(u32::to_string))
        ));
    }
    if let Some(from) = filter.time_from {
        terms.push(format!(
            "{CAPTURE} >= {}",
            i64::try_from(from).unwrap_or(i64::MAX)
        ));
    }
    if let Some(to) = filter.time_to {
        terms.push(format!(
            "{CAPTURE} <= {}",
            i64::try_from(to).unwrap_or(i64::MAX)
        ));
    }
    terms.join(" and ")
}

/// Records waiting for one upsert, by column.
#[derive(Default)]
struct Batch {
    ids: Vec<i64>,
    codes: Vec<Vec<u8>>,
    labels: Vec<i32>,
    scenes: Vec<i64>,
    tiles: Vec<i64>,
    captures: Vec<i64>,
}

impl Batch {
    fn push(&mut self, row: &crate::archive::MatrixRow<'_>) {
        self.ids.push(row.id);
        self.codes.push(row.code.to_vec());
        self.labels.push(i32::from(row.label));
        self.scenes.push(i64::from(row.scene_id));
        self.tiles.push(i64::from(row.tile_id));
        self.captures
            .push(i64::try_from(row.capture_time_ms).unwrap_or(i64::MAX));
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn into_columns(self) -> Vec<FieldData> {
        vec![
            FieldData::int64(ID, self.ids),
            FieldData::binary_vector(CODE, self.codes),
            FieldData::int32(LABEL, self.labels),
            FieldData::int64(SCENE, self.scenes),
            FieldData::int64(TILE, self.tiles),
            FieldData::int64(CAPTURE, self.captures),
        ]
    }
}

/// Records of `model` with ids up to `id`.
fn records_up_to(archive: &Archive, model: &ModelInfo, id: i64) -> Result<u64> {
    archive
        .connection()
        .query_row(
            "SELECT COUNT(*) FROM records WHERE model_ref = ?1 AND id <= ?2",
            params![model.model_ref, id],
            |row| row.get::<_, i64>(0),
        )
        .map(|count| u64::try_from(count).unwrap_or(0))
        .map_err(|source| GroundError::Sqlite {
            path: archive.db_path().to_path_buf(),
            source,
        })
}

fn high_water(archive: &Archive, url: &str, model: ModelId) -> Result<i64> {
    use rusqlite::OptionalExtension;
    archive
        .connection()
        .query_row(
            "SELECT high_water FROM milvus_sync WHERE url = ?1 AND model_id = ?2",
            params![url, model.to_string()],
            |row| row.get(0),
        )
        .optional()
        .map(|found| found.unwrap_or(0))
        .map_err(|source| GroundError::Sqlite {
            path: archive.db_path().to_path_buf(),
            source,
        })
}

fn set_high_water(archive: &Archive, url: &str, model: ModelId, id: i64) -> Result<()> {
    archive
        .connection()
        .execute(
            "INSERT INTO milvus_sync (url, model_id, high_water) VALUES (?1, ?2, ?3)
             ON CONFLICT (url, model_id) DO UPDATE SET high_water = ?3",
            params![url, model.to_string(), id],
        )
        .map_err(|source| GroundError::Sqlite {
            path: archive.db_path().to_path_buf(),
            source,
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_milvus_expressions() {
        assert_eq!(filter_expression(&Filter::default()), "");
        let filter = Filter {
            labels: Some(vec![1, 4]),
            scenes: Some(vec![7]),
            time_from: Some(10),
            time_to: Some(20),
        };
        assert_eq!(
            filter_expression(&filter),
            "label in [1, 4] and scene in [7] and capture_ms >= 10 and capture_ms <= 20"
        );
    }
}

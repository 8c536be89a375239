//! `orbhash-edge run`: tiles → model → records → packets → disk queue → link, as a tokio
//! pipeline.
//!
//! ```text
//! reader (blocking) ──tiles──▶ inference (blocking, batches) ──results──▶ packetiser (blocking)
//!        bounded channel                  bounded channel                        │ append + fsync
//!                                                                                ▼
//!                                  link ◀── sender (async: waits for contact) ◀── disk queue
//! ```
//!
//! Bounded channels give backpressure: a slow model slows the reader, a slow disk the model. The
//! link never slows inference: frames wait in the queue (see [`crate::queue`]) until contact.
//! Tiles whose records an earlier run already queued are skipped, so a restart after a crash
//! neither loses nor repeats a record. With `--drop-label`, the packetiser screens each tile
//! before it becomes a record (see [`crate::screen`]): a dropped tile is logged instead of
//! queued, and a restart skips it too.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orbhash_wire::{
    MacKey, PacketContext, PacketWriter, Record, RetentionPolicy, TilePosition, WriterConfig,
};
use serde::Serialize;
use tokio::sync::{mpsc, Notify};

use crate::contact::{run_contact, ContactError, ContactOptions, ContactSummary};
use crate::link::{ChannelStats, Link, LinkTarget, Simulation};
use crate::queue::{Queue, QueueError, QueueStats};
use crate::reports::{ReportLog, ReportLogError};
use crate::screen::{Dropped, Screen, ScreenError, ScreenLog, ScreeningOptions};
use crate::source::{SourceError, Tile, TileProblem, TileSource};
use crate::store::{Eviction, EvictionCause, SceneStore, StoreError, StoredScene};
use orbhash_cli::error_chain;
use orbhash_infer::hasher::{Hashed, Hasher, HasherError};

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub model: PathBuf,
    pub tiles: PathBuf,
    pub downlink: Downlink,
    pub queue: PathBuf,
    pub queue_max_bytes: u64,
    pub batch: usize,
    pub apid: u16,
    pub label_set: u16,
    pub key: Option<MacKey>,
    pub max_records_per_packet: u16,
    /// Capture time stamped on the records, ms since the Unix epoch.
    pub capture_time_ms: u64,
    /// Print progress lines on stderr.
    pub progress: bool,
    /// Stop after this many newly hashed tiles (tests and demonstrations of restarts).
    pub max_tiles: Option<u32>,
    /// Tiles not to downlink, by predicted label.
    pub screening: ScreeningOptions,
    /// Where the hashed scene is kept for tasking, and under which policy; `None` keeps nothing.
    pub scene_store: Option<(PathBuf, RetentionPolicy)>,
}

/// Where the records go.
#[derive(Debug, Clone)]
pub enum Downlink {
    /// A one-way link: a frame is done once written (the recorder, a simplex radio).
    OneWay {
        target: LinkTarget,
        simulation: Option<Simulation>,
    },
    /// A two-way link: a frame is done once the ground acknowledged it (CFDP class 2), and
    /// telecommands come up (see [`crate::contact`]).
    TwoWay(Box<ContactOptions>),
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Model(#[from] HasherError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Screen(#[from] ScreenError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Reports(#[from] ReportLogError),
    #[error(transparent)]
    Contact(#[from] ContactError),
    #[error("packetiser: {0}")]
    Packet(String),
    #[error("pipeline stage failed: {0}")]
    Stage(String),
}

/// What a run did, for the `--json` summary.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub model_id: String,
    pub epoch: u32,
    pub scene_id: u32,
    pub tiles_in_source: u32,
    /// The card's band names, when the source does not name its bands and has as many: they
    /// were assumed, not checked by name.
    pub bands_assumed: Option<Vec<String>>,
    pub tiles_already_done: u32,
    pub tiles_hashed: u64,
    pub tiles_failed: u64,
    /// The first problems, tile by tile.
    pub problems: Vec<(String, String)>,
    pub records_queued: u64,
    pub queue: QueueStats,
    /// What the simulated one-way channel did (zero on a two-way link: see `link`).
    pub channel: ChannelStats,
    /// The two-way link: per-pass accounting, telecommands, tiles sent; `None` on a one-way link.
    pub link: Option<ContactSummary>,
    pub frames_left_in_queue: usize,
    /// Raw bytes of the hashed tiles (samples as 16-bit values) vs the bytes written to the link.
    pub raw_tile_bytes: u64,
    pub downlinked_bytes: u64,
    /// What `--drop-label` kept off the link; `None` without it.
    pub screening: Option<ScreeningSummary>,
    /// The scene store after this scene was kept; `None` without `--scene-store`.
    pub scene_store: Option<StoreSummary>,
    pub seconds: f64,
    pub inference_seconds: f64,
    pub tiles_per_second: f64,
    pub ms_per_tile: f64,
}

/// The on-board scene store after a run.
#[derive(Debug, Clone, Serialize)]
pub struct StoreSummary {
    pub policy_capacity_bytes: u64,
    pub policy_max_age_s: u32,
    /// What this run's keeping of its scene pushed out, oldest first.
    pub evictions: Vec<Eviction>,
    pub scenes_kept: Vec<StoredScene>,
    pub bytes_kept: u64,
}

/// What screening dropped, and what it saved. Counts and bytes are this run's, except
/// `tiles_already_dropped`: tiles earlier runs dropped (from the queue directory's
/// `screened.log`), skipped by this one.
#[derive(Debug, Clone, Serialize)]
pub struct ScreeningSummary {
    /// The dropped class names.
    pub labels: Vec<String>,
    /// The threshold at the wire's confidence resolution (1/255).
    pub min_confidence: f32,
    /// Tiles dropped, per label (every dropped label listed, also at 0).
    pub tiles_dropped: BTreeMap<String, u64>,
    pub tiles_already_dropped: BTreeMap<String, u64>,
    /// This run's dropped tiles: (tile id, label), in tile order.
    pub dropped_tiles: Vec<(u32, String)>,
    /// Raw bytes of the dropped tiles (samples as 16-bit values).
    pub raw_tile_bytes_not_sent: u64,
    /// Frame bytes this run queued, and what the same tiles would have cost unscreened (the
    /// records of the dropped tiles delta-coded among the others, packets framed as sent).
    pub record_bytes_queued: u64,
    pub record_bytes_unscreened: u64,
    pub record_bytes_not_sent: u64,
}

/// What the packetiser saw of the screening.
#[derive(Default)]
struct Screened {
    dropped: Vec<(u32, u16)>,
    raw_bytes: u64,
    frame_bytes: u64,
    unscreened_frame_bytes: u64,
}

#[derive(Default)]
struct Counters {
    hashed: AtomicU64,
    failed: AtomicU64,
    records: AtomicU64,
    inference_ns: AtomicU64,
    raw_bytes: AtomicU64,
}

const MAX_PROBLEMS_REPORTED: usize = 20;

/// The wire's writer errors are `Debug` only (the crate is `no_std`).
fn packet_error(error: impl std::fmt::Debug) -> RunError {
    RunError::Packet(format!("{error:?}"))
}

pub async fn run(options: RunOptions) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let batch = options.batch.max(1);
    let hasher = {
        let (model, batch) = (options.model.clone(), batch);
        tokio::task::spawn_blocking(move || Hasher::open(&model, batch))
            .await
            .map_err(|e| RunError::Stage(e.to_string()))??
    };
    let card = hasher.card().clone();
    // Labels are checked against the card before anything is read, queued or hashed.
    let screen = Screen::new(&options.screening, &card)?;
    // The bands are checked here, once, before any tile is read for hashing.
    let source = Arc::new(TileSource::open(&options.tiles, &card)?);
    let bands_assumed = source.assumed_bands().map(<[String]>::to_vec);
    if let Some(names) = &bands_assumed {
        if options.progress {
            eprintln!(
                "orbhash-edge: {} does not name its bands; assuming the model's {}",
                options.tiles.display(),
                names.join(", ")
            );
        }
    }
    let (queue, recovery) = Queue::open(&options.queue, options.queue_max_bytes)?;
    let queue = Arc::new(Mutex::new(queue));
    let scene_id = source.scene_id();
    // Kept before hashing: a tile request may come up while the scene is still being hashed.
    let scene_store = match &options.scene_store {
        Some((root, policy)) => {
            let mut store = SceneStore::open(root, *policy)?;
            let evictions = store.keep(scene_id, &options.tiles, std::time::SystemTime::now())?;
            // Each eviction is reported to the ground (the next two-way contact takes it down).
            let mut reports = ReportLog::open(&options.queue, options.apid)?;
            for eviction in &evictions {
                reports.append(&eviction.report())?;
                eprintln!(
                    "orbhash-edge: scene store: evicted scene {:08x} ({} bytes, {})",
                    eviction.scene_id,
                    eviction.bytes,
                    match eviction.cause {
                        EvictionCause::Capacity => "over capacity",
                        EvictionCause::Age => "past its age",
                    }
                );
            }
            let scenes_kept = store.scenes()?;
            Some(StoreSummary {
                policy_capacity_bytes: policy.capacity_bytes,
                policy_max_age_s: policy.max_age_s,
                evictions,
                bytes_kept: scenes_kept.iter().map(|scene| scene.bytes).sum(),
                scenes_kept,
            })
        }
        None => None,
    };

    // Earlier drops of this scene that the current screening agrees with, unless a run without
    // it has since queued the tile's record.
    let (mut screen_log, already_dropped) = match &screen {
        Some(screen) => {
            let (log, earlier) = ScreenLog::open(&options.queue)?;
            let honoured: Vec<Dropped> = ScreenLog::honoured(screen, &earlier)
                .filter(|d| d.scene_id == scene_id && d.tile_id < source.len())
                .filter(|d| !recovery.done.contains(&(d.scene_id, d.tile_id)))
                .copied()
                .collect();
            (Some(log), honoured)
        }
        None => (None, Vec::new()),
    };
    let skip_dropped: HashSet<u32> = already_dropped.iter().map(|d| d.tile_id).collect();
    let mut todo: Vec<u32> = (0..source.len())
        .filter(|&tile| !recovery.done.contains(&(scene_id, tile)))
        .filter(|tile| !skip_dropped.contains(tile))
        .collect();
    let already_done = source.len() - todo.len() as u32 - skip_dropped.len() as u32;
    todo.truncate(options.max_tiles.map_or(usize::MAX, |n| n as usize));
    let tiles_to_hash = todo.len();
    let counters = Arc::new(Counters::default());
    let problems = Arc::new(Mutex::new(Vec::new()));
    let producing = Arc::new(AtomicBool::new(true));
    let queued = Arc::new(Notify::new());

    // Reader: tiles in id order, skipping those already queued by an earlier run.
    let (tile_tx, mut tile_rx) = mpsc::channel::<Result<Tile, TileProblem>>(2 * batch);
    let reader = {
        let source = Arc::clone(&source);
        tokio::task::spawn_blocking(move || {
            for tile_id in todo {
                if tile_tx.blocking_send(source.tile(tile_id)).is_err() {
                    break;
                }
            }
        })
    };

    // Inference: batches of preprocessed tiles through the model.
    let (result_tx, mut result_rx) = mpsc::channel::<(Tile, Hashed)>(2 * batch);
    let inference = {
        let (counters, problems) = (Arc::clone(&counters), Arc::clone(&problems));
        tokio::task::spawn_blocking(move || -> Result<(), RunError> {
            let report = |problem: TileProblem| {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut problems) = problems.lock() {
                    if problems.len() < MAX_PROBLEMS_REPORTED {
                        problems.push((problem.name, problem.reason));
                    }
                }
            };
            let mut pending: Vec<(Tile, Vec<f32>)> = Vec::with_capacity(batch);
            let mut open = true;
            while open || !pending.is_empty() {
                if open && pending.len() < batch {
                    match tile_rx.blocking_recv() {
                        Some(Ok(tile)) => match hasher.preprocess(&tile.image) {
                            Ok(input) => pending.push((tile, input)),
                            Err(error) => report(TileProblem {
                                name: tile.name.clone(),
                                reason: error_chain(&error),
                            }),
                        },
                        Some(Err(problem)) => report(problem),
                        None => open = false,
                    }
                    if open && pending.len() < batch {
                        continue;
                    }
                }
                if pending.is_empty() {
                    continue;
                }
                let inputs: Vec<Vec<f32>> = pending
                    .iter_mut()
                    .map(|(_, input)| std::mem::take(input))
                    .collect();
                let timer = Instant::now();
                let hashed = hasher.hash(&inputs)?;
                counters
                    .inference_ns
                    .fetch_add(timer.elapsed().as_nanos() as u64, Ordering::Relaxed);
                for ((tile, _), result) in pending.drain(..).zip(hashed) {
                    counters.hashed.fetch_add(1, Ordering::Relaxed);
                    counters
                        .raw_bytes
                        .fetch_add(2 * tile.image.samples.len() as u64, Ordering::Relaxed);
                    if result_tx.blocking_send((tile, result)).is_err() {
                        return Ok(());
                    }
                }
            }
            Ok(())
        })
    };

    // Packetiser: records into packets, each frame made durable in the queue.
    let packetiser = {
        let (queue, queued, producing, counters) = (
            Arc::clone(&queue),
            Arc::clone(&queued),
            Arc::clone(&producing),
            Arc::clone(&counters),
        );
        let context = PacketContext {
            apid: options.apid,
            model_id: card.model_id,
            code_bits: card.bits,
            label_set: options.label_set,
            epoch: recovery.epoch,
            grid: source.grid(),
        };
        let mut config = WriterConfig::new(context);
        config.key = options.key.clone();
        config.max_records = options.max_records_per_packet;
        let capture_time_ms = options.capture_time_ms;
        let next_sequence_count = recovery.next_sequence_count;
        let screen = screen.clone();
        let mut screen_log = screen_log.take();
        let model_id = card.model_id;
        tokio::task::spawn_blocking(move || -> Result<Screened, RunError> {
            let result = (|| {
                // What the run would have queued unscreened, measured by packing every record a
                // second time: delta coding makes a record's cost depend on its neighbours.
                let mut unscreened = match screen {
                    Some(_) => Some(PacketWriter::new(config.clone()).map_err(packet_error)?),
                    None => None,
                };
                let mut writer = PacketWriter::new(config).map_err(packet_error)?;
                writer.resume_sequence_count(next_sequence_count);
                let mut frames: Vec<u8> = Vec::new();
                let mut unscreened_frames: Vec<u8> = Vec::new();
                let mut screened = Screened::default();
                let commit =
                    |frames: &mut Vec<u8>, log: &mut Option<ScreenLog>| -> Result<(), RunError> {
                        if frames.is_empty() {
                            return Ok(());
                        }
                        // Decisions made durable with the records around them; one lost to a crash
                        // before this is made again on restart (the same model decides the same).
                        if let Some(log) = log {
                            log.flush()?;
                        }
                        let mut queue = queue
                            .lock()
                            .map_err(|_| RunError::Stage("queue lock poisoned".into()))?;
                        for frame in frames.split_inclusive(|&b| b == 0) {
                            queue.append(frame)?;
                        }
                        frames.clear();
                        queued.notify_one();
                        Ok(())
                    };
                while let Some((tile, hashed)) = result_rx.blocking_recv() {
                    let raw_bytes = 2 * tile.image.samples.len() as u64;
                    let record = Record {
                        tile_id: tile.tile_id,
                        capture_time_ms,
                        position: TilePosition {
                            scene_id: tile.scene_id,
                            row_px: tile.row_px,
                            col_px: tile.col_px,
                            map: tile.map,
                        },
                        label: hashed.label,
                        confidence: hashed.confidence,
                        code: hashed.code,
                    };
                    if let Some(unscreened) = &mut unscreened {
                        let mut sink = orbhash_wire::StdIo(&mut unscreened_frames);
                        unscreened.push(&record, &mut sink).map_err(packet_error)?;
                        screened.unscreened_frame_bytes += unscreened_frames.len() as u64;
                        unscreened_frames.clear();
                    }
                    let drop = screen
                        .as_ref()
                        .is_some_and(|s| s.drops(record.label, record.confidence));
                    if drop {
                        screened.dropped.push((record.tile_id, record.label));
                        screened.raw_bytes += raw_bytes;
                        if let Some(log) = &mut screen_log {
                            log.push(&Dropped {
                                model_id,
                                scene_id: record.position.scene_id,
                                tile_id: record.tile_id,
                                label: record.label,
                                confidence: record.confidence,
                                raw_bytes,
                            });
                            // Bounds the work a crash can undo when most tiles are dropped and
                            // few packets close.
                            if log.pending() >= usize::from(writer.config().max_records) {
                                log.flush()?;
                            }
                        }
                        continue;
                    }
                    let mut sink = orbhash_wire::StdIo(&mut frames);
                    writer.push(&record, &mut sink).map_err(packet_error)?;
                    counters.records.fetch_add(1, Ordering::Relaxed);
                    screened.frame_bytes += frames.len() as u64;
                    commit(&mut frames, &mut screen_log)?;
                }
                let mut sink = orbhash_wire::StdIo(&mut frames);
                writer.flush(&mut sink).map_err(packet_error)?;
                screened.frame_bytes += frames.len() as u64;
                commit(&mut frames, &mut screen_log)?;
                if let Some(log) = &mut screen_log {
                    log.flush()?;
                }
                if let Some(unscreened) = &mut unscreened {
                    let mut sink = orbhash_wire::StdIo(&mut unscreened_frames);
                    unscreened.flush(&mut sink).map_err(packet_error)?;
                    screened.unscreened_frame_bytes += unscreened_frames.len() as u64;
                }
                Ok(screened)
            })();
            producing.store(false, Ordering::SeqCst);
            queued.notify_one();
            result
        })
    };

    // Sender: frames leave the queue only once the link has taken them (one-way) or the ground
    // has acknowledged them (two-way).
    let (target, simulation) = match &options.downlink {
        Downlink::OneWay { target, simulation } => (Some(target.clone()), *simulation),
        Downlink::TwoWay(_) => (None, None),
    };
    let contact = match &options.downlink {
        Downlink::TwoWay(contact) => {
            let (queue, producing, card) =
                (Arc::clone(&queue), Arc::clone(&producing), card.clone());
            let (contact, queue_dir) = (contact.as_ref().clone(), options.queue.clone());
            let apid = options.apid;
            Some(tokio::task::spawn_blocking(move || {
                run_contact(&contact, &queue, &queue_dir, &card, &producing, apid)
            }))
        }
        Downlink::OneWay { .. } => None,
    };
    let sender = target.map(|target| {
        let (queue, queued, producing) = (
            Arc::clone(&queue),
            Arc::clone(&queued),
            Arc::clone(&producing),
        );
        let mut link = Link::new(target, simulation);
        tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                let wait = link.wait_for_contact();
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                    continue;
                }
                let frame = {
                    let queue = queue
                        .lock()
                        .map_err(|_| "queue lock poisoned".to_string())?;
                    queue.peek().map_err(|e| error_chain(&e))?
                };
                let Some(frame) = frame else {
                    if !producing.load(Ordering::SeqCst) {
                        break;
                    }
                    let _ =
                        tokio::time::timeout(Duration::from_millis(200), queued.notified()).await;
                    continue;
                };
                match link.send(&frame) {
                    Ok(()) => {
                        failures = 0;
                        queue
                            .lock()
                            .map_err(|_| "queue lock poisoned".to_string())?
                            .mark_sent()
                            .map_err(|e| error_chain(&e))?;
                    }
                    Err(error) => {
                        failures += 1;
                        if failures >= 5 && !producing.load(Ordering::SeqCst) {
                            // The frames stay queued for the next contact or the next run.
                            eprintln!(
                                "orbhash-edge: link unavailable ({error}); frames stay queued"
                            );
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(failures))).await;
                    }
                }
            }
            Ok::<ChannelStats, String>(link.channel)
        })
    });

    let ticker = options.progress.then(|| {
        let (counters, queue) = (Arc::clone(&counters), Arc::clone(&queue));
        let total = tiles_to_hash;
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(2));
            interval.tick().await;
            loop {
                interval.tick().await;
                let hashed = counters.hashed.load(Ordering::Relaxed);
                let seconds = started.elapsed().as_secs_f64();
                let (sent, pending) = queue
                    .lock()
                    .map(|q| (q.stats().frames_sent, q.pending_frames()))
                    .unwrap_or_default();
                eprintln!(
                    "orbhash-edge: {hashed}/{total} tiles ({:.1} tiles/s), {} failed, {} records, \
                     {sent} frames sent, {pending} queued",
                    hashed as f64 / seconds.max(1e-9),
                    counters.failed.load(Ordering::Relaxed),
                    counters.records.load(Ordering::Relaxed),
                );
            }
        })
    });

    let stage = |e: tokio::task::JoinError| RunError::Stage(e.to_string());
    reader.await.map_err(stage)?;
    let inference_result = inference.await.map_err(stage)?;
    let packetiser_result = packetiser.await.map_err(stage)?;
    let channel = match sender {
        Some(sender) => sender.await.map_err(stage)?.map_err(RunError::Stage)?,
        None => ChannelStats::default(),
    };
    let link = match contact {
        Some(contact) => Some(contact.await.map_err(stage)??),
        None => None,
    };
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    inference_result?;
    let screened = packetiser_result?;

    let (queue_stats, left) = {
        let queue = queue
            .lock()
            .map_err(|_| RunError::Stage("queue lock poisoned".into()))?;
        (queue.stats(), queue.pending_frames())
    };
    let seconds = started.elapsed().as_secs_f64();
    let hashed = counters.hashed.load(Ordering::Relaxed);
    let inference_seconds = counters.inference_ns.load(Ordering::Relaxed) as f64 / 1e9;
    let problems = problems.lock().map(|p| p.clone()).unwrap_or_default();
    let screening = screen.map(|screen| {
        let name = |label: u16| {
            card.classes
                .get(usize::from(label))
                .cloned()
                .unwrap_or_else(|| format!("class {label}"))
        };
        let per_label = |labels: &mut dyn Iterator<Item = u16>| {
            let mut counts: BTreeMap<String, u64> =
                screen.names().iter().map(|n| (n.clone(), 0)).collect();
            for label in labels {
                *counts.entry(name(label)).or_default() += 1;
            }
            counts
        };
        ScreeningSummary {
            labels: screen.names().to_vec(),
            min_confidence: screen.min_confidence(),
            tiles_dropped: per_label(&mut screened.dropped.iter().map(|&(_, label)| label)),
            tiles_already_dropped: per_label(&mut already_dropped.iter().map(|d| d.label)),
            dropped_tiles: screened
                .dropped
                .iter()
                .map(|&(tile, label)| (tile, name(label)))
                .collect(),
            raw_tile_bytes_not_sent: screened.raw_bytes,
            record_bytes_queued: screened.frame_bytes,
            record_bytes_unscreened: screened.unscreened_frame_bytes,
            record_bytes_not_sent: screened
                .unscreened_frame_bytes
                .saturating_sub(screened.frame_bytes),
        }
    });
    Ok(RunSummary {
        model_id: card.model_id.to_string(),
        epoch: recovery.epoch,
        scene_id,
        tiles_in_source: source.len(),
        bands_assumed,
        tiles_already_done: already_done,
        tiles_hashed: hashed,
        tiles_failed: counters.failed.load(Ordering::Relaxed),
        problems,
        records_queued: counters.records.load(Ordering::Relaxed),
        queue: queue_stats,
        channel,
        link,
        frames_left_in_queue: left,
        raw_tile_bytes: counters.raw_bytes.load(Ordering::Relaxed),
        downlinked_bytes: queue_stats.bytes_sent,
        screening,
        scene_store,
        seconds,
        inference_seconds,
        tiles_per_second: hashed as f64 / seconds.max(1e-9),
        ms_per_tile: inference_seconds * 1e3 / hashed.max(1) as f64,
    })
}

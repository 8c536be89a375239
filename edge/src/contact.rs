//! The board's side of a two-way link: acknowledged delivery of the queued records and of tasked
//! tiles, and the telecommands coming up.
//!
//! ```text
//! disk queue ──bundle of frames──▶ CFDP outbox ══ link ══▶ ground (commits, then Finished)
//!     ▲ frames leave only once the ground's Finished says "complete"
//! scene store ──tasked tile (GeoTIFF)──▶ CFDP outbox       (records first, tiles in request order)
//! telecommands ══ link ══▶ CommandGate (MAC, replay) ──▶ task list / retention policy
//! reports (commands carried out, evictions) ──▶ CFDP outbox   (after records, before tiles)
//! ```
//!
//! State on disk, in the queue directory besides the queue's own files: `cfdp-sequence` (next
//! CFDP transaction number), `command-position` (the last accepted telecommand's `<epoch>
//! <counter>`, made durable before the command is acted on), `tasks` (see [`crate::tasking`]),
//! `reports.log` (see [`crate::reports`]) and `outbox/` (the file of the transfer in progress;
//! rebuilt after a restart).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use orbhash_contract::card::ModelCard;
use orbhash_link::{
    Account, DeliveryConfig, LinkOptions, LinkSession, Outbox, Outcome, PassAccount, Payload,
    Round, Transfer,
};
use orbhash_wire::{
    frame_kind, Command, CommandGate, CommandStats, FrameKind, MacKey, Report, RequestId,
    RetentionPolicy, StreamPosition,
};
use serde::Serialize;

use crate::queue::{Queue, QueueError};
use crate::reports::{ReportLog, ReportLogError};
use crate::store::{Eviction, SceneStore, StoreError};
use crate::tasking::{prepare_tile, tile_file_name, Prepared, Task, TaskError, TaskList};

/// How the board runs its side of a two-way link.
#[derive(Debug, Clone)]
pub struct ContactOptions {
    pub link: LinkOptions,
    /// Authenticates PDUs and telecommands; without it every telecommand is refused.
    pub key: Option<MacKey>,
    pub delivery: DeliveryConfig,
    /// Queued frame bytes per records transfer.
    pub bundle_bytes: u64,
    /// Once nothing is left to send, keep listening this long after the last frame heard (for
    /// telecommands), then end.
    pub linger: Duration,
    /// Once production has ended, give up after hearing nothing from the ground this long; what
    /// is left stays queued for the next run.
    pub quiet_limit: Duration,
    /// Where tasked tiles are cut from.
    pub scene_store: Option<(PathBuf, RetentionPolicy)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ContactError {
    #[error("link {endpoint}")]
    Link {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Delivery(#[from] orbhash_link::DeliveryError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Tasks(#[from] TaskError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Reports(#[from] ReportLogError),
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {text:?} is not `<epoch> <counter>`", path.display())]
    CorruptPosition { path: PathBuf, text: String },
}

/// Telecommands by outcome: the gate's counters, plus those refused for want of a key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CommandCounts {
    #[serde(flatten)]
    pub gate: CommandStats,
    pub without_key: u64,
}

impl CommandCounts {
    pub fn rejected(&self) -> u64 {
        self.gate.rejected() + self.without_key
    }
}

/// What the board's side of the link did, for the run summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ContactSummary {
    pub endpoint: String,
    pub passes: Vec<PassAccount>,
    pub total: Account,
    pub commands: CommandCounts,
    pub records_frames_acknowledged: u64,
    pub tiles_sent: Vec<String>,
    pub tiles_absent: Vec<String>,
    pub tiles_cancelled: u64,
    /// Report files the ground confirmed (commands carried out, evictions).
    pub reports_delivered: u64,
    /// Evictions a `set-retention` command caused.
    pub evictions: Vec<Eviction>,
    pub tasks_left: usize,
    pub frames_left: usize,
}

enum Sending {
    Records {
        frames: usize,
        dropped_before: u64,
    },
    /// The report log up to this offset.
    Reports {
        upto: u64,
    },
    Tile {
        task: Task,
        absent: bool,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ContactError + '_ {
    move |source| ContactError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_position(path: &Path) -> Result<Option<StreamPosition>, ContactError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(path)(error)),
    };
    let mut fields = text.split_whitespace().map(str::parse::<u32>);
    match (fields.next(), fields.next()) {
        (Some(Ok(epoch)), Some(Ok(counter))) => Ok(Some(StreamPosition { epoch, counter })),
        _ => Err(ContactError::CorruptPosition {
            path: path.to_path_buf(),
            text,
        }),
    }
}

fn write_position(path: &Path, position: StreamPosition) -> Result<(), ContactError> {
    let partial = path.with_extension("partial");
    std::fs::write(
        &partial,
        format!("{} {}\n", position.epoch, position.counter),
    )
    .and_then(|()| std::fs::File::open(&partial)?.sync_all())
    .and_then(|()| std::fs::rename(&partial, path))
    .map_err(io_error(path))
}

const LOGGED_REJECTIONS: u64 = 20;

struct Board<'a> {
    queue: &'a Mutex<Queue>,
    outbox_dir: PathBuf,
    card: &'a ModelCard,
    options: &'a ContactOptions,
    gate: Option<CommandGate>,
    position_path: PathBuf,
    tasks: TaskList,
    store: Option<SceneStore>,
    reports: ReportLog,
    summary: ContactSummary,
}

impl Board<'_> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // The queue's state is on disk; a panic elsewhere does not make it wrong here.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn command(&mut self, packet: &[u8]) -> Result<(), ContactError> {
        let Some(gate) = self.gate.as_mut() else {
            self.summary.commands.without_key += 1;
            if self.summary.commands.without_key == 1 {
                eprintln!("orbhash-edge: telecommand refused: no mission key (--key) to check it");
            }
            return Ok(());
        };
        let admitted = gate.admit(packet);
        let stats = *gate.stats();
        self.summary.commands.gate = stats;
        let (header, command) = match admitted {
            Ok(admitted) => admitted,
            Err(error) => {
                let rejected = stats.rejected();
                if rejected <= LOGGED_REJECTIONS {
                    eprintln!("orbhash-edge: telecommand rejected: {error}");
                }
                if rejected == LOGGED_REJECTIONS {
                    eprintln!("orbhash-edge: further rejected telecommands are only counted");
                }
                return Ok(());
            }
        };
        // Durable before acting: a crash in between loses the command (the ground repeats it),
        // never acts on one twice.
        write_position(&self.position_path, header.position)?;
        match command {
            Command::RequestTiles { request, tiles } => {
                let added = self.tasks.add(request, tiles.iter())?;
                eprintln!(
                    "orbhash-edge: request {request}: {} tiles ({added} new), {} waiting",
                    tiles.len(),
                    self.tasks.len()
                );
            }
            Command::CancelRequest { request } => {
                let dropped = self.tasks.cancel(request)?;
                self.summary.tiles_cancelled += dropped as u64;
                eprintln!("orbhash-edge: request {request} cancelled: {dropped} tiles dropped");
            }
            Command::SetRetention(policy) => match self.store.as_mut() {
                Some(store) => {
                    let evictions = store.set_policy(policy, SystemTime::now())?;
                    eprintln!(
                        "orbhash-edge: retention set to {} bytes, {} s: {} scenes evicted",
                        policy.capacity_bytes,
                        policy.max_age_s,
                        evictions.len()
                    );
                    for eviction in &evictions {
                        self.reports.append(&eviction.report())?;
                    }
                    self.summary.evictions.extend(evictions);
                }
                None => eprintln!("orbhash-edge: set-retention ignored: no scene store"),
            },
        }
        // Carried out: the ground stops repeating it once this report is committed there.
        self.reports.append(&Report::Executed {
            request: RequestId::of_command(&header),
            position: header.position,
        })?;
        Ok(())
    }

    /// A file name unique on this board: `<prefix>-<µs since the epoch>.bin`.
    fn stamped_name(prefix: &str) -> String {
        format!(
            "{prefix}-{}.bin",
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_micros()
        )
    }

    /// The next file to send: queued records first, then reports, then tiles in request order.
    fn next_transfer(&mut self) -> Result<Option<(Transfer, Sending)>, ContactError> {
        std::fs::create_dir_all(&self.outbox_dir).map_err(io_error(&self.outbox_dir))?;
        let (frames, dropped_before) = {
            let queue = self.lock();
            (
                queue.front_frames(self.options.bundle_bytes)?,
                queue.stats().frames_dropped,
            )
        };
        if !frames.is_empty() {
            let name = Self::stamped_name("records");
            let path = self.outbox_dir.join(&name);
            std::fs::write(&path, frames.concat()).map_err(io_error(&path))?;
            let transfer = Transfer {
                name,
                path,
                payload: Payload::Records,
            };
            let sending = Sending::Records {
                frames: frames.len(),
                dropped_before,
            };
            return Ok(Some((transfer, sending)));
        }
        if let Some((bytes, upto)) = self.reports.unconfirmed()? {
            let name = Self::stamped_name("reports");
            let path = self.outbox_dir.join(&name);
            std::fs::write(&path, bytes).map_err(io_error(&path))?;
            let transfer = Transfer {
                name,
                path,
                payload: Payload::Reports,
            };
            return Ok(Some((transfer, Sending::Reports { upto })));
        }
        let Some(task) = self.tasks.next() else {
            return Ok(None);
        };
        let prepared = match &self.store {
            Some(store) => prepare_tile(store, self.card, task.tile, &self.outbox_dir)?,
            None => {
                let path = self.outbox_dir.join(tile_file_name(task.tile, true));
                std::fs::write(
                    &path,
                    "no longer on board: this board keeps no scene store\n",
                )
                .map_err(io_error(&path))?;
                Prepared::Absent(path)
            }
        };
        let (path, absent) = match prepared {
            Prepared::Tile(path) => (path, false),
            Prepared::Absent(path) => (path, true),
        };
        let transfer = Transfer {
            name: tile_file_name(task.tile, absent),
            path,
            payload: if absent {
                Payload::TileAnswer
            } else {
                Payload::Tile
            },
        };
        Ok(Some((transfer, Sending::Tile { task, absent })))
    }

    fn delivered(&mut self, transfer: &Transfer, sending: Sending) -> Result<(), ContactError> {
        match sending {
            Sending::Records {
                frames,
                dropped_before,
            } => {
                let queue = self.queue;
                let mut queue = queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                // If the queue dropped its oldest frames meanwhile (over its size limit), the
                // frames this transfer carried may be gone already: the next transfer starts at
                // the new front, and the ground drops whatever it already holds.
                if queue.stats().frames_dropped == dropped_before {
                    queue.mark_sent_many(frames)?;
                    self.summary.records_frames_acknowledged += frames as u64;
                }
            }
            Sending::Reports { upto } => {
                self.reports.confirm(upto)?;
                self.summary.reports_delivered += 1;
            }
            Sending::Tile { task, absent } => {
                self.tasks.done(&task)?;
                if absent {
                    self.summary.tiles_absent.push(transfer.name.clone());
                } else {
                    self.summary.tiles_sent.push(transfer.name.clone());
                }
            }
        }
        // The file is rebuilt from the queue or the store if it is ever needed again.
        let _ = std::fs::remove_file(&transfer.path);
        Ok(())
    }
}

/// Runs the board's side of the link until nothing is left to send, production has ended
/// (`producing` false), and the link has been quiet for [`ContactOptions::linger`].
pub fn run_contact(
    options: &ContactOptions,
    queue: &Mutex<Queue>,
    queue_dir: &Path,
    card: &ModelCard,
    producing: &Arc<AtomicBool>,
    apid: u16,
) -> Result<ContactSummary, ContactError> {
    let mut session = LinkSession::open(&options.link).map_err(|source| ContactError::Link {
        endpoint: options.link.endpoint.to_string(),
        source,
    })?;
    let mut outbox = Outbox::open(queue_dir, options.key.clone(), options.delivery)?;
    let position_path = queue_dir.join("command-position");
    let gate = match &options.key {
        Some(key) => Some(CommandGate::new(
            key.clone(),
            read_position(&position_path)?,
        )),
        None => None,
    };
    let store = match &options.scene_store {
        Some((root, policy)) => Some(SceneStore::open(root, *policy)?),
        None => None,
    };
    let mut board = Board {
        queue,
        outbox_dir: queue_dir.join("outbox"),
        card,
        options,
        gate,
        position_path,
        tasks: TaskList::open(queue_dir)?,
        store,
        reports: ReportLog::open(queue_dir, apid)?,
        summary: ContactSummary {
            endpoint: options.link.endpoint.to_string(),
            ..ContactSummary::default()
        },
    };
    let mut sending: Option<Sending> = None;
    let mut retry_at: Option<Instant> = None;
    let mut last_heard = Instant::now();
    let mut accounted = Account::default();
    loop {
        let nothing_to_send = sending.is_none()
            && board.lock().pending_frames() == 0
            && board.tasks.is_empty()
            && board.reports.is_empty()
            && !producing.load(Ordering::SeqCst);
        if nothing_to_send && last_heard.elapsed() >= options.linger && session.in_flight() == 0 {
            break;
        }
        if !producing.load(Ordering::SeqCst) && last_heard.elapsed() >= options.quiet_limit {
            eprintln!(
                "orbhash-edge: nothing heard from the ground for {:?}; what is left stays queued",
                options.quiet_limit
            );
            break;
        }
        let Some(Round {
            frames: received,
            contact,
        }) = session.next_round()
        else {
            continue;
        };
        let now = Instant::now();
        if !received.is_empty() {
            last_heard = now;
        }
        let mut pdus = Vec::new();
        for frame in received {
            match frame_kind(&frame) {
                Some(FrameKind::SpacePacket) => board.command(&frame)?,
                _ => pdus.push(frame),
            }
        }
        if outbox.active().is_none() && retry_at.is_none_or(|at| now >= at) {
            retry_at = None;
            if let Some((transfer, next)) = board.next_transfer()? {
                outbox.start(transfer)?;
                sending = Some(next);
            }
        }
        let (frames, outcome) = outbox.step(&pdus, contact);
        session.send(frames);
        let delta = outbox.account.since(&accounted);
        accounted = outbox.account;
        session.record(&delta);
        match outcome {
            Some(Outcome::Delivered(transfer)) => {
                if let Some(done) = sending.take() {
                    board.delivered(&transfer, done)?;
                }
            }
            Some(Outcome::Refused(transfer, why)) => {
                sending = None;
                eprintln!(
                    "orbhash-edge: the ground could not keep {} ({why}); it stays on board",
                    transfer.name
                );
                retry_at = Some(now + Duration::from_secs(1));
            }
            Some(Outcome::Restarted(transfer, why)) => {
                sending = None;
                if producing.load(Ordering::SeqCst) || options.linger > Duration::ZERO {
                    eprintln!("orbhash-edge: {}: {why}; sending it again", transfer.name);
                }
            }
            None => {}
        }
        if outbox.active().is_none() && sending.is_none() && board.lock().pending_frames() == 0 {
            // Nothing in flight and nothing queued: wait for the packetiser or the ground.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let frames_left = board.lock().pending_frames();
    let mut summary = board.summary;
    summary.passes = session.passes();
    summary.total = outbox.account;
    summary.tasks_left = board.tasks.len();
    summary.frames_left = frames_left;
    Ok(summary)
}

//! `orbhash-ground contact`: the ground station's side of a two-way link.
//!
//! ```text
//! board ══ CFDP PDUs ══▶ inbox (cfdp-rs) ──complete file──▶ station: records → archive (commit)
//!                                                                    tile    → tiles/ + tasks
//!                                                                    reports → tasks, commands
//!       ◀═ Finished "complete" only after that commit; "incomplete" when it failed (full disk)
//!       ◀═ request-tiles telecommands for the tasks still requested, every command interval
//! ```
//!
//! Each records file is ingested as one session, exactly as `ingest` would read it, and committed
//! before the protocol is told the file is complete; a failed commit (a full disk) makes the
//! answer "incomplete", and the board keeps the data and sends it again later.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use orbhash_link::{
    Account, Consignee, DeliveryConfig, Inbox, LinkOptions, LinkSession, PassAccount, Payload,
    Round,
};
use orbhash_wire::{
    encode_command, frame_kind, Command, CommandHeader, FrameKind, MacKey, RetentionPolicy,
    StreamPosition, TileList, TileRef, MAX_COMMAND_LEN, MAX_TILES_PER_REQUEST,
};
use serde::Serialize;

use crate::archive::Archive;
use crate::ingest::{ingest_reader, Committer, IngestOptions, StreamDecoder};
use crate::milvus::{Follower, MilvusConfig};
use crate::reports::ReportsTaken;
use crate::tasks::{tile_of_file_name, QueuedCommand, TILES_DIR};
use crate::{GroundError, Result};

/// How the ground station runs its side of a two-way link.
#[derive(Debug, Clone)]
pub struct ContactOptions {
    pub link: LinkOptions,
    /// Checks the board's packets and PDUs and signs telecommands; without it no telecommand
    /// can be sent.
    pub key: Option<MacKey>,
    pub delivery: DeliveryConfig,
    /// End once nothing has been heard for this long (and nothing is left to ask for); `None`
    /// runs until stopped.
    pub until_idle: Option<Duration>,
    /// How often open tile requests go up again.
    pub command_interval: Duration,
    /// The board's APID, which telecommands address.
    pub apid: u16,
    /// This ground station's PUS source id.
    pub source: u16,
    /// A Milvus deployment that follows every commit (see [`crate::milvus`]).
    pub milvus: Option<MilvusConfig>,
}

/// What a contact did, for the summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ContactSummary {
    pub passes: Vec<PassAccount>,
    pub total: Account,
    pub records_files: u64,
    pub records_stored: u64,
    pub tiles_received: Vec<String>,
    pub tiles_absent: Vec<String>,
    /// What the board's reports said, summed over the reports files.
    pub reports: ReportsTaken,
    pub refusals: Vec<String>,
    pub telecommands_sent: u64,
}

/// A records file on its way: its session is open and fed as its bytes arrive, so records reach
/// the archive before the whole file has.
struct Arriving {
    name: String,
    decoder: StreamDecoder,
    /// Bytes of the file fed so far.
    fed: u64,
    stored_before: u64,
}

/// Puts what the board delivers where it belongs.
struct Station {
    committer: Committer,
    /// A commit failed: the committer's in-memory state is not trusted again; the next file
    /// reopens the archive first and is ingested whole.
    broken: bool,
    archive_dir: PathBuf,
    ingest_options: IngestOptions,
    /// Wakes the Milvus follower after each commit.
    milvus: Option<std::sync::mpsc::Sender<()>>,
    tiles_dir: PathBuf,
    stream: u64,
    arriving: Option<Arriving>,
    summary: ContactSummary,
    trouble: Trouble,
}

impl Station {
    fn fail(&mut self, error: &GroundError) {
        self.broken = true;
        self.arriving = None;
        self.trouble.report("archive", error);
    }

    /// What each pass carried, as this run counted it; a failure (a full disk) is reported and
    /// tried again at the next save.
    fn save_passes(&mut self, session: &LinkSession, run_ms: i64) {
        for pass in session.passes() {
            if let Err(error) = self.committer.archive().save_link_pass(&pass, run_ms) {
                return self.trouble.report("link accounting", &error);
            }
        }
    }

    /// Commits what arrived early once its batch is due.
    fn commit_due(&mut self) {
        if self.broken {
            return;
        }
        if let Err(error) = self.committer.commit_if_due() {
            self.fail(&error);
        }
    }

    /// Ends the session of a file that will not be completed under its name.
    fn close_arriving(&mut self) {
        if let Some(arriving) = self.arriving.take() {
            if let Err(error) = self.committer.end(arriving.decoder) {
                self.fail(&error);
            }
        }
    }

    fn take_arriving(&mut self, name: &str, bytes: &[u8]) {
        if Payload::of_name(name) != Some(Payload::Records) || self.broken {
            return;
        }
        if self.arriving.as_ref().is_some_and(|a| a.name != name) {
            self.close_arriving();
        }
        if self.arriving.is_none() {
            self.stream += 1;
            let stored_before = self.committer.stored_records();
            match self
                .committer
                .begin_stream(self.stream, &format!("link:{name}"))
            {
                Ok(decoder) => {
                    self.arriving = Some(Arriving {
                        name: name.to_string(),
                        decoder,
                        fed: 0,
                        stored_before,
                    })
                }
                Err(error) => return self.fail(&error),
            }
        }
        let Some(arriving) = self.arriving.as_mut() else {
            return;
        };
        match self.committer.feed(&mut arriving.decoder, bytes) {
            Ok(()) => arriving.fed += bytes.len() as u64,
            Err(error) => self.fail(&error),
        }
    }

    fn ingest(&mut self, name: &str, path: &Path) -> Result<()> {
        if self.broken {
            self.arriving = None;
            self.committer = committer(
                Archive::open(&self.archive_dir)?,
                &self.ingest_options,
                self.milvus.clone(),
            );
            self.broken = false;
        }
        if self.arriving.as_ref().is_some_and(|a| a.name != name) {
            self.close_arriving();
        }
        let outcome = match self.arriving.take() {
            Some(arriving) => self.finish_arriving(arriving, path),
            None => self.ingest_file(name, path),
        };
        self.broken = outcome.is_err();
        outcome
    }

    /// The rest of a file whose start was fed as it arrived, then its session's commit.
    fn finish_arriving(&mut self, mut arriving: Arriving, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path).map_err(|source| GroundError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let rest = bytes.get(arriving.fed as usize..).unwrap_or_default();
        self.committer.feed(&mut arriving.decoder, rest)?;
        self.committer.end(arriving.decoder)?;
        self.committer.commit()?;
        self.summary.records_files += 1;
        self.summary.records_stored += self.committer.stored_records() - arriving.stored_before;
        Ok(())
    }

    fn ingest_file(&mut self, name: &str, path: &Path) -> Result<()> {
        self.stream += 1;
        let file = std::fs::File::open(path).map_err(|source| GroundError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let before = self.committer.stored_records();
        ingest_reader(
            &mut self.committer,
            self.stream,
            file,
            &format!("link:{name}"),
        )?;
        // `End` commits; this makes sure nothing of the file is left pending either way.
        self.committer.commit()?;
        self.summary.records_files += 1;
        self.summary.records_stored += self.committer.stored_records() - before;
        Ok(())
    }

    fn take_reports(&mut self, name: &str, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path).map_err(|source| GroundError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let taken = self.committer.archive().take_reports(name, &bytes)?;
        if taken.scenes_evicted > 0 {
            eprintln!(
                "orbhash ground: the board evicted {} scenes; {} tiles asked for are no longer \
                 on board",
                taken.scenes_evicted, taken.tasks_answered
            );
        }
        let total = &mut self.summary.reports;
        total.commands_executed += taken.commands_executed;
        total.scenes_evicted += taken.scenes_evicted;
        total.tasks_answered += taken.tasks_answered;
        total.unreadable += taken.unreadable;
        Ok(())
    }

    fn keep_tile(&mut self, name: &str, path: &Path, tile: TileRef) -> Result<()> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| GroundError::Io { path, source }
        };
        std::fs::create_dir_all(&self.tiles_dir).map_err(io(&self.tiles_dir))?;
        let target = self.tiles_dir.join(name);
        let partial = self.tiles_dir.join(format!("{name}.partial"));
        std::fs::copy(path, &partial).map_err(io(&partial))?;
        std::fs::File::open(&partial)
            .and_then(|file| file.sync_all())
            .map_err(io(&partial))?;
        std::fs::rename(&partial, &target).map_err(io(&target))?;
        std::fs::File::open(&self.tiles_dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io(&self.tiles_dir))?;
        let bytes = std::fs::metadata(&target).map_err(io(&target))?.len();
        self.committer.archive().tile_received(tile, name, bytes)?;
        self.summary.tiles_received.push(name.to_string());
        Ok(())
    }
}

impl Consignee for Station {
    fn arriving(&mut self, name: &str, bytes: &[u8]) {
        self.take_arriving(name, bytes);
    }

    fn abandoned(&mut self, name: &str) {
        if self.arriving.as_ref().is_some_and(|a| a.name == name) {
            self.close_arriving();
        }
    }

    fn announced(&mut self, name: &str, _size: u64) {
        if let Some((tile, false)) = tile_of_file_name(name) {
            if let Err(error) = self.committer.archive().tile_sent(tile) {
                eprintln!(
                    "orbhash ground: {name}: {}",
                    orbhash_cli::error_chain(&error)
                );
            }
        }
    }

    fn deliver(&mut self, name: &str, path: &Path) -> std::result::Result<(), String> {
        let outcome = match (Payload::of_name(name), tile_of_file_name(name)) {
            (Some(Payload::Records), _) => self.ingest(name, path),
            (Some(Payload::Reports), _) => self.take_reports(name, path),
            (Some(Payload::Tile), Some((tile, false))) => self.keep_tile(name, path, tile),
            (Some(Payload::TileAnswer), Some((tile, true))) => {
                let answer = std::fs::read_to_string(path).unwrap_or_default();
                let answer = answer.trim();
                self.summary.tiles_absent.push(name.to_string());
                eprintln!("orbhash ground: {name}: {answer}");
                self.committer.archive().tile_absent(tile, answer)
            }
            _ => return Err(format!("{name}: not a file this ground station takes")),
        };
        // The file itself is only the carrier: what it held is in the archive now.
        let _ = std::fs::remove_file(path);
        outcome.map_err(|error| orbhash_cli::error_chain(&error))
    }
}

/// A committer that wakes the Milvus follower, if any, after each durable commit.
fn committer(
    archive: Archive,
    options: &IngestOptions,
    milvus: Option<std::sync::mpsc::Sender<()>>,
) -> Committer {
    let mut committer = Committer::new(archive, options.clone());
    if let Some(wake) = milvus {
        committer.on_commit(move |_| {
            let _ = wake.send(());
        });
    }
    committer
}

fn request_command<'a>(request: u32, tiles: &'a [TileRef]) -> Command<'a> {
    Command::RequestTiles {
        request,
        tiles: TileList::Slice(tiles),
    }
}

/// Runs the ground station's side of the link on the archive in `dir`.
pub fn run_contact(dir: &Path, options: &ContactOptions) -> Result<ContactSummary> {
    let archive = Archive::open(dir)?;
    let ingest_options = IngestOptions {
        key: options.key.clone(),
        ..IngestOptions::default()
    };
    let follower = options
        .milvus
        .as_ref()
        .map(|config| Follower::spawn(dir, config));
    let waker = follower.as_ref().and_then(Follower::waker);
    let committer = committer(archive, &ingest_options, waker.clone());
    let station = Rc::new(RefCell::new(Station {
        committer,
        broken: false,
        archive_dir: dir.to_path_buf(),
        ingest_options,
        milvus: waker,
        tiles_dir: dir.join(TILES_DIR),
        stream: 0,
        arriving: None,
        summary: ContactSummary::default(),
        trouble: Trouble::default(),
    }));
    let mut inbox = Inbox::open(
        &dir.join("incoming"),
        Rc::clone(&station),
        options.key.clone(),
        options.delivery,
    )
    .map_err(|error| GroundError::Link(error.to_string()))?;
    let mut session = LinkSession::open(&options.link).map_err(|source| GroundError::Bind {
        addr: options.link.endpoint.to_string(),
        source,
    })?;
    let mut last_heard = Instant::now();
    let mut last_command: Option<Instant> = None;
    let mut accounted = Account::default();
    let mut telecommands = 0u64;
    let mut sequence_count = 0u16;
    let mut saved_passes = Instant::now();
    let run_ms = crate::now_ms();
    loop {
        if options
            .until_idle
            .is_some_and(|idle| last_heard.elapsed() >= idle && session.in_flight() == 0)
        {
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
        let pdus: Vec<Vec<u8>> = received
            .into_iter()
            .filter(|frame| frame_kind(frame) == Some(FrameKind::CfdpPdu))
            .collect();
        if !pdus.is_empty() {
            last_heard = now;
        }
        let mut frames = inbox.step(&pdus, contact);
        station.borrow_mut().commit_due();
        for refusal in inbox.take_refusals() {
            eprintln!("orbhash ground: not acknowledged: {refusal}");
            station.borrow_mut().summary.refusals.push(refusal);
        }
        // Open tile requests go up at every command interval of a contact window: the board may
        // have missed the last one, and repeats are harmless (it ignores tiles it already has).
        let due = last_command.is_none_or(|at| now - at >= options.command_interval);
        if due {
            if let Some(key) = &options.key {
                let mut station = station.borrow_mut();
                let uplink = uplink_requests(
                    station.committer.archive(),
                    options,
                    key,
                    &mut sequence_count,
                );
                match uplink {
                    Ok(commands) => {
                        telecommands += commands.len() as u64;
                        frames.extend(commands);
                    }
                    Err(error) => station.trouble.report("telecommands", &error),
                }
            }
            last_command = Some(now);
        }
        session.send(frames);
        let delta = inbox.account.since(&accounted);
        accounted = inbox.account;
        session.record(&delta);
        if saved_passes.elapsed() >= Duration::from_secs(1) {
            station.borrow_mut().save_passes(&session, run_ms);
            saved_passes = Instant::now();
        }
    }
    station.borrow_mut().save_passes(&session, run_ms);
    let mut summary = std::mem::take(&mut station.borrow_mut().summary);
    summary.passes = session.passes();
    summary.total = inbox.account;
    summary.telecommands_sent = telecommands;
    // The station (and its committer's hook) goes first, so the follower hears the end; the
    // archive has everything, Milvus gets the rest now, or the next sync repairs it.
    drop(inbox);
    drop(station);
    if let Some(follower) = follower {
        if let Err(error) = follower.finish() {
            eprintln!(
                "orbhash ground: {}; `index sync` repairs it",
                orbhash_cli::error_chain(&error)
            );
        }
    }
    Ok(summary)
}

/// The archive failing (a full disk) is not the end of a contact: the files it cannot keep are
/// not acknowledged, and the station keeps listening. Logged at first, then only now and then.
#[derive(Default)]
struct Trouble {
    count: u64,
}

impl Trouble {
    fn report(&mut self, what: &str, error: &GroundError) {
        self.count += 1;
        if self.count <= 3 || self.count % 100 == 0 {
            eprintln!(
                "orbhash ground: {what}: {} (occurrence {}); the contact goes on",
                orbhash_cli::error_chain(error),
                self.count
            );
        }
    }
}

/// One signed telecommand at the next stream position, made durable before it is used; the
/// packet and its position.
fn sign(
    archive: &Archive,
    options: &ContactOptions,
    key: &MacKey,
    sequence_count: &mut u16,
    command: &Command<'_>,
) -> Result<(Vec<u8>, StreamPosition)> {
    let header = CommandHeader {
        apid: options.apid,
        sequence_count: *sequence_count,
        source: options.source,
        position: archive.next_command_position()?,
    };
    *sequence_count = (*sequence_count + 1) % 0x4000;
    let mut packet = vec![0u8; MAX_COMMAND_LEN];
    let len = encode_command(&header, command, key, &mut packet)
        .map_err(|e| GroundError::Link(format!("{}: {e:?}", command.name())))?;
    packet.truncate(len);
    Ok((packet, header.position))
}

/// The telecommands for the open tile requests and the queued cancel and retention commands.
fn uplink_requests(
    archive: &Archive,
    options: &ContactOptions,
    key: &MacKey,
    sequence_count: &mut u16,
) -> Result<Vec<Vec<u8>>> {
    let mut commands = Vec::new();
    let stale_ms = i64::try_from((options.command_interval * 10).as_millis()).unwrap_or(i64::MAX);
    for (request, tiles) in archive.tiles_to_uplink(stale_ms)? {
        for chunk in tiles.chunks(usize::from(MAX_TILES_PER_REQUEST)) {
            let command = request_command(request, chunk);
            let (packet, position) = sign(archive, options, key, sequence_count, &command)?;
            archive.note_uplinked(request, position)?;
            commands.push(packet);
        }
    }
    for (id, queued) in archive.queued_commands()? {
        let command = match queued {
            QueuedCommand::CancelRequest { request } => Command::CancelRequest { request },
            QueuedCommand::SetRetention {
                capacity_bytes,
                max_age_s,
            } => Command::SetRetention(RetentionPolicy {
                capacity_bytes,
                max_age_s,
            }),
        };
        let (packet, position) = sign(archive, options, key, sequence_count, &command)?;
        archive.note_command_uplinked(id, queued, position)?;
        commands.push(packet);
    }
    Ok(commands)
}

//! Ingest: bytes from a file, stdin or TCP connections → decoded packets → the archive.
//!
//! Every stream (a file, stdin, one TCP connection) is one ingest *session* with its own
//! [`Decoder`] (sequence tracking and replay checks are per stream) and its own report. A single
//! [`Committer`] owns the archive and stores packets from every session in batched transactions:
//! a batch closes at [`IngestOptions::batch_records`] records or [`IngestOptions::batch_interval`],
//! and each commit is durable before [`Committer`] reports it (the "acknowledgement"). A crash
//! loses at most the open batch, never part of a packet, and re-ingesting the stream restores it:
//! duplicates are dropped by the archive's packet key (see [`super::archive`]).
//!
//! Loss accounting is the decoder's ([`orbhash_wire::PassStats`]): a session's figures and its
//! passes' are what its decoder reported, stored as they are, so the two always agree.
//!
//! The TCP listener ([`listen`]) runs on tokio: one task per connection decodes its stream, and the
//! committer runs on its own thread, fed through a bounded channel (backpressure on fast peers).
//! If the committer fails, the listener stops accepting and returns its error.

// Bytes here come off the radio link or the network: no path may panic on them.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use orbhash_wire::{
    Decoder, DecoderStats, Event, MacKey, PacketError, PassStats, Rejection, SequenceError,
};

use crate::archive::{Archive, PassCounts, PendingPacket, SessionReport};
use crate::{GroundError, Result};

/// How ingest batches its commits.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// With a mission key, only packets with a valid MAC are stored.
    pub key: Option<MacKey>,
    /// Close the batch at this many records.
    pub batch_records: usize,
    /// Close the batch when it is this old, so a slow link still gets durable commits.
    pub batch_interval: Duration,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            key: None,
            batch_records: 100_000,
            batch_interval: Duration::from_secs(1),
        }
    }
}

/// Reported after every durable commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitNote {
    /// Records stored by this committer so far (all committed).
    pub records_stored: u64,
    /// Packets stored by this committer so far.
    pub packets_stored: u64,
    /// Commits so far.
    pub commits: u64,
}

/// Called after every durable commit.
pub type CommitHook = Box<dyn FnMut(&CommitNote) + Send>;

/// What a stream sends the committer.
#[derive(Debug)]
pub enum StreamMessage {
    /// A new session: `stream` is the caller's key for it until `End`.
    Begin {
        stream: u64,
        source: String,
        peer: Option<String>,
        authenticated: bool,
    },
    /// An accepted packet, and its pass's figures after it.
    Packet {
        stream: u64,
        packet: PendingPacket,
        pass: PassStats,
    },
    /// The decoder refused a packet as a duplicate of one in this session; its pass's figures.
    Duplicate { stream: u64, pass: PassStats },
    /// The decoder's running totals.
    Stats { stream: u64, stats: DecoderStats },
    /// The stream ended; the final totals.
    End { stream: u64, stats: DecoderStats },
}

#[derive(Debug, Default)]
struct SessionState {
    report: SessionReport,
    decoder: DecoderStats,
    /// The latest figures of each of the decoder's pass runs (several runs can share a pass).
    runs: BTreeMap<u32, PassStats>,
    /// Per pass (APID, epoch): packets new to the archive, and packets it already had.
    stored: BTreeMap<(u16, u32), (u64, u64)>,
    archive_duplicates: u64,
    dirty: bool,
    ended: bool,
}

impl SessionState {
    /// The report as of now: the decoder's figures, and what the archive made of the packets.
    fn refresh(&mut self) -> &SessionReport {
        let stats = &self.decoder;
        let report = &mut self.report;
        report.bytes = stats.bytes;
        report.frames = stats.frames;
        report.packets_received = stats.packets;
        report.corrupt = stats.corrupted();
        report.missing = stats.missing;
        report.late = stats.late;
        report.auth_failures = stats.authentication_failures();
        report.other_rejected = stats.unsupported_versions
            + stats.unknown_code_lengths
            + stats.malformed
            + stats.too_many_apids;
        report.packets_duplicate = stats.duplicates + self.archive_duplicates;
        report.finished = self.ended;
        let mut passes: BTreeMap<(u16, u32), PassCounts> = BTreeMap::new();
        for run in self.runs.values() {
            let pass = passes
                .entry((run.apid, run.epoch))
                .or_insert_with(|| PassCounts {
                    apid: run.apid,
                    epoch: run.epoch,
                    ..PassCounts::default()
                });
            pass.packets_received += run.packets;
            pass.duplicates += run.duplicates;
            pass.missing += run.missing;
            pass.late += run.late;
        }
        for (key, (stored, already)) in &self.stored {
            if let Some(pass) = passes.get_mut(key) {
                pass.packets_stored += stored;
                pass.duplicates += already;
            }
        }
        report.passes = passes.into_values().collect();
        &self.report
    }
}

/// Owns the archive; stores packets from any number of sessions in batched, durable commits.
pub struct Committer {
    archive: Archive,
    options: IngestOptions,
    sessions: HashMap<u64, SessionState>,
    pending: Vec<(u64, PendingPacket)>,
    pending_records: usize,
    batch_started: Option<Instant>,
    note: CommitNote,
    on_commit: Option<CommitHook>,
    finished: Vec<SessionReport>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer")
            .field("archive", &self.archive)
            .field("note", &self.note)
            .finish()
    }
}

impl Committer {
    pub fn new(archive: Archive, options: IngestOptions) -> Self {
        Self {
            archive,
            options,
            sessions: HashMap::new(),
            pending: Vec::new(),
            pending_records: 0,
            batch_started: None,
            note: CommitNote {
                records_stored: 0,
                packets_stored: 0,
                commits: 0,
            },
            on_commit: None,
            finished: Vec::new(),
        }
    }

    /// Calls `hook` after every durable commit (progress output, tests' acknowledgements).
    pub fn on_commit(&mut self, hook: impl FnMut(&CommitNote) + Send + 'static) {
        self.on_commit = Some(Box::new(hook));
    }

    pub fn archive(&self) -> &Archive {
        &self.archive
    }

    /// Records this committer has stored (committed) so far.
    pub fn stored_records(&self) -> u64 {
        self.note.records_stored
    }

    /// Handles one message; commits when the batch is full or old.
    pub fn handle(&mut self, message: StreamMessage) -> Result<()> {
        match message {
            StreamMessage::Begin {
                stream,
                source,
                peer,
                authenticated,
            } => {
                let report = self
                    .archive
                    .begin_session(&source, peer.as_deref(), authenticated)?;
                self.sessions.insert(
                    stream,
                    SessionState {
                        report,
                        ..SessionState::default()
                    },
                );
            }
            StreamMessage::Packet {
                stream,
                packet,
                pass,
            } => {
                if let Some(session) = self.sessions.get_mut(&stream) {
                    session.runs.insert(pass.run, pass);
                    session.dirty = true;
                }
                self.pending_records += packet.records.len();
                self.pending.push((stream, packet));
                self.batch_started.get_or_insert_with(Instant::now);
            }
            StreamMessage::Duplicate { stream, pass } => {
                if let Some(session) = self.sessions.get_mut(&stream) {
                    session.runs.insert(pass.run, pass);
                    session.dirty = true;
                }
            }
            StreamMessage::Stats { stream, stats } => {
                if let Some(session) = self.sessions.get_mut(&stream) {
                    session.decoder = stats;
                    session.dirty = true;
                }
            }
            StreamMessage::End { stream, stats } => {
                if let Some(session) = self.sessions.get_mut(&stream) {
                    session.decoder = stats;
                    session.ended = true;
                    session.dirty = true;
                }
                // A finished session's report is final only once committed.
                self.commit()?;
            }
        }
        self.commit_if_due()
    }

    /// Commits if the batch is full or older than the interval.
    pub fn commit_if_due(&mut self) -> Result<()> {
        let old = self
            .batch_started
            .is_some_and(|started| started.elapsed() >= self.options.batch_interval);
        if self.pending_records >= self.options.batch_records || old {
            self.commit()?;
        }
        Ok(())
    }

    /// Stores everything pending in one durable transaction, with the sessions' reports.
    pub fn commit(&mut self) -> Result<()> {
        let dirty = self.sessions.values().any(|session| session.dirty);
        if self.pending.is_empty() && !dirty {
            return Ok(());
        }
        let mut tx = self.archive.begin()?;
        let mut stored_packets = 0u64;
        let mut stored_records = 0u64;
        for (stream, packet) in &self.pending {
            let Some(session) = self.sessions.get_mut(stream) else {
                continue;
            };
            let new = tx.store_packet(packet, session.report.session_id)?;
            let records = packet.records.len() as u64;
            let counts = session
                .stored
                .entry((packet.header.apid, packet.header.epoch))
                .or_default();
            if new {
                counts.0 += 1;
                session.report.packets_stored += 1;
                session.report.records_stored += records;
                stored_packets += 1;
                stored_records += records;
            } else {
                counts.1 += 1;
                session.archive_duplicates += 1;
                session.report.records_duplicate += records;
            }
        }
        for session in self.sessions.values_mut().filter(|s| s.dirty) {
            let ended = session.ended;
            let report = session.refresh().clone();
            tx.save_session(&report, ended)?;
        }
        tx.commit()?;
        self.pending.clear();
        self.pending_records = 0;
        self.batch_started = None;
        self.note.records_stored += stored_records;
        self.note.packets_stored += stored_packets;
        self.note.commits += 1;
        let ended: Vec<u64> = self
            .sessions
            .iter_mut()
            .filter_map(|(stream, session)| {
                session.dirty = false;
                session.ended.then_some(*stream)
            })
            .collect();
        for stream in ended {
            if let Some(mut session) = self.sessions.remove(&stream) {
                self.finished.push(session.refresh().clone());
            }
        }
        if let Some(hook) = self.on_commit.as_mut() {
            hook(&self.note);
        }
        Ok(())
    }

    /// Opens stream `stream` as a session from `source` and returns its decoder.
    pub fn begin_stream(&mut self, stream: u64, source: &str) -> Result<StreamDecoder> {
        let key = self.options.key.clone();
        self.handle(StreamMessage::Begin {
            stream,
            source: source.to_string(),
            peer: None,
            authenticated: key.is_some(),
        })?;
        Ok(StreamDecoder::new(stream, key, None))
    }

    /// Feeds the next bytes of `decoder`'s stream; stops at the first message that fails.
    pub fn feed(&mut self, decoder: &mut StreamDecoder, bytes: &[u8]) -> Result<()> {
        let mut result = Ok(());
        decoder.feed(bytes, &mut |message| {
            if result.is_ok() {
                result = self.handle(message);
            }
        });
        result
    }

    /// Ends `decoder`'s stream and commits its session.
    pub fn end(&mut self, decoder: StreamDecoder) -> Result<()> {
        let mut result = Ok(());
        decoder.end(&mut |message| {
            if result.is_ok() {
                result = self.handle(message);
            }
        });
        result
    }

    /// Commits what is left and returns the reports of the sessions that ended.
    pub fn finish(mut self) -> Result<Vec<SessionReport>> {
        self.commit()?;
        Ok(self.finished)
    }
}

/// Decodes one stream into messages for a committer; `emit` receives them in order.
pub struct StreamDecoder {
    stream: u64,
    decoder: Decoder,
    peer: Option<String>,
    rejections_logged: u32,
}

/// An [`Event`] that no longer borrows the decoder, so the decoder can be asked about its pass.
enum Outcome {
    Packet(PendingPacket),
    Rejected(Rejection),
}

impl Outcome {
    fn of(event: Event<'_>) -> Self {
        match event {
            Event::Packet { packet, .. } => Outcome::Packet(PendingPacket {
                header: packet.header,
                authenticated: packet.authenticated,
                records: packet.records().collect(),
            }),
            Event::Rejected(rejection) => Outcome::Rejected(rejection),
        }
    }
}

/// Rejections logged per stream before only the counts remain.
const REJECTIONS_LOGGED: u32 = 10;

impl StreamDecoder {
    pub fn new(stream: u64, key: Option<MacKey>, peer: Option<String>) -> Self {
        Self {
            stream,
            decoder: key.map_or_else(Decoder::new, Decoder::authenticated),
            peer,
            rejections_logged: 0,
        }
    }

    /// Feeds a chunk; every accepted packet and duplicate becomes a message, then the running
    /// totals.
    pub fn feed(&mut self, mut chunk: &[u8], emit: &mut impl FnMut(StreamMessage)) {
        while let Some(event) = self.decoder.feed(&mut chunk) {
            let outcome = Outcome::of(event);
            self.emit(outcome, emit);
        }
        emit(StreamMessage::Stats {
            stream: self.stream,
            stats: *self.decoder.stats(),
        });
    }

    /// Ends the stream: a last frame cut off before its delimiter is still tried.
    pub fn end(mut self, emit: &mut impl FnMut(StreamMessage)) {
        if let Some(event) = self.decoder.finish() {
            let outcome = Outcome::of(event);
            self.emit(outcome, emit);
        }
        emit(StreamMessage::End {
            stream: self.stream,
            stats: *self.decoder.stats(),
        });
    }

    /// Sends what a frame became, with its pass's figures as the decoder now has them.
    fn emit(&mut self, outcome: Outcome, emit: &mut impl FnMut(StreamMessage)) {
        let stream = self.stream;
        match outcome {
            Outcome::Packet(packet) => {
                if let Some(pass) = self.decoder.pass(packet.header.apid).copied() {
                    emit(StreamMessage::Packet {
                        stream,
                        packet,
                        pass,
                    });
                }
            }
            Outcome::Rejected(rejection) => {
                if let Rejection::Sequence(SequenceError::Duplicate { apid, .. }) = rejection {
                    if let Some(pass) = self.decoder.pass(apid).copied() {
                        emit(StreamMessage::Duplicate { stream, pass });
                    }
                }
                self.log(&rejection);
            }
        }
    }

    /// Authentication failures are reported with the peer's address: they are the ones an
    /// operator must look at. Line noise shows in the counts only.
    fn log(&mut self, rejection: &Rejection) {
        let security = matches!(
            rejection,
            Rejection::Packet(PacketError::BadMac | PacketError::MissingMac)
                | Rejection::Sequence(
                    SequenceError::StaleEpoch { .. } | SequenceError::OutsideWindow { .. }
                )
        );
        if !security || self.rejections_logged >= REJECTIONS_LOGGED {
            return;
        }
        self.rejections_logged += 1;
        let peer = self.peer.as_deref().unwrap_or("local input");
        eprintln!("orbhash ground: {peer}: rejected packet: {rejection}");
        if self.rejections_logged == REJECTIONS_LOGGED {
            eprintln!("orbhash ground: {peer}: further rejections are only counted");
        }
    }
}

/// Ingests one byte stream (a file, stdin) as one session.
pub fn ingest_reader(
    committer: &mut Committer,
    stream: u64,
    mut reader: impl Read,
    source: &str,
) -> Result<()> {
    let mut decoder = committer.begin_stream(stream, source)?;
    let mut buffer = vec![0u8; 1 << 18];
    let mut failure: Option<GroundError> = None;
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source_error) => {
                failure = Some(GroundError::Io {
                    path: source.into(),
                    source: source_error,
                });
                break;
            }
        };
        committer.feed(&mut decoder, buffer.get(..read).unwrap_or(&[]))?;
    }
    committer.end(decoder)?;
    // What was read before a read error is stored and reported; the error is still the answer.
    failure.map_or(Ok(()), Err)
}

/// Ingests files (`-` is stdin) into the archive in `dir`; one session per input.
pub fn ingest_files(
    dir: &Path,
    inputs: &[std::path::PathBuf],
    options: IngestOptions,
    on_commit: Option<CommitHook>,
) -> Result<Vec<SessionReport>> {
    let archive = Archive::open(dir)?;
    let mut committer = Committer::new(archive, options);
    committer.on_commit = on_commit;
    for (stream, input) in inputs.iter().enumerate() {
        if input.as_os_str() == "-" {
            ingest_reader(
                &mut committer,
                stream as u64,
                std::io::stdin().lock(),
                "stdin",
            )?;
        } else {
            let file = std::fs::File::open(input).map_err(|source| GroundError::Io {
                path: input.clone(),
                source,
            })?;
            let source = input.display().to_string();
            ingest_reader(&mut committer, stream as u64, file, &source)?;
        }
    }
    committer.finish()
}

/// How the TCP listener runs.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    /// Where to listen; loopback unless the operator says otherwise.
    pub addr: SocketAddr,
    pub ingest: IngestOptions,
    /// Stop after this many connections have ended (tests, one-pass runs). None: until Ctrl-C.
    pub max_connections: Option<usize>,
}

/// Listens for downlink streams over TCP until Ctrl-C (or `max_connections` connections have
/// ended); each connection is a session. `ready` learns the bound address (port 0 picks one).
pub fn listen(
    dir: &Path,
    options: ListenOptions,
    ready: Option<std::sync::mpsc::Sender<SocketAddr>>,
    on_commit: Option<CommitHook>,
) -> Result<Vec<SessionReport>> {
    let archive = Archive::open(dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| GroundError::Bind {
            addr: options.addr.to_string(),
            source,
        })?;
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<StreamMessage>(1024);
    let handle = runtime.handle().clone();
    let interval = options.ingest.batch_interval;
    let mut committer = Committer::new(archive, options.ingest.clone());
    committer.on_commit = on_commit;
    // The committer is blocking (SQLite, fsync): its own thread, not a runtime worker.
    let writer = std::thread::spawn(move || -> Result<Vec<SessionReport>> {
        loop {
            let next = handle.block_on(async {
                tokio::time::timeout(interval.max(Duration::from_millis(10)), receiver.recv()).await
            });
            match next {
                Ok(Some(message)) => committer.handle(message)?,
                Ok(None) => break,
                Err(_elapsed) => committer.commit_if_due()?,
            }
        }
        committer.finish()
    });
    let served = runtime.block_on(serve(options, sender, ready));
    let written = writer.join().map_err(|_| GroundError::WriterPanicked)?;
    match (written, served) {
        // The writer's failure is the cause; serve only saw the channel close.
        (Err(error), _) => Err(GroundError::WriterFailed {
            source: Box::new(error),
        }),
        (Ok(_), Err(error)) => Err(error),
        (Ok(reports), Ok(())) => Ok(reports),
    }
}

async fn serve(
    options: ListenOptions,
    sender: tokio::sync::mpsc::Sender<StreamMessage>,
    ready: Option<std::sync::mpsc::Sender<SocketAddr>>,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(options.addr)
        .await
        .map_err(|source| GroundError::Bind {
            addr: options.addr.to_string(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| GroundError::Bind {
        addr: options.addr.to_string(),
        source,
    })?;
    if let Some(ready) = ready {
        let _ = ready.send(local);
    }
    let mut tasks = tokio::task::JoinSet::new();
    let mut accepted = 0usize;
    let mut ended = 0usize;
    let limit = options.max_connections.unwrap_or(usize::MAX);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let stopped = loop {
        if ended >= limit {
            break Ok(());
        }
        tokio::select! {
            // The committer is gone (it failed): accepting more would only lose what they send.
            () = sender.closed() => {
                break Err(GroundError::WriterGone { peer: local.to_string() });
            }
            accept = listener.accept(), if accepted < limit => {
                let (socket, peer) = match accept {
                    Ok(pair) => pair,
                    Err(error) => {
                        eprintln!("orbhash ground: accepting on {local}: {error}");
                        continue;
                    }
                };
                accepted += 1;
                let sender = sender.clone();
                let key = options.ingest.key.clone();
                tasks.spawn(connection(accepted as u64, socket, peer, key, sender));
            }
            done = tasks.join_next(), if !tasks.is_empty() => {
                ended += 1;
                if let Some(Ok(Err(error))) = done {
                    eprintln!("orbhash ground: {}", orbhash_cli::error_chain(&error));
                }
            }
            _ = &mut ctrl_c => {
                eprintln!("orbhash ground: interrupted; committing what arrived");
                break Ok(());
            }
        }
    };
    // Connections still open at Ctrl-C end here; what they sent is committed.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    stopped
}

async fn connection(
    stream: u64,
    mut socket: tokio::net::TcpStream,
    peer: SocketAddr,
    key: Option<MacKey>,
    sender: tokio::sync::mpsc::Sender<StreamMessage>,
) -> Result<()> {
    use tokio::io::AsyncReadExt;
    let peer_text = peer.to_string();
    let gone = |_| GroundError::WriterGone {
        peer: peer_text.clone(),
    };
    sender
        .send(StreamMessage::Begin {
            stream,
            source: "tcp".to_string(),
            peer: Some(peer_text.clone()),
            authenticated: key.is_some(),
        })
        .await
        .map_err(gone)?;
    let mut decoder = StreamDecoder::new(stream, key, Some(peer_text.clone()));
    let mut buffer = vec![0u8; 1 << 16];
    let mut failure = None;
    loop {
        let read = match socket.read(&mut buffer).await {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) => {
                failure = Some(GroundError::Peer {
                    peer: peer_text.clone(),
                    source: error,
                });
                break;
            }
        };
        let mut messages = Vec::new();
        decoder.feed(buffer.get(..read).unwrap_or(&[]), &mut |m| messages.push(m));
        for message in messages {
            sender.send(message).await.map_err(gone)?;
        }
    }
    let mut messages = Vec::new();
    decoder.end(&mut |m| messages.push(m));
    for message in messages {
        sender.send(message).await.map_err(gone)?;
    }
    failure.map_or(Ok(()), Err)
}

/// Reads a mission key file: 64 hex digits (256 bits), surrounding whitespace ignored.
pub fn read_key_file(path: &Path) -> Result<MacKey> {
    let text = std::fs::read_to_string(path).map_err(|source| GroundError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    MacKey::from_hex(&text).ok_or_else(|| GroundError::BadKey {
        path: path.to_path_buf(),
        why: "expected 64 hex digits (256 bits)".to_string(),
    })
}

//! Acknowledged delivery: CCSDS File Delivery Protocol class 2 (CCSDS 727.0-B-5) with `cfdp-rs`.
//!
//! The board is CFDP entity [`BOARD_ENTITY`] and sends files: a *bundle* of queued record frames
//! (`records-<seq>.bin`, the frames exactly as the one-way downlink carries them), a tasked tile
//! (`tile-<scene>-<tile>.tif`) or a tile's "no longer on board" answer (`tile-<scene>-<tile>.absent`).
//! The ground is entity [`GROUND_ENTITY`] and receives them. cfdp-rs does the protocol: metadata,
//! file data, EOF, NAKs for the gaps, Finished, the positive-acknowledgement procedures.
//!
//! What orbhash adds, because cfdp-rs 0.3 leaves it out or keeps it in memory:
//!
//! - **Acknowledge after commit.** The ground's filestore ([`InboxStore`]) hands the completed
//!   file to the [`Consignee`] (the archive) when cfdp-rs verifies its checksum; the Finished PDU
//!   says "complete" only if that commit succeeded. A refused commit (a full disk) gives a
//!   Finished PDU with delivery "incomplete", and the board keeps the data.
//! - **State across restarts.** The library's transaction state is in memory. The board's data
//!   stays in its durable queue until a Finished "complete" arrives; a transaction cut off by a
//!   restart of either side, or silent for [`DeliveryConfig::inactivity`] of contact time, is
//!   dropped and its file sent again as a new transaction (the ground drops the records it already
//!   holds). Transaction sequence numbers are persisted, so a restarted board never reuses one.
//! - **Transmission opportunities.** The handlers are stepped only inside contact windows; the
//!   positive-ack and NAK limits are set high, and a stalled transaction ends by inactivity
//!   instead (suspend/resume is not in the library).
//! - **Inactivity on the ground.** A PDU of a newer transaction replaces the one in progress (the
//!   board sends one at a time, in sequence order); PDUs of older ones are dropped.
//! - **Authentication.** With a mission key every PDU carries a MAC (`orbhash_wire::delivery`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use cfdp::dest::DestinationHandler;
use cfdp::filestore::{FilestoreError, NativeFilestore, VirtualFilestore};
use cfdp::lost_segments::LostSegmentsList;
use cfdp::request::PutRequestOwned;
use cfdp::source::SourceHandler;
use cfdp::user::{
    CfdpUser, FileSegmentRecvdParams, MetadataReceivedParams, TransactionFinishedParams,
};
use cfdp::{
    FaultInfo, GenericSendError, IndicationConfig, LocalEntityConfig, PduProvider, PduRawWithInfo,
    PduSender, RemoteEntityConfig, State, StdCountdown, StdTimerCreator, TransactionId,
    UserFaultHook,
};
use cfdp_spacepackets::cfdp::pdu::eof::EofPdu;
use cfdp_spacepackets::cfdp::pdu::file_data::FileDataPdu;
use cfdp_spacepackets::cfdp::pdu::finished::{
    DeliveryCode, FileStatus, FinishedPduCreator, FinishedPduReader,
};
use cfdp_spacepackets::cfdp::pdu::metadata::MetadataPduReader;
use cfdp_spacepackets::cfdp::pdu::WritablePduPacket;
use cfdp_spacepackets::cfdp::pdu::{FileDirectiveType, PduHeader};
use cfdp_spacepackets::cfdp::tlv::EntityIdTlv;
use cfdp_spacepackets::cfdp::{ChecksumType, ConditionCode, PduType, TransmissionMode};
use cfdp_spacepackets::util::{UnsignedByteFieldU16, UnsignedEnum};
use orbhash_wire::{open_pdu_frame, pdu_mac, MacKey, TileRef};
use serde::{Deserialize, Serialize};

/// The board's CFDP entity id.
pub const BOARD_ENTITY: u16 = 1;
/// The ground station's CFDP entity id.
pub const GROUND_ENTITY: u16 = 2;

/// Protocol timing and sizes, the same on both sides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeliveryConfig {
    /// Longest PDU; file data is cut to fit.
    pub max_pdu_len: usize,
    /// How long a side waits for the answer to an EOF or Finished PDU before sending it again.
    pub ack_interval: Duration,
    /// How long the ground waits for asked-for data before asking again.
    pub nak_interval: Duration,
    /// Contact time without a PDU of the current transaction after which it is given up (and,
    /// on the board, started again).
    pub inactivity: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            max_pdu_len: 1024,
            ack_interval: Duration::from_millis(500),
            nak_interval: Duration::from_millis(500),
            inactivity: Duration::from_secs(5),
        }
    }
}

/// What a file carries; decides the ground's handling and the accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Payload {
    Records,
    /// The board's PUS telemetry reports (`orbhash_wire::report`), back to back.
    Reports,
    Tile,
    TileAnswer,
}

impl Payload {
    /// The payload a file name announces, as the ground reads it; `None` for any other name.
    pub fn of_name(name: &str) -> Option<Payload> {
        if !name_is_safe(name) {
            return None;
        }
        if name.starts_with("records-") && name.ends_with(".bin") {
            Some(Payload::Records)
        } else if name.starts_with("reports-") && name.ends_with(".bin") {
            Some(Payload::Reports)
        } else if name.starts_with("tile-") && name.ends_with(".tif") {
            Some(Payload::Tile)
        } else if name.starts_with("tile-") && name.ends_with(".absent") {
            Some(Payload::TileAnswer)
        } else {
            None
        }
    }
}

/// The file name a tile travels and is stored under (the board's naming).
pub fn tile_file_name(tile: TileRef, absent: bool) -> String {
    let extension = if absent { "absent" } else { "tif" };
    format!("tile-{:08x}-{:08x}.{extension}", tile.scene, tile.tile)
}

/// The tile a file name names, and whether it is the board's "absent" answer.
pub fn tile_of_file_name(name: &str) -> Option<(TileRef, bool)> {
    let rest = name.strip_prefix("tile-")?;
    let (stem, absent) = match (rest.strip_suffix(".tif"), rest.strip_suffix(".absent")) {
        (Some(stem), _) => (stem, false),
        (_, Some(stem)) => (stem, true),
        _ => return None,
    };
    let (scene, tile) = stem.split_once('-')?;
    if scene.len() != 8 || tile.len() != 8 {
        return None;
    }
    Some((
        TileRef {
            scene: u32::from_str_radix(scene, 16).ok()?,
            tile: u32::from_str_radix(tile, 16).ok()?,
        },
        absent,
    ))
}

/// Names the ground accepts: a plain file name, no path, no hidden files.
fn name_is_safe(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("CFDP: {0}")]
    Protocol(String),
}

/// Bytes and exchanges on the link, for one pass or a whole run. "Wire" bytes are the framed
/// bytes (COBS and delimiter included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// File content of the transfers delivered, by payload (each byte once).
    pub record_bytes: u64,
    #[serde(default)]
    pub report_bytes: u64,
    pub tile_bytes: u64,
    /// File data sent again (NAKed), or sent in a transfer that was not delivered and so is
    /// sent again (wire bytes of repeated PDUs, content bytes of undelivered transfers).
    pub retransmitted_bytes: u64,
    /// Every other wire byte sent: PDU headers, directives, MACs, framing.
    pub overhead_bytes: u64,
    pub frames_sent: u64,
    /// Wire bytes and frames received from the other side.
    pub bytes_received: u64,
    pub frames_received: u64,
    /// Turns of the conversation: a frame received after frames were sent.
    pub round_trips: u64,
    pub transactions_started: u64,
    pub transactions_completed: u64,
    pub transactions_refused: u64,
    pub transactions_restarted: u64,
    /// Frames refused before the protocol saw them (length, MAC, CRC).
    pub frames_rejected: u64,
}

impl Account {
    /// Every wire byte sent.
    pub fn bytes_sent(&self) -> u64 {
        self.record_bytes
            + self.report_bytes
            + self.tile_bytes
            + self.retransmitted_bytes
            + self.overhead_bytes
    }

    /// What was counted since `earlier`, a copy of the same account taken before.
    pub fn since(&self, earlier: &Account) -> Account {
        Account {
            record_bytes: self.record_bytes - earlier.record_bytes,
            report_bytes: self.report_bytes - earlier.report_bytes,
            tile_bytes: self.tile_bytes - earlier.tile_bytes,
            retransmitted_bytes: self.retransmitted_bytes - earlier.retransmitted_bytes,
            overhead_bytes: self.overhead_bytes - earlier.overhead_bytes,
            frames_sent: self.frames_sent - earlier.frames_sent,
            bytes_received: self.bytes_received - earlier.bytes_received,
            frames_received: self.frames_received - earlier.frames_received,
            round_trips: self.round_trips - earlier.round_trips,
            transactions_started: self.transactions_started - earlier.transactions_started,
            transactions_completed: self.transactions_completed - earlier.transactions_completed,
            transactions_refused: self.transactions_refused - earlier.transactions_refused,
            transactions_restarted: self.transactions_restarted - earlier.transactions_restarted,
            frames_rejected: self.frames_rejected - earlier.frames_rejected,
        }
    }

    pub fn add(&mut self, other: &Account) {
        self.record_bytes += other.record_bytes;
        self.report_bytes += other.report_bytes;
        self.tile_bytes += other.tile_bytes;
        self.retransmitted_bytes += other.retransmitted_bytes;
        self.overhead_bytes += other.overhead_bytes;
        self.frames_sent += other.frames_sent;
        self.bytes_received += other.bytes_received;
        self.frames_received += other.frames_received;
        self.round_trips += other.round_trips;
        self.transactions_started += other.transactions_started;
        self.transactions_completed += other.transactions_completed;
        self.transactions_refused += other.transactions_refused;
        self.transactions_restarted += other.transactions_restarted;
        self.frames_rejected += other.frames_rejected;
    }
}

/// The wire size of a frame: COBS adds a byte per 254 and one, plus the delimiter.
pub fn wire_len(frame_len: usize) -> u64 {
    (frame_len + frame_len / 254 + 2) as u64
}

/// PDUs the handlers produce, collected for the link.
#[derive(Clone, Default)]
struct PduQueue(Rc<RefCell<Vec<Vec<u8>>>>);

impl PduSender for PduQueue {
    fn send_pdu(
        &self,
        _pdu_type: PduType,
        _directive: Option<FileDirectiveType>,
        raw_pdu: &[u8],
    ) -> Result<(), GenericSendError> {
        self.0.borrow_mut().push(raw_pdu.to_vec());
        Ok(())
    }
}

impl PduQueue {
    fn take(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}

/// Faults are answered by the handlers' defaults (cancel); this keeps the last one for the log.
#[derive(Default)]
struct FaultNote(Rc<RefCell<Option<String>>>);

impl UserFaultHook for FaultNote {
    fn notice_of_suspension_cb(&mut self, fault: FaultInfo) {
        self.note("suspension", &fault);
    }
    fn notice_of_cancellation_cb(&mut self, fault: FaultInfo) {
        self.note("cancellation", &fault);
    }
    fn abandoned_cb(&mut self, fault: FaultInfo) {
        self.note("abandoned", &fault);
    }
    fn ignore_cb(&mut self, _fault: FaultInfo) {}
}

impl FaultNote {
    fn note(&self, what: &str, fault: &FaultInfo) {
        *self.0.borrow_mut() = Some(format!("{what}: {:?}", fault.condition_code()));
    }
}

fn remote_config(peer: u16, config: &DeliveryConfig) -> RemoteEntityConfig {
    let mut remote = RemoteEntityConfig::new_with_default_values(
        UnsignedByteFieldU16::new(peer).into(),
        config.max_pdu_len,
        true,
        true,
        TransmissionMode::Acknowledged,
        ChecksumType::Crc32C,
    );
    remote.positive_ack_timer_interval = config.ack_interval;
    remote.nak_timer_interval = config.nak_interval;
    // Contact gaps stall timers without any fault of the peer's: orbhash's inactivity rule ends
    // a dead transaction instead of the library's expiry limits.
    remote.positive_ack_timer_expiration_limit = 10_000;
    remote.nak_timer_expiration_limit = 10_000;
    remote
}

fn seal(pdus: Vec<Vec<u8>>, key: Option<&MacKey>) -> Vec<Vec<u8>> {
    pdus.into_iter()
        .map(|mut pdu| {
            if let Some(key) = key {
                let mac = pdu_mac(key, &pdu);
                pdu.extend_from_slice(&mac);
            }
            pdu
        })
        .collect()
}

/// The transaction sequence number of a PDU.
fn transaction_of(pdu: &[u8]) -> Option<u64> {
    PduHeader::from_bytes(pdu)
        .ok()
        .map(|(header, _)| header.common_pdu_conf().transaction_seq_num.value())
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DeliveryError + '_ {
    move |source| DeliveryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One file for the board to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// The name the ground stores it under (see [`Payload::of_name`]).
    pub name: String,
    pub path: PathBuf,
    pub payload: Payload,
}

/// How a transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The ground committed it.
    Delivered(Transfer),
    /// The ground received it but could not keep it (its answer says why); send it later.
    Refused(Transfer, String),
    /// Cut off (silence, a restart, a fault); send it again.
    Restarted(Transfer, String),
}

#[derive(Default)]
struct SourceUser {
    finished: Option<TransactionFinishedParams>,
}

impl CfdpUser for SourceUser {
    fn transaction_indication(&mut self, _id: &TransactionId) {}
    fn eof_sent_indication(&mut self, _id: &TransactionId) {}
    fn transaction_finished_indication(&mut self, params: &TransactionFinishedParams) {
        self.finished = Some(*params);
    }
    fn metadata_recvd_indication(&mut self, _params: &MetadataReceivedParams) {}
    fn file_segment_recvd_indication(&mut self, _params: &FileSegmentRecvdParams) {}
    fn report_indication(&mut self, _id: &TransactionId) {}
    fn suspended_indication(&mut self, _id: &TransactionId, _code: ConditionCode) {}
    fn resumed_indication(&mut self, _id: &TransactionId, _progress: u64) {}
    fn fault_indication(&mut self, _id: &TransactionId, _code: ConditionCode, _progress: u64) {}
    fn abandoned_indication(&mut self, _id: &TransactionId, _code: ConditionCode, _p: u64) {}
    fn eof_recvd_indication(&mut self, _id: &TransactionId) {}
}

type Source = SourceHandler<
    PduQueue,
    FaultNote,
    NativeFilestore,
    RemoteEntityConfig,
    StdTimerCreator,
    StdCountdown,
    AtomicU32,
>;

struct Active {
    transfer: Transfer,
    sequence: u64,
    /// File bytes sent so far: file data below it is a retransmission.
    high_water: u64,
    /// File bytes sent once in this transaction: payload if it is delivered, resent data if not
    /// (the next transaction sends them again).
    first_sends: u64,
    /// Contact time since the ground was last heard in this transaction.
    silent: Duration,
    /// The ground's answer, from the Finished PDU itself: cfdp-rs 0.3 reports "no error,
    /// complete" for a transaction that ends without one (its default for unacknowledged
    /// transfers), and did so here for refused files too, so its indication decides nothing.
    answer: Option<(ConditionCode, DeliveryCode)>,
}

/// The board's side: sends one file at a time and reports how each ended.
pub struct Outbox {
    handler: Source,
    pdus: PduQueue,
    faults: Rc<RefCell<Option<String>>>,
    user: SourceUser,
    key: Option<MacKey>,
    config: DeliveryConfig,
    counter_path: PathBuf,
    next_sequence: u32,
    active: Option<Active>,
    sent_since_heard: bool,
    pub account: Account,
}

impl Outbox {
    /// The outbox whose transaction counter lives in `state_dir/cfdp-sequence`.
    pub fn open(
        state_dir: &Path,
        key: Option<MacKey>,
        config: DeliveryConfig,
    ) -> Result<Self, DeliveryError> {
        std::fs::create_dir_all(state_dir).map_err(io_error(state_dir))?;
        let counter_path = state_dir.join("cfdp-sequence");
        let next_sequence = match std::fs::read_to_string(&counter_path) {
            Ok(text) => text.trim().parse().map_err(|_| DeliveryError::Corrupt {
                path: counter_path.clone(),
                reason: format!("{text:?} is not a transaction sequence number"),
            })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
            Err(error) => return Err(io_error(&counter_path)(error)),
        };
        let pdus = PduQueue::default();
        let faults = Rc::new(RefCell::new(None));
        let handler = Self::fresh_source(&pdus, &faults, &config, next_sequence);
        Ok(Self {
            handler,
            pdus,
            faults,
            user: SourceUser::default(),
            key,
            config,
            counter_path,
            next_sequence,
            active: None,
            sent_since_heard: false,
            account: Account::default(),
        })
    }

    /// A new cfdp-rs handler for each transfer: its `reset` keeps state of the last one (see
    /// [`Inbox`]).
    fn fresh_source(
        pdus: &PduQueue,
        faults: &Rc<RefCell<Option<String>>>,
        config: &DeliveryConfig,
        sequence: u32,
    ) -> Source {
        SourceHandler::new(
            LocalEntityConfig::new(
                UnsignedByteFieldU16::new(BOARD_ENTITY).into(),
                IndicationConfig::default(),
                FaultNote(Rc::clone(faults)),
            ),
            pdus.clone(),
            NativeFilestore::default(),
            remote_config(GROUND_ENTITY, config),
            StdTimerCreator::new(config.inactivity),
            AtomicU32::new(sequence),
        )
    }

    /// The transfer in progress.
    pub fn active(&self) -> Option<&Transfer> {
        self.active.as_ref().map(|a| &a.transfer)
    }

    /// Starts sending `transfer`; the caller waits for its [`Outcome`] before the next.
    pub fn start(&mut self, transfer: Transfer) -> Result<(), DeliveryError> {
        if self.active.is_some() {
            return Err(DeliveryError::Protocol(
                "a transfer is already in progress".into(),
            ));
        }
        let source = transfer
            .path
            .to_str()
            .ok_or_else(|| DeliveryError::Corrupt {
                path: transfer.path.clone(),
                reason: "not a UTF-8 path".into(),
            })?;
        // The number is made durable before it is used: a restart never sends a second
        // transaction under it.
        let sequence = self.next_sequence;
        let partial = self.counter_path.with_extension("partial");
        std::fs::write(&partial, format!("{}\n", sequence.wrapping_add(1)))
            .and_then(|()| std::fs::File::open(&partial)?.sync_all())
            .and_then(|()| std::fs::rename(&partial, &self.counter_path))
            .map_err(io_error(&self.counter_path))?;
        self.next_sequence = sequence.wrapping_add(1);
        self.handler = Self::fresh_source(&self.pdus, &self.faults, &self.config, sequence);
        self.pdus.take();
        self.user = SourceUser::default();
        let request = PutRequestOwned::new_regular_request(
            UnsignedByteFieldU16::new(GROUND_ENTITY).into(),
            source,
            &transfer.name,
            Some(TransmissionMode::Acknowledged),
            Some(true),
        )
        .map_err(|e| DeliveryError::Protocol(format!("{}: {e:?}", transfer.name)))?;
        self.handler
            .put_request(&request)
            .map_err(|e| DeliveryError::Protocol(format!("{}: {e}", transfer.name)))?;
        self.account.transactions_started += 1;
        self.active = Some(Active {
            transfer,
            sequence: u64::from(sequence),
            high_water: 0,
            first_sends: 0,
            silent: Duration::ZERO,
            answer: None,
        });
        Ok(())
    }

    /// Feeds the frames received since the last call, lets the protocol run for `contact` of
    /// contact time, and returns the frames to send and, when the transfer ended, how.
    pub fn step(
        &mut self,
        received: &[Vec<u8>],
        contact: Duration,
    ) -> (Vec<Vec<u8>>, Option<Outcome>) {
        let mut heard = false;
        for frame in received {
            self.account.bytes_received += wire_len(frame.len());
            self.account.frames_received += 1;
            let Ok(pdu) = open_pdu_frame(frame, self.key.as_ref()) else {
                self.account.frames_rejected += 1;
                continue;
            };
            let Some(active) = &self.active else { continue };
            if transaction_of(pdu) != Some(active.sequence) {
                continue;
            }
            let Ok(info) = PduRawWithInfo::new(pdu) else {
                self.account.frames_rejected += 1;
                continue;
            };
            heard = true;
            if self.sent_since_heard {
                self.account.round_trips += 1;
                self.sent_since_heard = false;
            }
            if let (Ok(finished), Some(active)) =
                (FinishedPduReader::new(pdu), self.active.as_mut())
            {
                // A refusal, once heard, stands: a "complete" after it for the same transaction
                // (a ground library contradicting itself) must not make the board forget data.
                let refused = active.answer.is_some_and(|(condition, delivery)| {
                    condition != ConditionCode::NoError || delivery != DeliveryCode::Complete
                });
                if !refused {
                    active.answer = Some((finished.condition_code(), finished.delivery_code()));
                }
            }
            if self
                .handler
                .state_machine(&mut self.user, Some(&info))
                .is_err()
            {
                // A PDU the library refuses (a CRC that fails, a NAK past the end) is dropped
                // like a corrupted frame.
                self.account.frames_rejected += 1;
            }
        }
        if self.active.is_some() {
            // File data leaves one PDU per call (the library's flow control); run until it rests.
            for _ in 0..10_000 {
                match self.handler.state_machine_no_packet(&mut self.user) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
        let outgoing = self.pdus.take();
        let frames = self.account_sent(outgoing);
        let outcome = self.outcome(heard, contact);
        (frames, outcome)
    }

    fn account_sent(&mut self, pdus: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let mac = if self.key.is_some() {
            orbhash_wire::packet::MAC_LEN
        } else {
            0
        };
        for pdu in &pdus {
            let wire = wire_len(pdu.len() + mac);
            self.account.frames_sent += 1;
            self.sent_since_heard = true;
            let is_file_data = PduHeader::from_bytes(pdu)
                .is_ok_and(|(header, _)| header.pdu_type() == PduType::FileData);
            let data = is_file_data
                .then(|| FileDataPdu::from_bytes(pdu).ok())
                .flatten()
                .map(|fd| (fd.offset(), fd.file_data().len() as u64));
            match (data, self.active.as_mut()) {
                (Some((offset, len)), Some(active)) if offset + len > active.high_water => {
                    let fresh = offset + len - active.high_water.max(offset);
                    let retransmitted = len - fresh;
                    active.high_water = offset + len;
                    active.first_sends += fresh;
                    self.account.retransmitted_bytes += retransmitted;
                    self.account.overhead_bytes += wire - len;
                }
                (Some(_), _) => self.account.retransmitted_bytes += wire,
                (None, _) => self.account.overhead_bytes += wire,
            }
        }
        seal(pdus, self.key.as_ref())
    }

    fn outcome(&mut self, heard: bool, contact: Duration) -> Option<Outcome> {
        let active = self.active.as_mut()?;
        // The transfer ends when the ground has answered and the library has closed it (it
        // acknowledges the Finished PDU first), decided by the answer alone.
        let closed = self.user.finished.take().is_some() || self.handler.state() == State::Idle;
        if let (true, Some((condition, delivery))) = (closed, active.answer) {
            let done = self.active.take()?;
            let transfer = done.transfer;
            let complete =
                condition == ConditionCode::NoError && delivery == DeliveryCode::Complete;
            return Some(if complete {
                self.account.transactions_completed += 1;
                match transfer.payload {
                    Payload::Records => self.account.record_bytes += done.first_sends,
                    Payload::Reports => self.account.report_bytes += done.first_sends,
                    Payload::Tile | Payload::TileAnswer => {
                        self.account.tile_bytes += done.first_sends
                    }
                }
                Outcome::Delivered(transfer)
            } else {
                self.account.transactions_refused += 1;
                self.account.retransmitted_bytes += done.first_sends;
                Outcome::Refused(transfer, format!("{condition:?}, {delivery:?}"))
            });
        }
        if heard {
            active.silent = Duration::ZERO;
        } else {
            active.silent += contact;
        }
        let stalled = active.silent >= self.config.inactivity;
        let idle = self.handler.state() == State::Idle;
        if stalled || idle {
            let why = if stalled {
                format!("no answer for {:?} of contact", self.config.inactivity)
            } else {
                self.faults
                    .borrow_mut()
                    .take()
                    .unwrap_or_else(|| "ended without a Finished PDU".into())
            };
            self.account.transactions_restarted += 1;
            let done = self.active.take()?;
            self.account.retransmitted_bytes += done.first_sends;
            return Some(Outcome::Restarted(done.transfer, why));
        }
        None
    }
}

/// Where the ground puts what the board sends.
/// Where the ground puts what the board sends.
pub trait Consignee {
    /// A transfer has begun (its metadata arrived): `size` bytes under `name`.
    fn announced(&mut self, name: &str, size: u64);
    /// The next bytes of the file, in order, as they arrive (before the file is whole): what
    /// can be used early (records) need not wait for the rest.
    fn arriving(&mut self, _name: &str, _bytes: &[u8]) {}
    /// The whole file, its checksum verified, is at `path`: make it durable and answer `Ok` only
    /// once it is. An `Err` makes the ground answer "incomplete" and the board send it again.
    fn deliver(&mut self, name: &str, path: &Path) -> Result<(), String>;
    /// The transfer of `name` ended without the file (refused, or given up): nothing more
    /// arrives under this name; the board sends its content again under another.
    fn abandoned(&mut self, _name: &str) {}
}

/// The ground's filestore: files land in one directory, under names [`Payload::of_name`]
/// accepts; any other name is refused before a byte is written.
struct InboxStore {
    dir: PathBuf,
    native: NativeFilestore,
}

impl InboxStore {
    fn resolve(&self, name: &str) -> Result<String, FilestoreError> {
        if Payload::of_name(name).is_none() {
            return Err(FilestoreError::Permission);
        }
        self.dir
            .join(name)
            .to_str()
            .map(str::to_owned)
            .ok_or(FilestoreError::Utf8Error)
    }
}

impl VirtualFilestore for InboxStore {
    fn create_file(&self, name: &str) -> Result<(), FilestoreError> {
        std::fs::File::create(self.resolve(name)?)?;
        Ok(())
    }
    fn remove_file(&self, name: &str) -> Result<(), FilestoreError> {
        self.native.remove_file(&self.resolve(name)?)
    }
    fn truncate_file(&self, name: &str) -> Result<(), FilestoreError> {
        self.native.truncate_file(&self.resolve(name)?)
    }
    fn remove_dir(&self, _dir: &str, _all: bool) -> Result<(), FilestoreError> {
        Err(FilestoreError::Permission)
    }
    fn create_dir(&self, _dir: &str) -> Result<(), FilestoreError> {
        Err(FilestoreError::Permission)
    }
    fn read_data(
        &self,
        name: &str,
        offset: u64,
        len: u64,
        buf: &mut [u8],
    ) -> Result<(), FilestoreError> {
        self.native
            .read_data(&self.resolve(name)?, offset, len, buf)
    }
    fn write_data(&self, name: &str, offset: u64, buf: &[u8]) -> Result<(), FilestoreError> {
        self.native.write_data(&self.resolve(name)?, offset, buf)
    }
    fn filename_from_full_path(path: &str) -> Option<&str> {
        NativeFilestore::filename_from_full_path(path)
    }
    fn is_file(&self, name: &str) -> Result<bool, FilestoreError> {
        // A refused name counts as a file, so the library does not take it for a directory to
        // put the source's file name under; creating it is then refused.
        match self.resolve(name) {
            Ok(path) => self.native.is_file(&path),
            Err(_) => Ok(true),
        }
    }
    fn is_dir(&self, _name: &str) -> Result<bool, FilestoreError> {
        Ok(false)
    }
    fn exists(&self, name: &str) -> Result<bool, FilestoreError> {
        match self.resolve(name) {
            Ok(path) => self.native.exists(&path),
            Err(_) => Ok(false),
        }
    }
    fn file_name<'a>(&self, full_path: &'a str) -> Result<Option<&'a str>, FilestoreError> {
        self.native.file_name(full_path)
    }
    fn file_size(&self, name: &str) -> Result<u64, FilestoreError> {
        self.native.file_size(&self.resolve(name)?)
    }
    fn calculate_checksum(
        &self,
        name: &str,
        checksum_type: ChecksumType,
        size: u64,
        buf: &mut [u8],
    ) -> Result<u32, FilestoreError> {
        self.native
            .calculate_checksum(&self.resolve(name)?, checksum_type, size, buf)
    }
}

/// What the ground knows of the transaction in progress.
#[derive(Debug, Default, Clone)]
struct Receiving {
    name: Option<String>,
    /// From the EOF PDU: the file's CRC-32C and size.
    checksum: Option<(u32, u64)>,
    /// The commit's answer, once the library declared the file complete.
    verdict: Option<Result<(), String>>,
    /// The file is committed: a repeated completion (a late duplicate EOF) is not committed again.
    committed: bool,
    /// The consignee was told the transfer began.
    announced: bool,
    /// Bytes from the start of the file handed to [`Consignee::arriving`].
    prefix: u64,
    /// File data received past a gap, by offset, until the gap is filled.
    ahead: BTreeMap<u64, Vec<u8>>,
}

struct DestUser<C: Consignee> {
    consignee: Rc<RefCell<C>>,
    dir: PathBuf,
    receiving: Receiving,
}

impl<C: Consignee> DestUser<C> {
    /// File data the library took (wrote): hands on whatever now follows the prefix unbroken.
    fn segment(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        if end > self.receiving.prefix {
            self.receiving.ahead.insert(offset, data.to_vec());
        }
        self.hand_on();
    }

    fn hand_on(&mut self) {
        let Some(name) = self.receiving.name.clone() else {
            // Data before its metadata: held until the file has a name.
            return;
        };
        let receiving = &mut self.receiving;
        while let Some(entry) = receiving.ahead.first_entry() {
            let (offset, len) = (*entry.key(), entry.get().len() as u64);
            if offset > receiving.prefix {
                break;
            }
            let data = entry.remove();
            let skip = (receiving.prefix - offset) as usize;
            if let Some(fresh) = data.get(skip..).filter(|fresh| !fresh.is_empty()) {
                self.consignee.borrow_mut().arriving(&name, fresh);
                receiving.prefix = offset + len;
            }
        }
    }

    /// Checks the file against its EOF checksum (cfdp-rs 0.3 skips the check in acknowledged
    /// mode when nothing was lost) and hands it to the consignee.
    fn commit(&mut self) -> Result<(), String> {
        let name = self.receiving.name.clone().ok_or("no metadata received")?;
        let (checksum, size) = self.receiving.checksum.ok_or("no EOF received")?;
        let path = self.dir.join(&name);
        // Never more than the EOF's size and one byte: that one is enough to tell it is too long.
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .and_then(|file| file.take(size.saturating_add(1)).read_to_end(&mut bytes))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if bytes.len() as u64 != size {
            let found = if bytes.len() as u64 > size {
                "more than that".to_string()
            } else {
                format!("{} bytes", bytes.len())
            };
            return Err(format!("{found}, EOF says {size}"));
        }
        if orbhash_wire::CRC32C.checksum(&bytes) != checksum {
            return Err("checksum mismatch".into());
        }
        self.consignee.borrow_mut().deliver(&name, &path)
    }
}

impl<C: Consignee> CfdpUser for DestUser<C> {
    fn transaction_indication(&mut self, _id: &TransactionId) {}
    fn eof_sent_indication(&mut self, _id: &TransactionId) {}
    fn transaction_finished_indication(&mut self, params: &TransactionFinishedParams) {
        // Called just before the library queues its Finished PDU: the commit happens here, and
        // a failed one turns that PDU into an "incomplete" one (see `Inbox::step`).
        if params.delivery_code == DeliveryCode::Complete && !self.receiving.committed {
            let verdict = self.commit();
            self.receiving.committed = verdict.is_ok();
            self.receiving.verdict = Some(verdict);
        }
    }
    fn metadata_recvd_indication(&mut self, params: &MetadataReceivedParams) {
        if self.receiving.announced {
            return;
        }
        self.receiving.name = Some(params.dest_file_name.to_string());
        self.receiving.announced = true;
        self.consignee
            .borrow_mut()
            .announced(params.dest_file_name, params.file_size);
    }
    fn file_segment_recvd_indication(&mut self, _params: &FileSegmentRecvdParams) {}
    fn report_indication(&mut self, _id: &TransactionId) {}
    fn suspended_indication(&mut self, _id: &TransactionId, _code: ConditionCode) {}
    fn resumed_indication(&mut self, _id: &TransactionId, _progress: u64) {}
    fn fault_indication(&mut self, _id: &TransactionId, _code: ConditionCode, _progress: u64) {}
    fn abandoned_indication(&mut self, _id: &TransactionId, _code: ConditionCode, _p: u64) {}
    fn eof_recvd_indication(&mut self, _id: &TransactionId) {}
}

type Destination = DestinationHandler<
    PduQueue,
    FaultNote,
    InboxStore,
    RemoteEntityConfig,
    StdTimerCreator,
    StdCountdown,
    LostSegmentsList,
>;

/// The ground's side: receives the board's files, one transaction at a time.
///
/// Each transaction gets a new cfdp-rs handler: `DestinationHandler::reset` in cfdp-rs 0.3 keeps
/// the previous transaction's progress and lost segments, and a second transaction in the same
/// handler asks for bytes past its own end.
pub struct Inbox<C: Consignee> {
    handler: Destination,
    pdus: PduQueue,
    user: DestUser<C>,
    key: Option<MacKey>,
    config: DeliveryConfig,
    /// The transaction the handler serves; older ones' PDUs are stale.
    current: Option<u64>,
    silent: Duration,
    sent_since_heard: bool,
    pub account: Account,
    refusals: Vec<String>,
}

impl<C: Consignee> Inbox<C> {
    /// Files land in `dir` (created) and go to `consignee` when complete.
    pub fn open(
        dir: &Path,
        consignee: Rc<RefCell<C>>,
        key: Option<MacKey>,
        config: DeliveryConfig,
    ) -> Result<Self, DeliveryError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let pdus = PduQueue::default();
        Ok(Self {
            handler: Self::fresh_handler(dir, &pdus, &config),
            pdus,
            user: DestUser {
                consignee,
                dir: dir.to_path_buf(),
                receiving: Receiving::default(),
            },
            key,
            config,
            current: None,
            silent: Duration::ZERO,
            sent_since_heard: false,
            account: Account::default(),
            refusals: Vec::new(),
        })
    }

    fn fresh_handler(dir: &Path, pdus: &PduQueue, config: &DeliveryConfig) -> Destination {
        DestinationHandler::new(
            LocalEntityConfig::new(
                UnsignedByteFieldU16::new(GROUND_ENTITY).into(),
                IndicationConfig::default(),
                FaultNote::default(),
            ),
            pdus.clone(),
            InboxStore {
                dir: dir.to_path_buf(),
                native: NativeFilestore::default(),
            },
            remote_config(BOARD_ENTITY, config),
            StdTimerCreator::new(config.inactivity),
            LostSegmentsList::default(),
        )
    }

    fn restart_handler(&mut self) {
        self.handler = Self::fresh_handler(&self.user.dir, &self.pdus, &self.config);
        let ended = std::mem::take(&mut self.user.receiving);
        if let (Some(name), false) = (ended.name, ended.committed) {
            if ended.prefix > 0 {
                self.user.consignee.borrow_mut().abandoned(&name);
            }
        }
    }

    /// Feeds received CFDP frames, runs the protocol for `contact` of contact time, and returns
    /// the frames to send back.
    pub fn step(&mut self, received: &[Vec<u8>], contact: Duration) -> Vec<Vec<u8>> {
        let mut heard = false;
        for frame in received {
            self.account.bytes_received += wire_len(frame.len());
            self.account.frames_received += 1;
            let Ok(pdu) = open_pdu_frame(frame, self.key.as_ref()) else {
                self.account.frames_rejected += 1;
                continue;
            };
            let (Some(sequence), Ok(info)) = (transaction_of(pdu), PduRawWithInfo::new(pdu)) else {
                self.account.frames_rejected += 1;
                continue;
            };
            match self.current {
                Some(current) if sequence < current => continue,
                Some(current) if sequence == current => {}
                // A newer transaction: the board has moved on (it sends one at a time).
                _ => {
                    self.restart_handler();
                    self.current = Some(sequence);
                }
            }
            // The file's name, size and checksum are taken from the PDUs as they pass: cfdp-rs
            // does not announce metadata that arrives after file data.
            match info.file_directive_type() {
                Some(FileDirectiveType::EofPdu) => {
                    if let Ok(eof) = EofPdu::from_bytes(pdu) {
                        self.user.receiving.checksum = Some((eof.file_checksum(), eof.file_size()));
                    }
                }
                Some(FileDirectiveType::MetadataPdu) if self.user.receiving.name.is_none() => {
                    let metadata = MetadataPduReader::new(pdu).ok().and_then(|metadata| {
                        let name = metadata.dest_file_name().value_as_str()?.ok()?.to_owned();
                        Some((name, metadata.metadata_params().file_size))
                    });
                    if let Some((name, size)) = metadata {
                        self.user.consignee.borrow_mut().announced(&name, size);
                        self.user.receiving.announced = true;
                        self.user.receiving.name = Some(name);
                    }
                }
                _ => {}
            }
            heard = true;
            if self.sent_since_heard {
                self.account.round_trips += 1;
                self.sent_since_heard = false;
            }
            match self.handler.state_machine(&mut self.user, Some(&info)) {
                Ok(_) if info.pdu_type() == PduType::FileData => {
                    if let Ok(data) = FileDataPdu::from_bytes(pdu) {
                        self.user.segment(data.offset(), data.file_data());
                    }
                }
                Ok(_) => {}
                // A PDU the library refuses (bad CRC, wrong step, a write that failed) is
                // dropped like a damaged one.
                Err(_) => self.account.frames_rejected += 1,
            }
        }
        self.user.hand_on();
        if self.current.is_some() {
            let _ = self.handler.state_machine_no_packet(&mut self.user);
        }
        if heard {
            self.silent = Duration::ZERO;
        } else if self.handler.state() != State::Idle {
            self.silent += contact;
            if self.silent >= self.config.inactivity {
                self.restart_handler();
                self.silent = Duration::ZERO;
            }
        }
        let mut pdus = self.pdus.take();
        let mut refusal = match self.user.receiving.verdict.take() {
            Some(Ok(())) => {
                self.account.transactions_completed += 1;
                None
            }
            Some(Err(why)) => Some(why),
            None => None,
        };
        // Every Finished PDU is held against what was committed, whatever the library meant by
        // it: cfdp-rs 0.3 cancels a transaction whose file it cannot write ("filestore
        // rejection"), then, when the EOF arrives, overwrites that with "no error, complete" and
        // repeats its Finished PDU so. Only a committed file is ever answered "complete".
        for pdu in &mut pdus {
            let Ok(finished) = FinishedPduReader::new(pdu) else {
                continue;
            };
            let complete = finished.condition_code() == ConditionCode::NoError
                && finished.delivery_code() == DeliveryCode::Complete;
            if complete && self.user.receiving.committed {
                continue;
            }
            if complete {
                refusal.get_or_insert_with(|| {
                    "the protocol finished it, but it was never committed".into()
                });
                *pdu = refused_finished(&finished);
            } else {
                refusal.get_or_insert_with(|| format!("{:?}", finished.condition_code()));
            }
        }
        if let Some(why) = refusal {
            self.account.transactions_refused += 1;
            let name = self.user.receiving.name.clone().unwrap_or_default();
            self.refusals.push(format!("{name}: {why}"));
            // The library would repeat its Finished PDU (and may turn it into "complete"): the
            // answer goes once, the transaction with it; the board sends the file again.
            self.restart_handler();
            self.current = self.current.map(|c| c + 1);
        }
        let mac = if self.key.is_some() {
            orbhash_wire::packet::MAC_LEN
        } else {
            0
        };
        for pdu in &pdus {
            self.account.frames_sent += 1;
            self.account.overhead_bytes += wire_len(pdu.len() + mac);
            self.sent_since_heard = true;
        }
        seal(pdus, self.key.as_ref())
    }

    /// Why files were refused since the last call (for the log).
    pub fn take_refusals(&mut self) -> Vec<String> {
        std::mem::take(&mut self.refusals)
    }
}

/// The refusal that replaces a "complete" Finished PDU for a file that was not committed:
/// "incomplete, filestore rejection", located here. One that cannot be written is empty (not
/// sent) rather than left saying "complete".
fn refused_finished(finished: &FinishedPduReader<'_>) -> Vec<u8> {
    FinishedPduCreator::new_with_error(
        *finished.pdu_header(),
        ConditionCode::FilestoreRejection,
        DeliveryCode::Incomplete,
        FileStatus::Retained,
        EntityIdTlv::new(UnsignedByteFieldU16::new(GROUND_ENTITY).into()),
    )
    .to_vec()
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_file_names_round_trip_and_others_are_refused() {
        let tile = TileRef {
            scene: 0x1234_abcd,
            tile: 77,
        };
        assert_eq!(
            tile_of_file_name(&tile_file_name(tile, false)),
            Some((tile, false))
        );
        assert_eq!(
            tile_of_file_name(&tile_file_name(tile, true)),
            Some((tile, true))
        );
        for bad in [
            "tile-1234abcd-0000004d.png",
            "tile-12-4d.tif",
            "records-1.bin",
            "tile-zzzzzzzz-0000004d.tif",
        ] {
            assert_eq!(tile_of_file_name(bad), None, "{bad}");
        }
    }
}

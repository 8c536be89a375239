//! The ground side: bytes in any chunking, events out, never a panic.
//!
//! [`Decoder`] cuts the byte stream at 0x00 delimiters, undoes COBS, checks each packet
//! ([`decode_packet`]) and then its place in the sequence. Every frame gives exactly one [`Event`]:
//! a packet, or a [`Rejection`] naming the layer that refused it. The decoder's state only changes
//! for packets that passed every check, so corruption can neither inject records nor disturb loss
//! accounting.
//!
//! # Sequence accounting and replay
//!
//! Per APID (at most [`MAX_APIDS`]) the decoder remembers the epoch, the next expected sequence
//! count and which of the last [`REPLAY_WINDOW`] counts arrived. A packet `d` counts ahead of the
//! expected one (modulo 2^14, `d < 2^13`) reports a gap of `d` missing packets; a packet behind it
//! is a duplicate if already seen (rejected, so records are never yielded twice) or a late,
//! reordered packet otherwise (yielded; the missing count drops by one).
//!
//! The epoch is a per-pass counter the flight software raises at every pass and every reboot.
//! A higher epoch restarts tracking for its APID (sequence counts may restart after a reboot).
//!
//! # Per-pass accounting
//!
//! The same counts are kept per pass, an (APID, epoch) pair: [`Decoder::pass`] gives the current
//! pass of an APID as a [`PassStats`]. This is the one place loss is counted; the ground stores
//! these figures rather than recounting from what it archived, so a session's totals are exactly
//! the sums over its passes.
//!
//! With a key ([`Decoder::authenticated`]) every packet must carry a valid MAC, and the decoder
//! also refuses what a replayed, genuine packet would look like: an epoch below the highest
//! accepted for its APID, a count seen already in the window, or a count too far behind to check.
//! Without a key a lower epoch or a far-behind count is taken as a flight-side reset and tracking
//! restarts ([`Continuity::EpochChange`], [`Continuity::Resync`]).

use crate::packet::{decode_packet, MacKey, PacketError, PacketView, SEQUENCE_MODULUS};
use crate::writer::MAX_FRAME_LEN;

/// APIDs tracked at once. A packet of one more APID is rejected
/// ([`SequenceError::TooManyApids`]); an orbhash downlink uses one or a few.
pub const MAX_APIDS: usize = 16;
/// How many sequence counts back duplicates and late packets are told apart.
pub const REPLAY_WINDOW: u16 = 256;
const WINDOW_WORDS: usize = (REPLAY_WINDOW as usize) / 64;
const HALF_SEQUENCE: u16 = SEQUENCE_MODULUS / 2;

/// How an accepted packet relates to the one before it on its APID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continuity {
    /// First packet seen on this APID.
    First,
    /// Exactly the expected sequence count.
    InOrder,
    /// `missing` packets were skipped before this one.
    Gap { missing: u16 },
    /// Arrived after a later packet; fills an earlier gap.
    Late,
    /// First packet of a new epoch (or, without a key, of an older one): tracking restarted.
    EpochChange,
    /// Without a key only: far behind the expected count, taken as a flight-side counter reset.
    Resync,
}

/// Framing layer failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// No delimiter within [`MAX_FRAME_LEN`] bytes; bytes are dropped up to the next 0x00.
    Oversized,
    /// The frame is not valid COBS.
    Cobs,
    /// The stream ended inside a frame.
    Unterminated,
}

/// Sequence layer refusals, for packets that were otherwise valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceError {
    /// This sequence count was already accepted in this epoch.
    Duplicate { apid: u16, sequence_count: u16 },
    /// With a key: epoch below the highest accepted on this APID (a replay).
    StaleEpoch { apid: u16, epoch: u32, current: u32 },
    /// With a key: too far behind the expected count to tell a late packet from a replay.
    OutsideWindow { apid: u16, sequence_count: u16 },
    /// More than [`MAX_APIDS`] APIDs.
    TooManyApids { apid: u16 },
}

/// Why a frame produced no packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Frame(FrameError),
    Packet(PacketError),
    Sequence(SequenceError),
}

impl core::fmt::Display for Rejection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Rejection::Frame(FrameError::Oversized) => {
                write!(f, "framing: no delimiter within {MAX_FRAME_LEN} bytes")
            }
            Rejection::Frame(FrameError::Cobs) => f.write_str("framing: invalid COBS"),
            Rejection::Frame(FrameError::Unterminated) => {
                f.write_str("framing: stream ended inside a frame")
            }
            Rejection::Packet(error) => write!(f, "{error}"),
            Rejection::Sequence(SequenceError::Duplicate {
                apid,
                sequence_count,
            }) => {
                write!(f, "sequence: duplicate APID {apid} count {sequence_count}")
            }
            Rejection::Sequence(SequenceError::StaleEpoch {
                apid,
                epoch,
                current,
            }) => {
                write!(
                    f,
                    "sequence: APID {apid} epoch {epoch} is older than {current} (replay)"
                )
            }
            Rejection::Sequence(SequenceError::OutsideWindow {
                apid,
                sequence_count,
            }) => {
                write!(
                    f,
                    "sequence: APID {apid} count {sequence_count} outside the replay window"
                )
            }
            Rejection::Sequence(SequenceError::TooManyApids { apid }) => {
                write!(
                    f,
                    "sequence: APID {apid} is one more than the {MAX_APIDS} tracked"
                )
            }
        }
    }
}

impl core::error::Error for Rejection {}

/// What one frame turned into.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    Packet {
        packet: PacketView<'a>,
        continuity: Continuity,
    },
    Rejected(Rejection),
}

/// One pass's accounting: the packets of one (APID, epoch) since the decoder started tracking it.
///
/// Without a key an APID may go back to an epoch it left (a flight-side reset, or two recordings
/// spliced together); tracking then starts afresh under a new [`run`](Self::run), so the figures
/// of one run never mix with another's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassStats {
    pub apid: u16,
    pub epoch: u32,
    /// Which tracking run of this decoder this is, counted from 0 across every APID.
    pub run: u32,
    /// Packets accepted (in order, after a gap, late, or after a resync).
    pub packets: u64,
    pub records: u64,
    /// Packets known lost: sum of the gaps, less the late packets that filled them.
    pub missing: u64,
    pub late: u64,
    /// Packets refused as already accepted in this run.
    pub duplicates: u64,
    /// Gaps seen (each is one [`Continuity::Gap`]).
    pub gaps: u64,
    /// Without a key: times tracking restarted within the pass ([`Continuity::Resync`]).
    pub resyncs: u64,
}

/// Running totals since the decoder was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Bytes fed in.
    pub bytes: u64,
    /// Non-empty frames (delimiter-terminated, plus oversized runs).
    pub frames: u64,
    pub packets: u64,
    pub records: u64,
    /// Bytes of frames that produced no packet.
    pub discarded_bytes: u64,
    /// Oversized, invalid COBS or unterminated frames.
    pub framing_errors: u64,
    /// Packets shorter or longer than their length field, or above the size limit.
    pub length_errors: u64,
    pub crc_errors: u64,
    /// MAC present but wrong.
    pub mac_errors: u64,
    /// No MAC where the decoder requires one.
    pub missing_macs: u64,
    pub unsupported_versions: u64,
    pub unknown_code_lengths: u64,
    /// Passed the CRC yet broke the layout: an encoder bug or a foreign packet, not line noise.
    pub malformed: u64,
    pub duplicates: u64,
    /// Epoch or window refusals (replays when authenticating).
    pub replays: u64,
    pub too_many_apids: u64,
    /// Packets known lost: sum of gaps, less the late packets that filled them.
    pub missing: u64,
    pub late: u64,
    pub epoch_changes: u64,
    pub resyncs: u64,
}

impl DecoderStats {
    /// Frames refused for damage on the link: framing, length and CRC failures.
    pub fn corrupted(&self) -> u64 {
        self.framing_errors + self.length_errors + self.crc_errors
    }

    /// Frames refused as forged or replayed.
    pub fn authentication_failures(&self) -> u64 {
        self.mac_errors + self.missing_macs + self.replays
    }

    fn count(&mut self, rejection: &Rejection) {
        let counter = match rejection {
            Rejection::Frame(_) => &mut self.framing_errors,
            Rejection::Packet(error) => match error {
                PacketError::Truncated { .. }
                | PacketError::LengthMismatch { .. }
                | PacketError::TooLong(_) => &mut self.length_errors,
                PacketError::BadCrc => &mut self.crc_errors,
                PacketError::UnsupportedVersion(_) => &mut self.unsupported_versions,
                PacketError::MissingMac => &mut self.missing_macs,
                PacketError::BadMac => &mut self.mac_errors,
                PacketError::UnknownCodeLength(_) => &mut self.unknown_code_lengths,
                PacketError::Malformed(_) => &mut self.malformed,
            },
            Rejection::Sequence(error) => match error {
                SequenceError::Duplicate { .. } => &mut self.duplicates,
                SequenceError::StaleEpoch { .. } | SequenceError::OutsideWindow { .. } => {
                    &mut self.replays
                }
                SequenceError::TooManyApids { .. } => &mut self.too_many_apids,
            },
        };
        *counter = counter.saturating_add(1);
    }
}

/// One APID's sequence state.
#[derive(Debug, Clone)]
struct ApidTrack {
    epoch: u32,
    /// The sequence count expected next.
    next: u16,
    /// Bit `count % REPLAY_WINDOW` set: that count arrived (for counts within the window).
    seen: [u64; WINDOW_WORDS],
    /// How many counts before `next` have been tracked since tracking (re)started, at most
    /// REPLAY_WINDOW. A late packet inside this span filled a gap already counted as missing.
    span: u16,
    pass: PassStats,
}

impl ApidTrack {
    fn start(pass: PassStats, sequence_count: u16) -> Self {
        let mut track = Self {
            epoch: pass.epoch,
            next: sequence_count,
            seen: [0; WINDOW_WORDS],
            span: 0,
            pass,
        };
        track.advance_to(sequence_count, 0);
        track
    }

    fn slot(sequence_count: u16) -> (usize, u64) {
        let bit = usize::from(sequence_count % REPLAY_WINDOW);
        (bit / 64, 1u64 << (bit % 64))
    }

    fn was_seen(&self, sequence_count: u16) -> bool {
        let (word, mask) = Self::slot(sequence_count);
        self.seen.get(word).is_some_and(|bits| bits & mask != 0)
    }

    fn mark(&mut self, sequence_count: u16) {
        let (word, mask) = Self::slot(sequence_count);
        if let Some(bits) = self.seen.get_mut(word) {
            *bits |= mask;
        }
    }

    /// Accepts `sequence_count`, `ahead` counts past `next`; the counts skipped enter the window
    /// as not seen.
    fn advance_to(&mut self, sequence_count: u16, ahead: u16) {
        let entering = ahead.saturating_add(1).min(REPLAY_WINDOW);
        for offset in 0..entering {
            let count = (self.next.wrapping_add(offset)) % SEQUENCE_MODULUS;
            let (word, mask) = Self::slot(count);
            if let Some(bits) = self.seen.get_mut(word) {
                *bits &= !mask;
            }
        }
        self.mark(sequence_count);
        self.span = self
            .span
            .saturating_add(ahead.saturating_add(1))
            .min(REPLAY_WINDOW);
        self.next = (sequence_count.wrapping_add(1)) % SEQUENCE_MODULUS;
    }
}

/// Tracks sequence counts per APID.
#[derive(Debug, Clone, Default)]
struct SequenceTracker {
    tracks: heapless::LinearMap<u16, ApidTrack, MAX_APIDS>,
    /// Runs started so far: the next [`PassStats::run`].
    runs: u32,
}

impl SequenceTracker {
    fn new_pass(&mut self, apid: u16, epoch: u32) -> PassStats {
        let run = self.runs;
        self.runs = self.runs.wrapping_add(1);
        PassStats {
            apid,
            epoch,
            run,
            ..PassStats::default()
        }
    }

    fn pass(&self, apid: u16) -> Option<&PassStats> {
        self.tracks.get(&apid).map(|track| &track.pass)
    }

    /// Places a packet that passed every packet-level check in its APID's sequence, updating the
    /// pass and the decoder's totals alike.
    fn classify(
        &mut self,
        header: &crate::packet::PacketHeader,
        strict: bool,
        stats: &mut DecoderStats,
    ) -> Result<Continuity, SequenceError> {
        let outcome = self.place(
            header.apid,
            header.epoch,
            header.sequence_count,
            strict,
            stats,
        );
        if let Some(track) = self.tracks.get_mut(&header.apid) {
            let pass = &mut track.pass;
            match outcome {
                Ok(continuity) => {
                    pass.packets = pass.packets.saturating_add(1);
                    pass.records = pass.records.saturating_add(u64::from(header.record_count));
                    match continuity {
                        Continuity::Gap { missing } => {
                            pass.gaps = pass.gaps.saturating_add(1);
                            pass.missing = pass.missing.saturating_add(u64::from(missing));
                        }
                        Continuity::Resync => pass.resyncs = pass.resyncs.saturating_add(1),
                        Continuity::Late => pass.late = pass.late.saturating_add(1),
                        Continuity::First | Continuity::InOrder | Continuity::EpochChange => {}
                    }
                }
                Err(SequenceError::Duplicate { .. }) => {
                    pass.duplicates = pass.duplicates.saturating_add(1);
                }
                Err(_) => {}
            }
        }
        outcome
    }

    fn place(
        &mut self,
        apid: u16,
        epoch: u32,
        sequence_count: u16,
        strict: bool,
        stats: &mut DecoderStats,
    ) -> Result<Continuity, SequenceError> {
        let Some(current_epoch) = self.tracks.get(&apid).map(|track| track.epoch) else {
            if self.tracks.len() >= MAX_APIDS {
                return Err(SequenceError::TooManyApids { apid });
            }
            let pass = self.new_pass(apid, epoch);
            return match self
                .tracks
                .insert(apid, ApidTrack::start(pass, sequence_count))
            {
                Ok(_) => Ok(Continuity::First),
                Err(_) => Err(SequenceError::TooManyApids { apid }),
            };
        };
        if epoch != current_epoch {
            if epoch < current_epoch && strict {
                return Err(SequenceError::StaleEpoch {
                    apid,
                    epoch,
                    current: current_epoch,
                });
            }
            let pass = self.new_pass(apid, epoch);
            if let Some(track) = self.tracks.get_mut(&apid) {
                *track = ApidTrack::start(pass, sequence_count);
            }
            stats.epoch_changes = stats.epoch_changes.saturating_add(1);
            return Ok(Continuity::EpochChange);
        }
        let Some(track) = self.tracks.get_mut(&apid) else {
            return Err(SequenceError::TooManyApids { apid });
        };
        let ahead = sequence_count.wrapping_sub(track.next) % SEQUENCE_MODULUS;
        if ahead < HALF_SEQUENCE {
            track.advance_to(sequence_count, ahead);
            if ahead == 0 {
                return Ok(Continuity::InOrder);
            }
            stats.missing = stats.missing.saturating_add(u64::from(ahead));
            return Ok(Continuity::Gap { missing: ahead });
        }
        // 0 means the latest accepted count.
        let behind = track.next.wrapping_sub(1).wrapping_sub(sequence_count) % SEQUENCE_MODULUS;
        if behind < REPLAY_WINDOW {
            if track.was_seen(sequence_count) {
                return Err(SequenceError::Duplicate {
                    apid,
                    sequence_count,
                });
            }
            track.mark(sequence_count);
            if behind < track.span {
                stats.missing = stats.missing.saturating_sub(1);
                track.pass.missing = track.pass.missing.saturating_sub(1);
            }
            stats.late = stats.late.saturating_add(1);
            return Ok(Continuity::Late);
        }
        if strict {
            return Err(SequenceError::OutsideWindow {
                apid,
                sequence_count,
            });
        }
        // A resync stays in the same pass: its figures carry on.
        let pass = track.pass;
        *track = ApidTrack::start(pass, sequence_count);
        stats.resyncs = stats.resyncs.saturating_add(1);
        Ok(Continuity::Resync)
    }
}

/// What [`Decoder::scan`] stopped at.
enum Boundary {
    Frame,
    Overflow,
}

/// Streaming decoder: feed it bytes in chunks of any size.
///
/// ```
/// # use orbhash_wire::{Decoder, Event};
/// let mut decoder = Decoder::new();
/// let mut input: &[u8] = &[0x01, 0x00, 0xff, 0x00];
/// while let Some(event) = decoder.feed(&mut input) {
///     match event {
///         Event::Packet { packet, continuity } => { let _ = (packet.records(), continuity); }
///         Event::Rejected(why) => { let _ = why; }
///     }
/// }
/// ```
///
/// Holds one frame buffer ([`MAX_FRAME_LEN`] bytes) and the sequence table.
pub struct Decoder {
    key: Option<MacKey>,
    frame: heapless::Vec<u8, MAX_FRAME_LEN>,
    /// The frame buffer holds a finished frame whose event may still be borrowed.
    frame_done: bool,
    /// Dropping bytes until the next delimiter after an oversized frame.
    discarding: bool,
    tracker: SequenceTracker,
    stats: DecoderStats,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder that checks CRCs but not MACs (packets with a MAC are accepted unverified).
    pub fn new() -> Self {
        Self {
            key: None,
            frame: heapless::Vec::new(),
            frame_done: false,
            discarding: false,
            tracker: SequenceTracker::default(),
            stats: DecoderStats::default(),
        }
    }

    /// A decoder that requires a valid MAC under `key` on every packet and refuses replays.
    pub fn authenticated(key: MacKey) -> Self {
        Self {
            key: Some(key),
            ..Self::new()
        }
    }

    pub fn stats(&self) -> &DecoderStats {
        &self.stats
    }

    /// Consumes `input` up to the end of the next frame and returns its event, or consumes all of
    /// it and returns `None` when no frame ended. Call again with the rest until `None`.
    pub fn feed(&mut self, input: &mut &[u8]) -> Option<Event<'_>> {
        let boundary = self.scan(input)?;
        Some(self.complete(boundary))
    }

    /// The current pass of `apid`: what its latest epoch has brought so far.
    pub fn pass(&self, apid: u16) -> Option<&PassStats> {
        self.tracker.pass(apid)
    }

    /// The current pass of every APID seen.
    pub fn passes(&self) -> impl Iterator<Item = &PassStats> {
        self.tracker.tracks.values().map(|track| &track.pass)
    }

    /// Ends the stream. Bytes after the last delimiter are tried as a frame: a recording that
    /// stops right after a packet (the delimiter never written) still yields it when its CRC
    /// holds; anything else there is reported as [`FrameError::Unterminated`].
    pub fn finish(&mut self) -> Option<Event<'_>> {
        self.release_frame();
        self.discarding = false;
        if self.frame.is_empty() {
            return None;
        }
        self.stats.frames = self.stats.frames.saturating_add(1);
        let frame_len = self.frame.len();
        if let Ok(packet_len) = cobs::decode_in_place(&mut self.frame) {
            let intact = self
                .frame
                .get(..packet_len)
                .is_some_and(|packet| decode_packet(packet, self.key.as_ref()).is_ok());
            if intact {
                return Some(self.accept(frame_len, packet_len));
            }
        }
        Some(self.reject(Rejection::Frame(FrameError::Unterminated), frame_len))
    }

    fn release_frame(&mut self) {
        if self.frame_done {
            self.frame.clear();
            self.frame_done = false;
        }
    }

    /// Buffers bytes until a frame ends or overflows.
    fn scan(&mut self, input: &mut &[u8]) -> Option<Boundary> {
        self.release_frame();
        while !input.is_empty() {
            let delimiter = input.iter().position(|byte| *byte == 0);
            let (content, rest) = match delimiter {
                Some(at) => (
                    input.get(..at).unwrap_or(&[]),
                    input.get(at + 1..).unwrap_or(&[]),
                ),
                None => (*input, &[][..]),
            };
            let consumed = input.len() - rest.len();
            self.stats.bytes = self.stats.bytes.saturating_add(consumed as u64);
            *input = rest;
            if self.discarding {
                self.stats.discarded_bytes = self
                    .stats
                    .discarded_bytes
                    .saturating_add(content.len() as u64);
                self.discarding = delimiter.is_none();
                continue;
            }
            if self.frame.extend_from_slice(content).is_err() {
                self.stats.discarded_bytes = self
                    .stats
                    .discarded_bytes
                    .saturating_add((self.frame.len() + content.len()) as u64);
                self.frame.clear();
                self.discarding = delimiter.is_none();
                return Some(Boundary::Overflow);
            }
            // Back-to-back delimiters are idle fill, not empty frames.
            if delimiter.is_some() && !self.frame.is_empty() {
                return Some(Boundary::Frame);
            }
        }
        None
    }

    fn complete(&mut self, boundary: Boundary) -> Event<'_> {
        self.stats.frames = self.stats.frames.saturating_add(1);
        if let Boundary::Overflow = boundary {
            return self.reject(Rejection::Frame(FrameError::Oversized), 0);
        }
        let frame_len = self.frame.len();
        let Ok(packet_len) = cobs::decode_in_place(&mut self.frame) else {
            return self.reject(Rejection::Frame(FrameError::Cobs), frame_len);
        };
        self.accept(frame_len, packet_len)
    }

    /// Checks the packet the frame buffer holds after COBS decoding (its first `packet_len`
    /// bytes) and places it in its sequence.
    fn accept(&mut self, frame_len: usize, packet_len: usize) -> Event<'_> {
        self.frame_done = true;
        let packet = self.frame.get(..packet_len).unwrap_or(&[]);
        let view = match decode_packet(packet, self.key.as_ref()) {
            Ok(view) => view,
            Err(error) => {
                self.stats.discarded_bytes =
                    self.stats.discarded_bytes.saturating_add(frame_len as u64);
                let rejection = Rejection::Packet(error);
                self.stats.count(&rejection);
                return Event::Rejected(rejection);
            }
        };
        let header = &view.header;
        match self
            .tracker
            .classify(header, self.key.is_some(), &mut self.stats)
        {
            Ok(continuity) => {
                self.stats.packets = self.stats.packets.saturating_add(1);
                self.stats.records = self
                    .stats
                    .records
                    .saturating_add(u64::from(header.record_count));
                Event::Packet {
                    packet: view,
                    continuity,
                }
            }
            Err(error) => {
                self.stats.discarded_bytes =
                    self.stats.discarded_bytes.saturating_add(frame_len as u64);
                let rejection = Rejection::Sequence(error);
                self.stats.count(&rejection);
                Event::Rejected(rejection)
            }
        }
    }

    fn reject(&mut self, rejection: Rejection, frame_len: usize) -> Event<'static> {
        self.frame.clear();
        self.stats.discarded_bytes = self.stats.discarded_bytes.saturating_add(frame_len as u64);
        self.stats.count(&rejection);
        Event::Rejected(rejection)
    }
}

/// A [`Decoder`] reading from an `embedded_io::Read` (a UART, or a file or socket through
/// [`crate::io::StdIo`] with the `std` feature).
pub struct StreamDecoder<R> {
    reader: R,
    decoder: Decoder,
    buffer: [u8; 256],
    start: usize,
    end: usize,
    ended: bool,
}

impl<R: embedded_io::Read> StreamDecoder<R> {
    pub fn new(reader: R, decoder: Decoder) -> Self {
        Self {
            reader,
            decoder,
            buffer: [0; 256],
            start: 0,
            end: 0,
            ended: false,
        }
    }

    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    pub fn into_inner(self) -> (R, Decoder) {
        (self.reader, self.decoder)
    }

    /// The next event; `Ok(None)` once the reader reports end of stream (a read of 0 bytes).
    pub fn next_event(&mut self) -> Result<Option<Event<'_>>, R::Error> {
        loop {
            if self.start >= self.end {
                if self.ended {
                    return Ok(None);
                }
                let read = self.reader.read(&mut self.buffer)?;
                if read == 0 {
                    self.ended = true;
                    return Ok(self.decoder.finish());
                }
                self.start = 0;
                self.end = read.min(self.buffer.len());
            }
            let mut input = self.buffer.get(self.start..self.end).unwrap_or(&[]);
            let boundary = self.decoder.scan(&mut input);
            self.start = self.end.saturating_sub(input.len());
            if let Some(boundary) = boundary {
                return Ok(Some(self.decoder.complete(boundary)));
            }
        }
    }
}

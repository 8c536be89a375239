//! One packet of records: a CCSDS Space Packet whose data field carries a versioned header, a
//! delta-encoded batch of records, an optional MAC and a CRC-32C.
//!
//! Byte layout (format version 1; FORMAT.md has the same with a worked example):
//!
//! ```text
//! primary header   6 B   CCSDS 133.0-B-2, big-endian: version 000, type 0 (TM), sec. header 0,
//!                        APID (11 bits), sequence flags 11 (unsegmented), sequence count (14 bits),
//!                        data length = packet length - 7
//! version          1 B   FORMAT_VERSION (1)
//! flags            1 B   bit 0: MAC present; bits 1-7 reserved, zero
//! model id         8 B   ModelId, raw
//! code bits        varint u16   K, one of SUPPORTED_BITS
//! label set        varint u16
//! epoch            varint u32   per-pass counter, see decoder docs for replay rules
//! scene id         varint u32   shared by every record of the packet
//! tiles per row    varint u32 \
//! tile size px     varint u32  } TileGrid
//! stride px        varint u32 /
//! time base ms     varint u64   capture time of record 0
//! first tile id    varint u32   tile id of record 0
//! record count     varint u16   n <= MAX_RECORDS
//! exceptions       ceil(n/8) B  bit i (byte i/8, LSB first) set: record i carries an exception byte
//! records          n times:
//!   [exception     1 B   only if bit i set; bit 0 tile, 1 time, 2 position, 3 map; 4-7 zero, not 0
//!    tile delta    varint i32 (zigzag)  tile_id - (previous tile_id + 1), wrapping, if bit 0
//!    time delta    varint i64 (zigzag)  time - previous time, wrapping, if bit 1
//!    row, col      varint u32 each      absolute pixel offset, if bit 2
//!    map           varint u32 EPSG, f64 LE easting, f64 LE northing, if bit 3]
//!   label          varint u16
//!   confidence     1 B
//!   code           K/8 B
//! MAC             16 B   only if flags bit 0: HMAC-SHA-256 over every byte before it, first 16 B
//! CRC             4 B    CRC-32C (Castagnoli) over every byte before it, big-endian
//! ```
//!
//! Record 0 predicts tile id = first tile id and time = time base; record i > 0 predicts tile id =
//! previous + 1 and time = previous time. Every record predicts position from the grid and no map
//! coordinates. A record that matches every prediction costs label + confidence + code only.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use spacepackets::{PacketId, PacketSequenceControl, PacketType, SequenceFlags, SpHeader};

use crate::code::{is_supported_length, Code};
use crate::record::{MapCoordinates, ModelId, Record, TileGrid, TilePosition};
use crate::wire::{Full, ReadError, Reader, SliceWriter};

/// The data-field layout this crate writes and the only one it reads.
pub const FORMAT_VERSION: u8 = 1;
/// CCSDS primary header.
pub const PRIMARY_HEADER_LEN: usize = 6;
/// The truncated HMAC-SHA-256 tag. 128 bits: forging one blindly succeeds with probability 2^-128.
pub const MAC_LEN: usize = 16;
/// CRC-32C trailer.
pub const CRC_LEN: usize = 4;
/// The longest packet either side handles, primary header and trailers included. It bounds the
/// decoder's buffer (and so its RAM); a downlink favours short packets anyway, as one bit error
/// loses the whole packet.
pub const MAX_PACKET_LEN: usize = 4096;
/// Most records in one packet. The smallest record (K = 16: label, confidence, 2-byte code) is
/// 4 bytes, so no legal packet holds more.
pub const MAX_RECORDS: u16 = 1024;
/// Largest APID (11 bits). 0x7FF is CCSDS's idle packet and is refused.
pub const MAX_APID: u16 = 0x7FE;
/// Sequence counts wrap at 2^14.
pub const SEQUENCE_MODULUS: u16 = 1 << 14;

const FLAG_MAC: u8 = 0x01;
const EXCEPTION_TILE: u8 = 0x01;
const EXCEPTION_TIME: u8 = 0x02;
const EXCEPTION_POSITION: u8 = 0x04;
const EXCEPTION_MAP: u8 = 0x08;
const EXCEPTION_KNOWN: u8 = 0x0F;
const EXCEPTION_BITMAP_MAX: usize = (MAX_RECORDS as usize) / 8;
/// version + flags + model id: the fixed-width start of the data field.
const FIXED_DATA_HEADER_LEN: usize = 10;

/// CRC-32C (Castagnoli; as in CFDP checksum type 2 and iSCSI): the packet trailer, and every
/// other checksum orbhash writes (the board's downlink queue entries), so there is one definition.
pub const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// The mission's pre-shared authentication key, 256 bits.
#[derive(Clone, PartialEq, Eq)]
pub struct MacKey([u8; 32]);

impl MacKey {
    pub const fn new(key: [u8; 32]) -> Self {
        Self(key)
    }

    /// A key written as 64 hex digits (surrounding whitespace ignored), as mission key files and
    /// `ORBHASH_MISSION_KEY` hold it; `None` for anything else.
    pub fn from_hex(text: &str) -> Option<Self> {
        crate::hex::decode_array(text.trim()).map(Self)
    }

    fn tag(&self, authenticated: &[u8]) -> [u8; MAC_LEN] {
        self.tag_parts(&[authenticated])
    }

    fn verify(&self, authenticated: &[u8], tag: &[u8]) -> bool {
        self.verify_parts(&[authenticated], tag)
    }

    /// The truncated tag over the concatenation of `parts` (a domain label, then the bytes).
    pub(crate) fn tag_parts(&self, parts: &[&[u8]]) -> [u8; MAC_LEN] {
        let mut tag = [0u8; MAC_LEN];
        let full = self.hmac(parts).finalize().into_bytes();
        for (slot, byte) in tag.iter_mut().zip(full.iter()) {
            *slot = *byte;
        }
        tag
    }

    pub(crate) fn verify_parts(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        // Constant-time comparison: a timing oracle would let a forger guess the tag bytewise.
        self.hmac(parts).verify_truncated_left(tag).is_ok()
    }

    fn hmac(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        // HMAC takes keys of any length, so this cannot fail; the fallback key only keeps the
        // path panic-free.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0)
            .unwrap_or_else(|_| Hmac::<Sha256>::new(&Default::default()));
        for part in parts {
            mac.update(part);
        }
        mac
    }
}

impl core::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Keys end up in logs through Debug more often than anyone intends.
        f.write_str("MacKey(..)")
    }
}

/// What every packet of a stream shares and the flight software configures once per pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketContext {
    /// CCSDS application process id, 0..=MAX_APID.
    pub apid: u16,
    pub model_id: ModelId,
    /// K, one of [`crate::code::SUPPORTED_BITS`].
    pub code_bits: u16,
    /// Which label vocabulary `Record::label` indexes.
    pub label_set: u16,
    /// Per-pass counter; must grow at every pass and every reboot (see `Decoder`).
    pub epoch: u32,
    pub grid: TileGrid,
}

/// A decoded packet's header: the primary header fields and the data-field header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHeader {
    pub apid: u16,
    pub sequence_count: u16,
    pub model_id: ModelId,
    pub code_bits: u16,
    pub label_set: u16,
    pub epoch: u32,
    pub scene_id: u32,
    pub grid: TileGrid,
    pub time_base_ms: u64,
    pub first_tile_id: u32,
    pub record_count: u16,
    /// Whether the packet carries a MAC (it was only checked if the decoder holds a key).
    pub has_mac: bool,
}

/// Why a packet could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// APID above [`MAX_APID`].
    InvalidApid(u16),
    /// The context's K is not supported.
    UnsupportedCodeLength(u16),
    /// A record's code length differs from the context's.
    CodeLengthMismatch { expected: u16, found: u16 },
    /// Records of one packet must share a scene id.
    MixedScenes,
    /// More than [`MAX_RECORDS`] records.
    TooManyRecords,
    /// The packet would exceed its byte budget or the output buffer.
    TooLarge,
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EncodeError::InvalidApid(apid) => write!(f, "APID {apid} is above {MAX_APID}"),
            EncodeError::UnsupportedCodeLength(bits) => write!(f, "unsupported code length {bits}"),
            EncodeError::CodeLengthMismatch { expected, found } => {
                write!(
                    f,
                    "record has a {found}-bit code, packet carries {expected}-bit codes"
                )
            }
            EncodeError::MixedScenes => f.write_str("records of one packet must share a scene id"),
            EncodeError::TooManyRecords => write!(f, "more than {MAX_RECORDS} records"),
            EncodeError::TooLarge => f.write_str("packet exceeds its byte budget or buffer"),
        }
    }
}

impl core::error::Error for EncodeError {}

/// Why a packet was rejected. Each variant names the layer that refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// Space packet layer: shorter than the minimum or than its data length field says.
    Truncated { expected: usize, found: usize },
    /// Space packet layer: longer than its data length field says.
    LengthMismatch { expected: usize, found: usize },
    /// Space packet layer: above [`MAX_PACKET_LEN`].
    TooLong(usize),
    /// Integrity layer: the CRC-32C does not match (corruption).
    BadCrc,
    /// orbhash layer: a data-field version this decoder does not know.
    UnsupportedVersion(u8),
    /// Authentication layer: the decoder requires a MAC and the packet has none.
    MissingMac,
    /// Authentication layer: the MAC does not verify (forgery or wrong key, not corruption: the CRC
    /// already passed).
    BadMac,
    /// orbhash layer: K is not one of the supported lengths.
    UnknownCodeLength(u16),
    /// orbhash layer: the data field does not follow the layout.
    Malformed(Malformed),
}

/// How a data field broke the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Primary header is not an unsegmented telemetry packet without secondary header, or uses
    /// the idle APID.
    PrimaryHeader,
    /// Reserved flag bits set.
    ReservedFlags(u8),
    /// A field ran past the end of the data field.
    UnexpectedEnd,
    /// A varint overflowed its type.
    BadVarint,
    /// Record count above [`MAX_RECORDS`].
    TooManyRecords(u16),
    /// A record flagged as exceptional has an exception byte that is zero or has reserved bits.
    BadException(u8),
    /// Bytes left between the last record and the trailer.
    TrailingBytes(usize),
}

impl From<ReadError> for PacketError {
    fn from(error: ReadError) -> Self {
        PacketError::Malformed(match error {
            ReadError::UnexpectedEnd => Malformed::UnexpectedEnd,
            ReadError::BadVarint => Malformed::BadVarint,
        })
    }
}

impl core::fmt::Display for PacketError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PacketError::Truncated { expected, found } => {
                write!(f, "space packet: truncated, {found} of {expected} bytes")
            }
            PacketError::LengthMismatch { expected, found } => {
                write!(
                    f,
                    "space packet: {found} bytes, length field says {expected}"
                )
            }
            PacketError::TooLong(len) => {
                write!(f, "space packet: {len} bytes, limit {MAX_PACKET_LEN}")
            }
            PacketError::BadCrc => f.write_str("integrity: CRC-32C mismatch"),
            PacketError::UnsupportedVersion(version) => {
                write!(f, "orbhash: unsupported format version {version}")
            }
            PacketError::MissingMac => f.write_str("authentication: packet carries no MAC"),
            PacketError::BadMac => f.write_str("authentication: MAC does not verify"),
            PacketError::UnknownCodeLength(bits) => {
                write!(f, "orbhash: unknown code length {bits}")
            }
            PacketError::Malformed(what) => write!(f, "orbhash: malformed data field: {what}"),
        }
    }
}

impl core::fmt::Display for Malformed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Malformed::PrimaryHeader => f.write_str("primary header is not an orbhash TM packet"),
            Malformed::ReservedFlags(flags) => write!(f, "reserved flag bits in {flags:#04x}"),
            Malformed::UnexpectedEnd => f.write_str("field runs past the end"),
            Malformed::BadVarint => f.write_str("varint overflows its type"),
            Malformed::TooManyRecords(count) => write!(f, "{count} records, limit {MAX_RECORDS}"),
            Malformed::BadException(byte) => write!(f, "bad exception byte {byte:#04x}"),
            Malformed::TrailingBytes(count) => write!(f, "{count} bytes after the last record"),
        }
    }
}

impl core::error::Error for PacketError {}

/// A batch of records being delta-encoded into a packet body. Shared by [`encode_packet`] and the
/// streaming `PacketWriter`, so both produce the same bytes.
pub(crate) struct Batch {
    scene_id: u32,
    time_base_ms: u64,
    first_tile_id: u32,
    previous_tile_id: u32,
    previous_time_ms: u64,
    count: u16,
    exceptions: [u8; EXCEPTION_BITMAP_MAX],
    body: heapless::Vec<u8, MAX_PACKET_LEN>,
}

impl Batch {
    pub(crate) fn new(first: &Record) -> Self {
        Self {
            scene_id: first.position.scene_id,
            time_base_ms: first.capture_time_ms,
            first_tile_id: first.tile_id,
            previous_tile_id: first.tile_id,
            previous_time_ms: first.capture_time_ms,
            count: 0,
            exceptions: [0; EXCEPTION_BITMAP_MAX],
            body: heapless::Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> u16 {
        self.count
    }

    pub(crate) fn scene_id(&self) -> u32 {
        self.scene_id
    }

    /// Appends `record` if the packet stays within `max_packet_len`; leaves the batch unchanged
    /// and returns `TooLarge` (or `TooManyRecords`) otherwise.
    pub(crate) fn push(
        &mut self,
        context: &PacketContext,
        record: &Record,
        max_packet_len: usize,
        mac: bool,
    ) -> Result<(), EncodeError> {
        if record.code.bits() != context.code_bits {
            return Err(EncodeError::CodeLengthMismatch {
                expected: context.code_bits,
                found: record.code.bits(),
            });
        }
        if record.position.scene_id != self.scene_id {
            return Err(EncodeError::MixedScenes);
        }
        if self.count >= MAX_RECORDS {
            return Err(EncodeError::TooManyRecords);
        }
        let body_before = self.body.len();
        let exception = self.append(context, record);
        let fits = exception.is_ok()
            && self.packet_len(context, self.count.saturating_add(1), mac) <= max_packet_len;
        if !fits {
            self.body.truncate(body_before);
            return Err(EncodeError::TooLarge);
        }
        if exception == Ok(true) {
            let index = usize::from(self.count);
            if let Some(byte) = self.exceptions.get_mut(index / 8) {
                *byte |= 1 << (index % 8);
            }
        }
        self.count = self.count.saturating_add(1);
        self.previous_tile_id = record.tile_id;
        self.previous_time_ms = record.capture_time_ms;
        Ok(())
    }

    /// Writes the record's bytes to the body; `Ok(true)` if it needed an exception byte.
    fn append(&mut self, context: &PacketContext, record: &Record) -> Result<bool, Full> {
        let (predicted_tile, predicted_time) = if self.count == 0 {
            (self.first_tile_id, self.time_base_ms)
        } else {
            (self.previous_tile_id.wrapping_add(1), self.previous_time_ms)
        };
        let position = &record.position;
        let mut exception = 0u8;
        if record.tile_id != predicted_tile {
            exception |= EXCEPTION_TILE;
        }
        if record.capture_time_ms != predicted_time {
            exception |= EXCEPTION_TIME;
        }
        if (position.row_px, position.col_px) != context.grid.predict(record.tile_id) {
            exception |= EXCEPTION_POSITION;
        }
        if position.map.is_some() {
            exception |= EXCEPTION_MAP;
        }

        // The longest record: exception 1 + tile 5 + time 10 + row, col 10 + map 21 + label 3 +
        // confidence 1 + code 32 = 83 bytes.
        let mut scratch = [0u8; 96];
        let mut out = SliceWriter::new(&mut scratch);
        if exception != 0 {
            out.put_u8(exception)?;
            if exception & EXCEPTION_TILE != 0 {
                out.put_varint(&(record.tile_id.wrapping_sub(predicted_tile) as i32))?;
            }
            if exception & EXCEPTION_TIME != 0 {
                out.put_varint(&(record.capture_time_ms.wrapping_sub(predicted_time) as i64))?;
            }
            if exception & EXCEPTION_POSITION != 0 {
                out.put_varint(&position.row_px)?;
                out.put_varint(&position.col_px)?;
            }
            if let Some(map) = &position.map {
                out.put_varint(&map.epsg)?;
                out.put_bytes(&map.easting.to_le_bytes())?;
                out.put_bytes(&map.northing.to_le_bytes())?;
            }
        }
        out.put_varint(&record.label)?;
        out.put_u8(record.confidence)?;
        out.put_bytes(record.code.as_bytes())?;
        let written = out.len();
        self.body
            .extend_from_slice(scratch.get(..written).ok_or(Full)?)
            .map_err(|_| Full)?;
        Ok(exception != 0)
    }

    /// Packet length with `count` records and the current body.
    fn packet_len(&self, context: &PacketContext, count: u16, mac: bool) -> usize {
        let mut header = [0u8; 64];
        let header_len = self
            .write_data_header(context, count, &mut header)
            .unwrap_or(usize::MAX);
        PRIMARY_HEADER_LEN
            .saturating_add(header_len)
            .saturating_add(usize::from(count).div_ceil(8))
            .saturating_add(self.body.len())
            .saturating_add(if mac { MAC_LEN } else { 0 })
            .saturating_add(CRC_LEN)
    }

    /// The data-field header from the version byte through the record count.
    fn write_data_header(
        &self,
        context: &PacketContext,
        count: u16,
        out: &mut [u8],
    ) -> Result<usize, Full> {
        let mut out = SliceWriter::new(out);
        out.put_u8(FORMAT_VERSION)?;
        out.put_u8(0)?; // flags, patched by `finish`
        out.put_bytes(&context.model_id.0)?;
        out.put_varint(&context.code_bits)?;
        out.put_varint(&context.label_set)?;
        out.put_varint(&context.epoch)?;
        out.put_varint(&self.scene_id)?;
        out.put_varint(&context.grid.tiles_per_row)?;
        out.put_varint(&context.grid.tile_size_px)?;
        out.put_varint(&context.grid.stride_px)?;
        out.put_varint(&self.time_base_ms)?;
        out.put_varint(&self.first_tile_id)?;
        out.put_varint(&count)?;
        Ok(out.len())
    }

    /// Writes the complete space packet to `out`; returns its length.
    pub(crate) fn finish(
        &self,
        context: &PacketContext,
        sequence_count: u16,
        key: Option<&MacKey>,
        out: &mut [u8],
    ) -> Result<usize, EncodeError> {
        let data_len = self.write_data_field(context, key.is_some(), out)?;
        let packet_len = PRIMARY_HEADER_LEN
            .checked_add(data_len)
            .ok_or(EncodeError::TooLarge)?;
        // CCSDS data length field: octets in the data field minus one.
        let data_len_field =
            u16::try_from(data_len.saturating_sub(1)).map_err(|_| EncodeError::TooLarge)?;
        if context.apid > MAX_APID {
            return Err(EncodeError::InvalidApid(context.apid));
        }
        // Raw fields: TM type and no secondary header are the zero bits around the APID;
        // 0b11 in the top bits of the sequence control means "unsegmented".
        let packet_id = PacketId::from(context.apid);
        let sequence_control = PacketSequenceControl::from(
            (SequenceFlags::Unsegmented as u16) << 14 | (sequence_count % SEQUENCE_MODULUS),
        );
        SpHeader::new(packet_id, sequence_control, data_len_field)
            .write_to_slice(out)
            .map_err(|_| EncodeError::TooLarge)?;
        let mac_end = packet_len
            .checked_sub(CRC_LEN)
            .ok_or(EncodeError::TooLarge)?;
        if let Some(key) = key {
            let mac_start = mac_end.checked_sub(MAC_LEN).ok_or(EncodeError::TooLarge)?;
            let tag = key.tag(out.get(..mac_start).ok_or(EncodeError::TooLarge)?);
            out.get_mut(mac_start..mac_end)
                .ok_or(EncodeError::TooLarge)?
                .copy_from_slice(&tag);
        }
        let crc = CRC32C.checksum(out.get(..mac_end).ok_or(EncodeError::TooLarge)?);
        out.get_mut(mac_end..packet_len)
            .ok_or(EncodeError::TooLarge)?
            .copy_from_slice(&crc.to_be_bytes());
        Ok(packet_len)
    }

    /// Writes the data field after the primary header, leaving MAC and CRC as zeros; returns the
    /// data field's length.
    fn write_data_field(
        &self,
        context: &PacketContext,
        mac: bool,
        out: &mut [u8],
    ) -> Result<usize, EncodeError> {
        let field = out
            .get_mut(PRIMARY_HEADER_LEN..)
            .ok_or(EncodeError::TooLarge)?;
        let header_len = self
            .write_data_header(context, self.count, field)
            .map_err(|_| EncodeError::TooLarge)?;
        if let Some(flags) = field.get_mut(1) {
            *flags = if mac { FLAG_MAC } else { 0 };
        }
        let mut out = SliceWriter::new(field.get_mut(header_len..).ok_or(EncodeError::TooLarge)?);
        let bitmap_len = usize::from(self.count).div_ceil(8);
        let bitmap = self
            .exceptions
            .get(..bitmap_len)
            .ok_or(EncodeError::TooLarge)?;
        out.put_bytes(bitmap).map_err(|_| EncodeError::TooLarge)?;
        out.put_bytes(&self.body)
            .map_err(|_| EncodeError::TooLarge)?;
        let trailer = [0u8; MAC_LEN + CRC_LEN];
        let trailer_len = if mac { MAC_LEN + CRC_LEN } else { CRC_LEN };
        out.put_bytes(trailer.get(..trailer_len).unwrap_or(&[]))
            .map_err(|_| EncodeError::TooLarge)?;
        header_len
            .checked_add(out.len())
            .ok_or(EncodeError::TooLarge)
    }
}

/// Checks what a packet's context must satisfy before any record is encoded.
pub(crate) fn check_context(context: &PacketContext) -> Result<(), EncodeError> {
    if context.apid > MAX_APID {
        return Err(EncodeError::InvalidApid(context.apid));
    }
    if !is_supported_length(context.code_bits) {
        return Err(EncodeError::UnsupportedCodeLength(context.code_bits));
    }
    Ok(())
}

/// Encodes `records` (sharing one scene id and K) as one space packet into `out`; returns its
/// length. With a key the packet carries a MAC.
pub fn encode_packet(
    context: &PacketContext,
    sequence_count: u16,
    records: &[Record],
    key: Option<&MacKey>,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    check_context(context)?;
    let Some(first) = records.first() else {
        return Err(EncodeError::TooManyRecords);
    };
    let mut batch = Batch::new(first);
    let budget = out.len().min(MAX_PACKET_LEN);
    for record in records {
        batch.push(context, record, budget, key.is_some())?;
    }
    batch.finish(context, sequence_count, key, out)
}

/// A packet that passed every check of [`decode_packet`]. Records decode lazily from the borrowed
/// bytes; they were all decoded once already, so iteration cannot fail.
#[derive(Debug, Clone)]
pub struct PacketView<'a> {
    pub header: PacketHeader,
    /// True when the decoder held a key and the MAC verified.
    pub authenticated: bool,
    exceptions: &'a [u8],
    records: &'a [u8],
}

impl<'a> PacketView<'a> {
    pub fn records(&self) -> Records<'a> {
        Records {
            header: self.header,
            exceptions: self.exceptions,
            reader: Reader::new(self.records),
            index: 0,
            previous_tile_id: self.header.first_tile_id,
            previous_time_ms: self.header.time_base_ms,
        }
    }
}

/// Iterator over a packet's records.
#[derive(Clone)]
pub struct Records<'a> {
    header: PacketHeader,
    exceptions: &'a [u8],
    reader: Reader<'a>,
    index: u16,
    previous_tile_id: u32,
    previous_time_ms: u64,
}

impl Records<'_> {
    fn decode_next(&mut self) -> Result<Record, PacketError> {
        let header = &self.header;
        let (predicted_tile, predicted_time) = if self.index == 0 {
            (header.first_tile_id, header.time_base_ms)
        } else {
            (self.previous_tile_id.wrapping_add(1), self.previous_time_ms)
        };
        let index = usize::from(self.index);
        let flagged = self
            .exceptions
            .get(index / 8)
            .is_some_and(|byte| byte >> (index % 8) & 1 == 1);
        let exception = if flagged { self.reader.u8()? } else { 0 };
        if flagged && (exception == 0 || exception & !EXCEPTION_KNOWN != 0) {
            return Err(PacketError::Malformed(Malformed::BadException(exception)));
        }
        let mut tile_id = predicted_tile;
        if exception & EXCEPTION_TILE != 0 {
            tile_id = predicted_tile.wrapping_add(self.reader.varint::<i32>()? as u32);
        }
        let mut capture_time_ms = predicted_time;
        if exception & EXCEPTION_TIME != 0 {
            capture_time_ms = predicted_time.wrapping_add(self.reader.varint::<i64>()? as u64);
        }
        let (mut row_px, mut col_px) = header.grid.predict(tile_id);
        if exception & EXCEPTION_POSITION != 0 {
            row_px = self.reader.varint()?;
            col_px = self.reader.varint()?;
        }
        let mut map = None;
        if exception & EXCEPTION_MAP != 0 {
            map = Some(MapCoordinates {
                epsg: self.reader.varint()?,
                easting: self.reader.f64()?,
                northing: self.reader.f64()?,
            });
        }
        let label = self.reader.varint()?;
        let confidence = self.reader.u8()?;
        let code_bytes = self.reader.bytes(usize::from(header.code_bits / 8))?;
        let code = Code::from_bytes(header.code_bits, code_bytes)
            .map_err(|_| PacketError::UnknownCodeLength(header.code_bits))?;
        self.index = self.index.saturating_add(1);
        self.previous_tile_id = tile_id;
        self.previous_time_ms = capture_time_ms;
        Ok(Record {
            tile_id,
            capture_time_ms,
            position: TilePosition {
                scene_id: header.scene_id,
                row_px,
                col_px,
                map,
            },
            label,
            confidence,
            code,
        })
    }
}

impl Iterator for Records<'_> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        if self.index >= self.header.record_count {
            return None;
        }
        self.decode_next().ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::from(self.header.record_count.saturating_sub(self.index));
        (left, Some(left))
    }
}

/// Checks and parses one space packet (no COBS framing: exactly the packet's bytes).
///
/// Order of checks: length, CRC-32C, version, MAC, layout. CRC before MAC so that line noise is
/// counted as corruption and only a packet that arrived intact but fails the MAC counts as an
/// authentication failure. With `key`, a packet without a MAC is refused.
pub fn decode_packet<'a>(
    packet: &'a [u8],
    key: Option<&MacKey>,
) -> Result<PacketView<'a>, PacketError> {
    let minimum = PRIMARY_HEADER_LEN + FIXED_DATA_HEADER_LEN + CRC_LEN;
    if packet.len() < minimum {
        return Err(PacketError::Truncated {
            expected: minimum,
            found: packet.len(),
        });
    }
    if packet.len() > MAX_PACKET_LEN {
        return Err(PacketError::TooLong(packet.len()));
    }
    let (primary, _) = SpHeader::from_be_bytes(packet).map_err(|_| PacketError::Truncated {
        expected: minimum,
        found: packet.len(),
    })?;
    let declared = primary.packet_len();
    if declared > packet.len() {
        return Err(PacketError::Truncated {
            expected: declared,
            found: packet.len(),
        });
    }
    if declared < packet.len() {
        return Err(PacketError::LengthMismatch {
            expected: declared,
            found: packet.len(),
        });
    }

    let crc_start = packet.len().saturating_sub(CRC_LEN);
    let (covered, crc) = packet.split_at(crc_start);
    let mut expected_crc = [0u8; CRC_LEN];
    expected_crc.copy_from_slice(crc);
    if CRC32C.checksum(covered) != u32::from_be_bytes(expected_crc) {
        return Err(PacketError::BadCrc);
    }

    let sequence_flags_unsegmented = primary.psc.seq_flags == SequenceFlags::Unsegmented;
    let apid = primary.packet_id.raw() & 0x7FF;
    if primary.version.value() != 0
        || primary.packet_id.packet_type != PacketType::Tm
        || primary.packet_id.sec_header_flag
        || !sequence_flags_unsegmented
        || apid > MAX_APID
    {
        return Err(PacketError::Malformed(Malformed::PrimaryHeader));
    }

    let mut data = Reader::new(covered.get(PRIMARY_HEADER_LEN..).unwrap_or(&[]));
    let version = data.u8()?;
    if version != FORMAT_VERSION {
        return Err(PacketError::UnsupportedVersion(version));
    }
    let flags = data.u8()?;
    if flags & !FLAG_MAC != 0 {
        return Err(PacketError::Malformed(Malformed::ReservedFlags(flags)));
    }
    let has_mac = flags & FLAG_MAC != 0;
    let mac_start = if has_mac {
        crc_start.checked_sub(MAC_LEN)
    } else {
        Some(crc_start)
    };
    let mac_start = mac_start
        .filter(|start| *start >= minimum - CRC_LEN)
        .ok_or(PacketError::Truncated {
            expected: minimum + MAC_LEN,
            found: packet.len(),
        })?;
    let authenticated = match key {
        Some(_) if !has_mac => return Err(PacketError::MissingMac),
        Some(key) => {
            let (signed, rest) = covered.split_at(mac_start);
            if !key.verify(signed, rest) {
                return Err(PacketError::BadMac);
            }
            true
        }
        None => false,
    };

    let body = covered
        .get(PRIMARY_HEADER_LEN + 2..mac_start)
        .unwrap_or(&[]);
    let mut reader = Reader::new(body);
    let model_id = ModelId(reader.array()?);
    let code_bits: u16 = reader.varint()?;
    let label_set = reader.varint()?;
    let epoch = reader.varint()?;
    let scene_id = reader.varint()?;
    let grid = TileGrid {
        tiles_per_row: reader.varint()?,
        tile_size_px: reader.varint()?,
        stride_px: reader.varint()?,
    };
    let time_base_ms = reader.varint()?;
    let first_tile_id = reader.varint()?;
    let record_count: u16 = reader.varint()?;
    if !is_supported_length(code_bits) {
        return Err(PacketError::UnknownCodeLength(code_bits));
    }
    if record_count > MAX_RECORDS {
        return Err(PacketError::Malformed(Malformed::TooManyRecords(
            record_count,
        )));
    }
    let exceptions = reader.bytes(usize::from(record_count).div_ceil(8))?;
    let header = PacketHeader {
        apid,
        sequence_count: primary.psc.raw() % SEQUENCE_MODULUS,
        model_id,
        code_bits,
        label_set,
        epoch,
        scene_id,
        grid,
        time_base_ms,
        first_tile_id,
        record_count,
        has_mac,
    };
    let view = PacketView {
        header,
        authenticated,
        exceptions,
        records: body
            .get(body.len().saturating_sub(reader.remaining())..)
            .unwrap_or(&[]),
    };

    // Decode every record once now, so a packet is accepted whole or not at all.
    let mut records = view.records();
    for _ in 0..record_count {
        records.decode_next()?;
    }
    if records.reader.remaining() != 0 {
        return Err(PacketError::Malformed(Malformed::TrailingBytes(
            records.reader.remaining(),
        )));
    }
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> PacketContext {
        PacketContext {
            apid: 0x42,
            model_id: ModelId([1, 2, 3, 4, 5, 6, 7, 8]),
            code_bits: 64,
            label_set: 3,
            epoch: 7,
            grid: TileGrid {
                tiles_per_row: 16,
                tile_size_px: 64,
                stride_px: 64,
            },
        }
    }

    fn record(tile_id: u32) -> Record {
        let (row_px, col_px) = context().grid.predict(tile_id);
        Record {
            tile_id,
            capture_time_ms: 1_700_000_000_000,
            position: TilePosition {
                scene_id: 9,
                row_px,
                col_px,
                map: None,
            },
            label: 4,
            confidence: 200,
            code: Code::from_bytes(64, &tile_id.to_le_bytes().repeat(2)).expect("8 bytes"),
        }
    }

    #[test]
    fn regular_records_cost_label_confidence_and_code_only() {
        let records: heapless::Vec<Record, 100> = (0..100).map(record).collect();
        let mut out = [0u8; MAX_PACKET_LEN];
        let len = encode_packet(&context(), 5, &records, None, &mut out).expect("fits");
        let view = decode_packet(&out[..len], None).expect("valid");
        assert_eq!(view.header.record_count, 100);
        assert!(view.records().eq(records.iter().cloned()));
        // 100 x (1 + 1 + 8) of records; the rest is header, bitmap, trailer.
        assert!(len < 1000 + 50, "{len}");
    }

    #[test]
    fn wrong_key_is_a_mac_failure_not_corruption() {
        let key = MacKey::new([7; 32]);
        let records = [record(0), record(1)];
        let mut out = [0u8; 512];
        let len = encode_packet(&context(), 0, &records, Some(&key), &mut out).expect("fits");
        assert!(
            decode_packet(&out[..len], Some(&key))
                .expect("valid")
                .authenticated
        );
        assert_eq!(
            decode_packet(&out[..len], Some(&MacKey::new([8; 32]))).unwrap_err(),
            PacketError::BadMac
        );
        let unsigned = encode_packet(&context(), 0, &records, None, &mut out).expect("fits");
        assert_eq!(
            decode_packet(&out[..unsigned], Some(&key)).unwrap_err(),
            PacketError::MissingMac
        );
    }

    #[test]
    fn any_single_bit_flip_is_caught() {
        let records = [record(3), record(4)];
        let mut out = [0u8; 512];
        let len = encode_packet(&context(), 1, &records, None, &mut out).expect("fits");
        for bit in 0..len * 8 {
            let mut corrupted = out;
            corrupted[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_packet(&corrupted[..len], None).is_err(), "bit {bit}");
        }
    }
}

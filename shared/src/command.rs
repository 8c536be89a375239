//! The uplink: telecommands from the ground to the board, as ECSS PUS-C telecommand packets
//! (CCSDS 133.0-B-2 space packets with the PUS secondary header, built and checked with
//! `spacepackets`), each authenticated and replay-protected.
//!
//! Byte layout (command format version 1; FORMAT.md has the same with a worked example):
//!
//! ```text
//! primary header   6 B   CCSDS, big-endian: version 000, type 1 (TC), sec. header 1, APID (11 bits),
//!                        sequence flags 11 (unsegmented), sequence count (14 bits),
//!                        data length = packet length - 7
//! PUS-C TC header  5 B   PUS version 2 (4 bits) | ack flags (4 bits); service 200 (orbhash
//!                        tasking); subtype (the command); source id u16 BE (the ground station)
//! version          1 B   COMMAND_VERSION (1)
//! stream epoch     4 B   u32 BE  \ the command's position in its stream: the board accepts only
//! counter          4 B   u32 BE  / a position above the last one it accepted
//! body             the subtype's fields, below (varints as in the downlink format)
//! MAC             16 B   HMAC-SHA-256 under the mission key over "orbhash-tc-1" followed by every
//!                        byte before the MAC, first 16 B
//! CRC             2 B    CRC-16/CCITT-FALSE over every byte before it, big-endian (PUS)
//! ```
//!
//! Bodies:
//!
//! | subtype | command | body |
//! |---|---|---|
//! | 1 | [`Command::RequestTiles`] | request id varint u32, tile count varint u16 (1..=[`MAX_TILES_PER_REQUEST`]), then per tile scene id varint u32, tile id varint u32 |
//! | 2 | [`Command::CancelRequest`] | request id varint u32 |
//! | 3 | [`Command::SetRetention`] | capacity bytes varint u64, maximum age s varint u32 (0: no age limit) |
//!
//! The MAC's domain label keeps a telecommand tag from ever verifying as a downlink packet's (or
//! the reverse) under the same mission key. Every check runs before the body is read, in the
//! order of [`CommandError`]; a rejected command changes nothing in a [`CommandGate`].

use spacepackets::ecss::tc::GenericPusTcSecondaryHeader;
use spacepackets::ecss::tc::{PusTcCreator, PusTcReader, PusTcSecondaryHeader, ACK_ALL};
use spacepackets::ecss::{CreatorConfig, MessageTypeId, PusPacket};
use spacepackets::{PacketId, PacketSequenceControl, PacketType, SequenceFlags, SpHeader};

use crate::packet::{MacKey, MAC_LEN, MAX_APID, PRIMARY_HEADER_LEN, SEQUENCE_MODULUS};
use crate::wire::{Full, ReadError, Reader, SliceWriter};

/// The application-data layout this crate writes and the only one it reads.
pub const COMMAND_VERSION: u8 = 1;
/// PUS service type of orbhash's commands (128–255 are mission-specific in ECSS-E-ST-70-41C).
pub const TASKING_SERVICE: u8 = 200;
/// PUS-C TC secondary header: version and ack flags, service, subtype, source id.
pub const PUS_TC_HEADER_LEN: usize = 5;
/// PUS's CRC-16 trailer.
pub const CRC16_LEN: usize = 2;
/// Version, stream epoch and counter.
const COMMAND_HEADER_LEN: usize = 9;
/// The shortest legal command: every header and trailer around an empty body.
pub const MIN_COMMAND_LEN: usize =
    PRIMARY_HEADER_LEN + PUS_TC_HEADER_LEN + COMMAND_HEADER_LEN + MAC_LEN + CRC16_LEN;
/// The longest command either side handles; a request of [`MAX_TILES_PER_REQUEST`] tiles with
/// the largest ids fits.
pub const MAX_COMMAND_LEN: usize = 4096;
/// Tiles one request may name. Longer lists go in several requests.
pub const MAX_TILES_PER_REQUEST: u16 = 256;
/// The PUS version nibble of PUS-C.
const PUS_C: u8 = 2;
const MAC_DOMAIN: &[u8] = b"orbhash-tc-1";

const SUBTYPE_REQUEST_TILES: u8 = 1;
const SUBTYPE_CANCEL_REQUEST: u8 = 2;
const SUBTYPE_SET_RETENTION: u8 = 3;

/// A command's place in its stream. The ground counts up within an epoch and starts a new epoch
/// (counter from 0) when it loses its counter, e.g. on a new installation; positions compare
/// epoch first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamPosition {
    pub epoch: u32,
    pub counter: u32,
}

/// What every command carries besides its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandHeader {
    /// The board's APID, 0..=[`MAX_APID`].
    pub apid: u16,
    /// CCSDS sequence count, wrapping at 2^14. Informative: replay protection uses `position`.
    pub sequence_count: u16,
    /// PUS source id: which ground station sent it.
    pub source: u16,
    pub position: StreamPosition,
}

/// One tile of one scene, as records name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TileRef {
    pub scene: u32,
    pub tile: u32,
}

/// The tiles of a request: a slice when building one, the checked bytes when reading one.
#[derive(Debug, Clone, Copy)]
pub enum TileList<'a> {
    Slice(&'a [TileRef]),
    /// `count` tiles, already validated by [`decode_command`].
    Encoded {
        count: u16,
        bytes: &'a [u8],
    },
}

impl<'a> TileList<'a> {
    pub fn len(&self) -> usize {
        match self {
            TileList::Slice(tiles) => tiles.len(),
            TileList::Encoded { count, .. } => usize::from(*count),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> TileIter<'a> {
        match *self {
            TileList::Slice(tiles) => TileIter(TileSource::Slice(tiles.iter())),
            TileList::Encoded { count, bytes } => TileIter(TileSource::Encoded {
                left: count,
                reader: Reader::new(bytes),
            }),
        }
    }
}

impl PartialEq for TileList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for TileList<'_> {}

/// The tiles of a [`TileList`] in order.
pub struct TileIter<'a>(TileSource<'a>);

enum TileSource<'a> {
    Slice(core::slice::Iter<'a, TileRef>),
    Encoded { left: u16, reader: Reader<'a> },
}

impl Iterator for TileIter<'_> {
    type Item = TileRef;

    fn next(&mut self) -> Option<TileRef> {
        match &mut self.0 {
            TileSource::Slice(tiles) => tiles.next().copied(),
            TileSource::Encoded { left, reader } => {
                *left = left.checked_sub(1)?;
                // Validated when the command was decoded; a failure here ends the list.
                let scene = reader.varint::<u32>().ok()?;
                let tile = reader.varint::<u32>().ok()?;
                Some(TileRef { scene, tile })
            }
        }
    }
}

/// How long the board keeps the raw scenes it hashed, so that tiles can be tasked later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Bytes of scenes kept; the oldest is evicted first past it.
    pub capacity_bytes: u64,
    /// Scenes older than this are evicted; 0 keeps them until capacity runs out.
    pub max_age_s: u32,
}

/// What the ground asks of the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// Downlink these tiles in full (in this order, after the records), under request id
    /// `request` that the board's answers quote.
    RequestTiles {
        request: u32,
        tiles: TileList<'a>,
    },
    /// Drop what is left of request `request`.
    CancelRequest {
        request: u32,
    },
    SetRetention(RetentionPolicy),
}

impl Command<'_> {
    fn subtype(&self) -> u8 {
        match self {
            Command::RequestTiles { .. } => SUBTYPE_REQUEST_TILES,
            Command::CancelRequest { .. } => SUBTYPE_CANCEL_REQUEST,
            Command::SetRetention(_) => SUBTYPE_SET_RETENTION,
        }
    }

    /// The command's name, for logs and counters.
    pub fn name(&self) -> &'static str {
        match self {
            Command::RequestTiles { .. } => "request-tiles",
            Command::CancelRequest { .. } => "cancel-request",
            Command::SetRetention(_) => "set-retention",
        }
    }

    fn write_body(&self, out: &mut SliceWriter<'_>) -> Result<(), CommandEncodeError> {
        match self {
            Command::RequestTiles { request, tiles } => {
                let count = u16::try_from(tiles.len())
                    .ok()
                    .filter(|&count| (1..=MAX_TILES_PER_REQUEST).contains(&count))
                    .ok_or(CommandEncodeError::TileCount(tiles.len()))?;
                out.put_varint(request)?;
                out.put_varint(&count)?;
                for tile in tiles.iter() {
                    out.put_varint(&tile.scene)?;
                    out.put_varint(&tile.tile)?;
                }
            }
            Command::CancelRequest { request } => out.put_varint(request)?,
            Command::SetRetention(policy) => {
                out.put_varint(&policy.capacity_bytes)?;
                out.put_varint(&policy.max_age_s)?;
            }
        }
        Ok(())
    }
}

/// Why a command could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandEncodeError {
    /// APID above [`MAX_APID`].
    InvalidApid(u16),
    /// A request must name 1..=[`MAX_TILES_PER_REQUEST`] tiles.
    TileCount(usize),
    /// The command exceeds [`MAX_COMMAND_LEN`] or the output buffer.
    TooLarge,
}

impl From<Full> for CommandEncodeError {
    fn from(_: Full) -> Self {
        CommandEncodeError::TooLarge
    }
}

impl core::fmt::Display for CommandEncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CommandEncodeError::InvalidApid(apid) => write!(f, "APID {apid} is above {MAX_APID}"),
            CommandEncodeError::TileCount(count) => write!(
                f,
                "a tile request names 1 to {MAX_TILES_PER_REQUEST} tiles, not {count}"
            ),
            CommandEncodeError::TooLarge => {
                f.write_str("command exceeds its byte budget or buffer")
            }
        }
    }
}

impl core::error::Error for CommandEncodeError {}

/// Why a command was rejected, in the order the checks run. Each names the layer that refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandError {
    /// Space packet layer: shorter than [`MIN_COMMAND_LEN`] or than its length field says, or
    /// longer than [`MAX_COMMAND_LEN`].
    Length { found: usize },
    /// Space packet layer: not an unsegmented telecommand with a secondary header, or its length
    /// field disagrees with the bytes.
    NotTelecommand,
    /// PUS layer: a secondary header other than PUS-C's.
    PusVersion(u8),
    /// Integrity layer: the CRC-16 does not match (corruption).
    BadCrc,
    /// PUS layer: a service other than [`TASKING_SERVICE`].
    UnknownService(u8),
    /// PUS layer: a subtype no command has.
    UnknownCommand(u8),
    /// orbhash layer: an application-data version this board does not know.
    UnsupportedVersion(u8),
    /// Authentication layer: the MAC does not verify (forgery or wrong key; the CRC passed).
    BadMac,
    /// Replay layer: the position is not above the last accepted one.
    Replayed {
        position: StreamPosition,
        last: StreamPosition,
    },
    /// orbhash layer: an authenticated body that breaks its layout (a ground software bug).
    Malformed,
}

impl core::fmt::Display for CommandError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CommandError::Length { found } => write!(
                f,
                "command of {found} bytes: not {MIN_COMMAND_LEN}..={MAX_COMMAND_LEN} or not its \
                 declared length"
            ),
            CommandError::NotTelecommand => {
                f.write_str("not an unsegmented telecommand packet with a PUS secondary header")
            }
            CommandError::PusVersion(version) => {
                write!(f, "PUS version {version} (only PUS-C, 2, is read)")
            }
            CommandError::BadCrc => f.write_str("CRC-16 mismatch (corrupted command)"),
            CommandError::UnknownService(service) => write!(
                f,
                "PUS service {service} (orbhash commands are service {TASKING_SERVICE})"
            ),
            CommandError::UnknownCommand(subtype) => write!(f, "unknown command subtype {subtype}"),
            CommandError::UnsupportedVersion(version) => {
                write!(
                    f,
                    "command format version {version} (this board reads {COMMAND_VERSION})"
                )
            }
            CommandError::BadMac => f.write_str("MAC does not verify (forged, or another key)"),
            CommandError::Replayed { position, last } => write!(
                f,
                "replayed command: stream position {}.{} is not above the last accepted {}.{}",
                position.epoch, position.counter, last.epoch, last.counter
            ),
            CommandError::Malformed => f.write_str("authenticated command body breaks its layout"),
        }
    }
}

impl core::error::Error for CommandError {}

/// Writes one command into `out` and returns its length.
pub fn encode_command(
    header: &CommandHeader,
    command: &Command<'_>,
    key: &MacKey,
    out: &mut [u8],
) -> Result<usize, CommandEncodeError> {
    if header.apid > MAX_APID {
        return Err(CommandEncodeError::InvalidApid(header.apid));
    }
    // Application data: version, position, body, then room for the MAC.
    let mut app_data = [0u8; MAX_COMMAND_LEN];
    let mut writer = SliceWriter::new(&mut app_data);
    writer.put_u8(COMMAND_VERSION)?;
    writer.put_bytes(&header.position.epoch.to_be_bytes())?;
    writer.put_bytes(&header.position.counter.to_be_bytes())?;
    command.write_body(&mut writer)?;
    writer.put_bytes(&[0u8; MAC_LEN])?;
    let app_len = writer.len();
    let total = PRIMARY_HEADER_LEN + PUS_TC_HEADER_LEN + app_len + CRC16_LEN;
    if total > MAX_COMMAND_LEN || total > out.len() {
        return Err(CommandEncodeError::TooLarge);
    }
    let app_data = app_data
        .get_mut(..app_len)
        .ok_or(CommandEncodeError::TooLarge)?;
    // The raw packet id: the creator sets the type and secondary-header bits itself.
    let sequence_control = PacketSequenceControl::from(
        (SequenceFlags::Unsegmented as u16) << 14 | (header.sequence_count % SEQUENCE_MODULUS),
    );
    let sp_header = SpHeader::new(PacketId::from(header.apid), sequence_control, 0);
    let secondary = PusTcSecondaryHeader::new(
        MessageTypeId::new(TASKING_SERVICE, command.subtype()),
        // Acceptance, start, progress and completion reports requested.
        ACK_ALL,
        header.source,
    );
    // First pass with a zero MAC lays out every byte the MAC covers; the second writes the MAC
    // into the application data and lets the creator compute the CRC over the final bytes.
    let written = PusTcCreator::new(sp_header, secondary, app_data, CreatorConfig::default())
        .write_to_slice(out)
        .map_err(|_| CommandEncodeError::TooLarge)?;
    let mac_end = written
        .checked_sub(CRC16_LEN)
        .ok_or(CommandEncodeError::TooLarge)?;
    let mac_start = mac_end
        .checked_sub(MAC_LEN)
        .ok_or(CommandEncodeError::TooLarge)?;
    let tag = key.tag_parts(&[
        MAC_DOMAIN,
        out.get(..mac_start).ok_or(CommandEncodeError::TooLarge)?,
    ]);
    let app_mac_start = app_len - MAC_LEN;
    app_data
        .get_mut(app_mac_start..)
        .ok_or(CommandEncodeError::TooLarge)?
        .copy_from_slice(&tag);
    PusTcCreator::new(sp_header, secondary, app_data, CreatorConfig::default())
        .write_to_slice(out)
        .map_err(|_| CommandEncodeError::TooLarge)
}

/// Checks one command packet (all of it, nothing after) under `key` and reads it. Replay is the
/// [`CommandGate`]'s to judge: this only authenticates.
pub fn decode_command<'a>(
    packet: &'a [u8],
    key: &MacKey,
) -> Result<(CommandHeader, Command<'a>), CommandError> {
    let found = packet.len();
    if !(MIN_COMMAND_LEN..=MAX_COMMAND_LEN).contains(&found) {
        return Err(CommandError::Length { found });
    }
    let (primary, _) =
        SpHeader::from_be_bytes(packet).map_err(|_| CommandError::Length { found })?;
    if primary.packet_len() != found {
        return Err(CommandError::Length { found });
    }
    let apid = primary.packet_id.raw() & 0x7FF;
    let is_telecommand = primary.version.value() == 0
        && primary.packet_id.packet_type == PacketType::Tc
        && primary.packet_id.sec_header_flag
        && primary.psc.seq_flags == SequenceFlags::Unsegmented
        && apid <= MAX_APID;
    if !is_telecommand {
        return Err(CommandError::NotTelecommand);
    }
    let version_and_ack = *packet
        .get(PRIMARY_HEADER_LEN)
        .ok_or(CommandError::Length { found })?;
    if version_and_ack >> 4 != PUS_C {
        return Err(CommandError::PusVersion(version_and_ack >> 4));
    }
    let reader = PusTcReader::new(packet).map_err(|error| match error {
        spacepackets::ecss::PusError::ChecksumFailure(_) => CommandError::BadCrc,
        _ => CommandError::Length { found },
    })?;
    if PusPacket::service_type_id(&reader) != TASKING_SERVICE {
        return Err(CommandError::UnknownService(PusPacket::service_type_id(
            &reader,
        )));
    }
    let subtype = PusPacket::message_subtype_id(&reader);
    if !matches!(
        subtype,
        SUBTYPE_REQUEST_TILES | SUBTYPE_CANCEL_REQUEST | SUBTYPE_SET_RETENTION
    ) {
        return Err(CommandError::UnknownCommand(subtype));
    }
    let app_data = reader.app_data();
    let version = *app_data.first().ok_or(CommandError::Length { found })?;
    if version != COMMAND_VERSION {
        return Err(CommandError::UnsupportedVersion(version));
    }
    let mac_end = found - CRC16_LEN;
    let mac_start = mac_end - MAC_LEN;
    let (covered, tag) = (
        packet
            .get(..mac_start)
            .ok_or(CommandError::Length { found })?,
        packet
            .get(mac_start..mac_end)
            .ok_or(CommandError::Length { found })?,
    );
    if !key.verify_parts(&[MAC_DOMAIN, covered], tag) {
        return Err(CommandError::BadMac);
    }
    let body_end = app_data
        .len()
        .checked_sub(MAC_LEN)
        .ok_or(CommandError::Length { found })?;
    let mut fields = Reader::new(
        app_data
            .get(1..body_end)
            .ok_or(CommandError::Length { found })?,
    );
    let malformed = |_: ReadError| CommandError::Malformed;
    let position = StreamPosition {
        epoch: u32::from_be_bytes(fields.array::<4>().map_err(malformed)?),
        counter: u32::from_be_bytes(fields.array::<4>().map_err(malformed)?),
    };
    let command = read_body(subtype, &mut fields)?;
    if fields.remaining() != 0 {
        return Err(CommandError::Malformed);
    }
    let header = CommandHeader {
        apid,
        sequence_count: primary.psc.raw() & (SEQUENCE_MODULUS - 1),
        source: GenericPusTcSecondaryHeader::source_id(&reader),
        position,
    };
    Ok((header, command))
}

fn read_body<'a>(subtype: u8, fields: &mut Reader<'a>) -> Result<Command<'a>, CommandError> {
    let malformed = |_: ReadError| CommandError::Malformed;
    Ok(match subtype {
        SUBTYPE_REQUEST_TILES => {
            let request = fields.varint::<u32>().map_err(malformed)?;
            let count = fields.varint::<u16>().map_err(malformed)?;
            if !(1..=MAX_TILES_PER_REQUEST).contains(&count) {
                return Err(CommandError::Malformed);
            }
            // Validate every tile now, so that iterating later cannot fail.
            let mut start = fields.clone();
            let before = fields.remaining();
            for _ in 0..count {
                fields.varint::<u32>().map_err(malformed)?;
                fields.varint::<u32>().map_err(malformed)?;
            }
            let bytes = start
                .bytes(before - fields.remaining())
                .map_err(malformed)?;
            Command::RequestTiles {
                request,
                tiles: TileList::Encoded { count, bytes },
            }
        }
        SUBTYPE_CANCEL_REQUEST => Command::CancelRequest {
            request: fields.varint::<u32>().map_err(malformed)?,
        },
        SUBTYPE_SET_RETENTION => Command::SetRetention(RetentionPolicy {
            capacity_bytes: fields.varint::<u64>().map_err(malformed)?,
            max_age_s: fields.varint::<u32>().map_err(malformed)?,
        }),
        other => return Err(CommandError::UnknownCommand(other)),
    })
}

/// Every command the board has seen, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CommandStats {
    pub accepted: u64,
    /// Wrong length, not a telecommand, or another PUS version.
    pub malformed: u64,
    pub corrupted: u64,
    /// Another service, subtype or format version.
    pub unknown: u64,
    pub forged: u64,
    pub replayed: u64,
}

impl CommandStats {
    pub fn rejected(&self) -> u64 {
        self.malformed + self.corrupted + self.unknown + self.forged + self.replayed
    }

    fn count(&mut self, error: &CommandError) {
        let counter = match error {
            CommandError::Length { .. }
            | CommandError::NotTelecommand
            | CommandError::PusVersion(_)
            | CommandError::Malformed => &mut self.malformed,
            CommandError::BadCrc => &mut self.corrupted,
            CommandError::UnknownService(_)
            | CommandError::UnknownCommand(_)
            | CommandError::UnsupportedVersion(_) => &mut self.unknown,
            CommandError::BadMac => &mut self.forged,
            CommandError::Replayed { .. } => &mut self.replayed,
        };
        *counter = counter.saturating_add(1);
    }
}

/// The board's door for commands: authenticates each one, refuses any at or below the last
/// accepted stream position, and counts every outcome. The board persists
/// [`CommandGate::last_accepted`] before acting on a command and resumes from it after a restart,
/// so a command is acted on at most once.
#[derive(Debug, Clone)]
pub struct CommandGate {
    key: MacKey,
    last: Option<StreamPosition>,
    stats: CommandStats,
}

impl CommandGate {
    /// A gate that has accepted nothing (`last` = `None`) or resumes after `last`.
    pub fn new(key: MacKey, last: Option<StreamPosition>) -> Self {
        Self {
            key,
            last,
            stats: CommandStats::default(),
        }
    }

    pub fn last_accepted(&self) -> Option<StreamPosition> {
        self.last
    }

    pub fn stats(&self) -> &CommandStats {
        &self.stats
    }

    /// Accepts `packet` if it is an authentic command above the last accepted position.
    pub fn admit<'a>(
        &mut self,
        packet: &'a [u8],
    ) -> Result<(CommandHeader, Command<'a>), CommandError> {
        let outcome =
            decode_command(packet, &self.key).and_then(|(header, command)| match self.last {
                Some(last) if header.position <= last => Err(CommandError::Replayed {
                    position: header.position,
                    last,
                }),
                _ => Ok((header, command)),
            });
        match &outcome {
            Ok((header, _)) => {
                self.last = Some(header.position);
                self.stats.accepted = self.stats.accepted.saturating_add(1);
            }
            Err(error) => self.stats.count(error),
        }
        outcome
    }
}

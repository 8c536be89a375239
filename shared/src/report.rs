//! Board reports: what the board tells the ground about itself, as ECSS PUS-C telemetry packets
//! (CCSDS space packets with the PUS TM secondary header, built and checked with `spacepackets`).
//!
//! Reports travel in `reports-*.bin` files through the acknowledged delivery (CFDP, every PDU
//! under the mission key's MAC), so they carry no MAC of their own and are kept on board until
//! the ground has committed them. Byte layout (FORMAT.md has the same with a worked example):
//!
//! ```text
//! primary header   6 B   CCSDS, big-endian: version 000, type 0 (TM), sec. header 1, APID,
//!                        sequence flags 11 (unsegmented), sequence count (14 bits),
//!                        data length = packet length - 7
//! PUS-C TM header 15 B   PUS version 2 (4 bits) | time reference status 0 (4 bits);
//!                        service; subtype; message counter u16 BE; destination id u16 BE (0);
//!                        time: Unix milliseconds u64 BE (the board's clock)
//! source data            the report's fields, below
//! CRC              2 B   CRC-16/CCITT-FALSE over every byte before it, big-endian (PUS)
//! ```
//!
//! | service, subtype | report | source data |
//! |---|---|---|
//! | 1, 7 | [`Report::Executed`]: a telecommand carried out | request id: the TC's packet id u16 BE and sequence control u16 BE (PUS); its stream position: epoch u32 BE, counter u32 BE |
//! | 5, 1 | [`Report::SceneEvicted`]: a scene left the on-board store | event id u16 BE = 1; scene id u32 BE; bytes u64 BE; cause u8 (1 capacity, 2 age) |

use spacepackets::ecss::tm::{
    GenericPusTmSecondaryHeader, PusTmCreator, PusTmReader, PusTmSecondaryHeader,
};
use spacepackets::ecss::{CreatorConfig, MessageTypeId, PusPacket};
use spacepackets::{
    CcsdsPacket, PacketId, PacketSequenceControl, PacketType, SequenceFlags, SpHeader,
};

use crate::command::{CommandHeader, StreamPosition};
use crate::packet::{MAX_APID, PRIMARY_HEADER_LEN, SEQUENCE_MODULUS};
use crate::wire::{ReadError, Reader, SliceWriter};

/// Bytes of the time field: Unix milliseconds, big-endian.
pub const REPORT_TIME_LEN: usize = 8;
/// The PUS-C TM secondary header with that time field.
pub const PUS_TM_HEADER_LEN: usize = 7 + REPORT_TIME_LEN;
const CRC16_LEN: usize = 2;
/// Room for the largest report.
pub const MAX_REPORT_LEN: usize = PRIMARY_HEADER_LEN + PUS_TM_HEADER_LEN + 32 + CRC16_LEN;

const VERIFICATION_SERVICE: u8 = 1;
const COMPLETION_SUCCESS: u8 = 7;
const EVENT_SERVICE: u8 = 5;
const INFORMATIVE_EVENT: u8 = 1;
const EVENT_SCENE_EVICTED: u16 = 1;

/// Why a scene left the on-board store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvictionCause {
    /// The store was over its capacity; the oldest scene went first.
    Capacity,
    /// Older than the policy's maximum age.
    Age,
}

impl EvictionCause {
    fn code(self) -> u8 {
        match self {
            EvictionCause::Capacity => 1,
            EvictionCause::Age => 2,
        }
    }

    fn of_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(EvictionCause::Capacity),
            2 => Some(EvictionCause::Age),
            _ => None,
        }
    }
}

/// The PUS request id of a telecommand: its packet id and sequence control words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId {
    pub packet_id: u16,
    pub sequence_control: u16,
}

impl RequestId {
    /// The request id of the telecommand `header` describes (as [`crate::encode_command`] builds it).
    pub fn of_command(header: &CommandHeader) -> Self {
        // Version 000, type 1 (TC), secondary header flag 1, then the APID.
        let packet_id = 0x1800 | (header.apid & MAX_APID);
        let sequence_control =
            (SequenceFlags::Unsegmented as u16) << 14 | (header.sequence_count % SEQUENCE_MODULUS);
        Self {
            packet_id,
            sequence_control,
        }
    }
}

/// One report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// TM[1,7]: the telecommand at `position` was carried out.
    Executed {
        request: RequestId,
        position: StreamPosition,
    },
    /// TM[5,1]: a scene was evicted from the on-board store; its tiles can no longer be tasked.
    SceneEvicted {
        scene_id: u32,
        bytes: u64,
        cause: EvictionCause,
    },
}

impl Report {
    fn message_type(&self) -> MessageTypeId {
        match self {
            Report::Executed { .. } => MessageTypeId::new(VERIFICATION_SERVICE, COMPLETION_SUCCESS),
            Report::SceneEvicted { .. } => MessageTypeId::new(EVENT_SERVICE, INFORMATIVE_EVENT),
        }
    }
}

/// The header fields of a report packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportHeader {
    pub apid: u16,
    /// CCSDS sequence count, wrapping at 2^14.
    pub sequence_count: u16,
    /// PUS message counter (per service in PUS; here one counter for all, wrapping).
    pub message_counter: u16,
    /// The board's clock when the report was made.
    pub time_unix_ms: u64,
}

/// Why a report could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportEncodeError {
    InvalidApid(u16),
    /// `out` is too small (at most [`MAX_REPORT_LEN`] is needed).
    TooLarge,
}

/// Why bytes are not a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportError {
    /// Fewer bytes than the packet's header or its declared length.
    Truncated,
    /// Not an unsegmented telemetry packet with a PUS-C secondary header.
    NotTelemetry,
    BadCrc,
    /// A service/subtype this format does not define.
    UnknownReport {
        service: u8,
        subtype: u8,
    },
    /// Source data that breaks its report's layout.
    Malformed,
}

impl core::fmt::Display for ReportError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ReportError::Truncated => f.write_str("truncated report packet"),
            ReportError::NotTelemetry => f.write_str("not an unsegmented PUS-C telemetry packet"),
            ReportError::BadCrc => f.write_str("CRC-16 mismatch (corrupted report)"),
            ReportError::UnknownReport { service, subtype } => {
                write!(f, "unknown report TM[{service},{subtype}]")
            }
            ReportError::Malformed => f.write_str("report data breaks its layout"),
        }
    }
}

impl core::error::Error for ReportError {}

/// Writes one report into `out` and returns its length.
pub fn encode_report(
    header: &ReportHeader,
    report: &Report,
    out: &mut [u8],
) -> Result<usize, ReportEncodeError> {
    if header.apid > MAX_APID {
        return Err(ReportEncodeError::InvalidApid(header.apid));
    }
    let mut data = [0u8; 32];
    let mut writer = SliceWriter::new(&mut data);
    let full = |_| ReportEncodeError::TooLarge;
    match *report {
        Report::Executed { request, position } => {
            writer
                .put_bytes(&request.packet_id.to_be_bytes())
                .map_err(full)?;
            writer
                .put_bytes(&request.sequence_control.to_be_bytes())
                .map_err(full)?;
            writer
                .put_bytes(&position.epoch.to_be_bytes())
                .map_err(full)?;
            writer
                .put_bytes(&position.counter.to_be_bytes())
                .map_err(full)?;
        }
        Report::SceneEvicted {
            scene_id,
            bytes,
            cause,
        } => {
            writer
                .put_bytes(&EVENT_SCENE_EVICTED.to_be_bytes())
                .map_err(full)?;
            writer.put_bytes(&scene_id.to_be_bytes()).map_err(full)?;
            writer.put_bytes(&bytes.to_be_bytes()).map_err(full)?;
            writer.put_u8(cause.code()).map_err(full)?;
        }
    }
    let len = writer.len();
    let data = data.get(..len).ok_or(ReportEncodeError::TooLarge)?;
    let sequence_control = PacketSequenceControl::from(
        (SequenceFlags::Unsegmented as u16) << 14 | (header.sequence_count % SEQUENCE_MODULUS),
    );
    let sp_header = SpHeader::new(PacketId::from(header.apid), sequence_control, 0);
    let time = header.time_unix_ms.to_be_bytes();
    let secondary =
        PusTmSecondaryHeader::new(report.message_type(), header.message_counter, 0, &time);
    PusTmCreator::new(sp_header, secondary, data, CreatorConfig::default())
        .write_to_slice(out)
        .map_err(|_| ReportEncodeError::TooLarge)
}

/// Reads the report at the start of `bytes`; returns it and the packet's length (reports are
/// stored back to back).
pub fn decode_report(bytes: &[u8]) -> Result<(ReportHeader, Report, usize), ReportError> {
    let (primary, _) = SpHeader::from_be_bytes(bytes).map_err(|_| ReportError::Truncated)?;
    let len = primary.packet_len();
    let packet = bytes.get(..len).ok_or(ReportError::Truncated)?;
    let is_telemetry = primary.version.value() == 0
        && primary.packet_id.packet_type == PacketType::Tm
        && primary.packet_id.sec_header_flag
        && primary.psc.seq_flags == SequenceFlags::Unsegmented
        && packet.get(PRIMARY_HEADER_LEN).is_some_and(|b| b >> 4 == 2);
    if !is_telemetry {
        return Err(ReportError::NotTelemetry);
    }
    let reader = PusTmReader::new(packet, REPORT_TIME_LEN).map_err(|error| match error {
        spacepackets::ecss::PusError::ChecksumFailure(_) => ReportError::BadCrc,
        _ => ReportError::Truncated,
    })?;
    let time = reader
        .timestamp()
        .try_into()
        .map_err(|_| ReportError::Malformed)?;
    let header = ReportHeader {
        apid: reader.apid().value(),
        sequence_count: reader.seq_count().value(),
        message_counter: GenericPusTmSecondaryHeader::msg_type_counter(&reader),
        time_unix_ms: u64::from_be_bytes(time),
    };
    let (service, subtype) = (
        PusPacket::service_type_id(&reader),
        PusPacket::message_subtype_id(&reader),
    );
    let mut fields = Reader::new(reader.source_data());
    let malformed = |_: ReadError| ReportError::Malformed;
    let report = match (service, subtype) {
        (VERIFICATION_SERVICE, COMPLETION_SUCCESS) => Report::Executed {
            request: RequestId {
                packet_id: u16::from_be_bytes(fields.array().map_err(malformed)?),
                sequence_control: u16::from_be_bytes(fields.array().map_err(malformed)?),
            },
            position: StreamPosition {
                epoch: u32::from_be_bytes(fields.array().map_err(malformed)?),
                counter: u32::from_be_bytes(fields.array().map_err(malformed)?),
            },
        },
        (EVENT_SERVICE, INFORMATIVE_EVENT) => {
            if u16::from_be_bytes(fields.array().map_err(malformed)?) != EVENT_SCENE_EVICTED {
                return Err(ReportError::Malformed);
            }
            Report::SceneEvicted {
                scene_id: u32::from_be_bytes(fields.array().map_err(malformed)?),
                bytes: u64::from_be_bytes(fields.array().map_err(malformed)?),
                cause: EvictionCause::of_code(fields.u8().map_err(malformed)?)
                    .ok_or(ReportError::Malformed)?,
            }
        }
        _ => return Err(ReportError::UnknownReport { service, subtype }),
    };
    if fields.remaining() != 0 {
        return Err(ReportError::Malformed);
    }
    Ok((header, report, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> ReportHeader {
        ReportHeader {
            apid: 0x42,
            sequence_count: 9,
            message_counter: 3,
            time_unix_ms: 1_796_000_000_123,
        }
    }

    fn reports() -> [Report; 2] {
        [
            Report::Executed {
                request: RequestId::of_command(&CommandHeader {
                    apid: 0x42,
                    sequence_count: 17,
                    source: 7,
                    position: StreamPosition {
                        epoch: 2,
                        counter: 31,
                    },
                }),
                position: StreamPosition {
                    epoch: 2,
                    counter: 31,
                },
            },
            Report::SceneEvicted {
                scene_id: 0xdead_beef,
                bytes: 1 << 33,
                cause: EvictionCause::Age,
            },
        ]
    }

    #[test]
    fn reports_round_trip_back_to_back() {
        let mut stream = [0u8; 2 * MAX_REPORT_LEN];
        let mut at = 0;
        for report in reports() {
            at += encode_report(&header(), &report, &mut stream[at..]).unwrap();
        }
        let mut read = 0;
        for expected in reports() {
            let (found_header, report, len) = decode_report(&stream[read..at]).unwrap();
            assert_eq!(found_header, header());
            assert_eq!(report, expected);
            read += len;
        }
        assert_eq!(read, at);
    }

    #[test]
    fn every_damaged_or_short_report_is_refused_never_misread() {
        let mut packet = [0u8; MAX_REPORT_LEN];
        let len = encode_report(&header(), &reports()[1], &mut packet).unwrap();
        for cut in 0..len {
            assert!(decode_report(&packet[..cut]).is_err(), "cut at {cut}");
        }
        for byte in 0..len {
            for bit in 0..8 {
                let mut damaged = packet;
                damaged[byte] ^= 1 << bit;
                if let Ok((_, report, _)) = decode_report(&damaged[..len]) {
                    // Only a flip the CRC cannot see may pass, and none exists for one bit.
                    panic!("byte {byte} bit {bit} read as {report:?}");
                }
            }
        }
    }

    #[test]
    fn the_request_id_is_the_one_the_telecommand_carries() {
        let header = CommandHeader {
            apid: 0x42,
            sequence_count: 17,
            source: 7,
            position: StreamPosition {
                epoch: 1,
                counter: 5,
            },
        };
        let key = crate::MacKey::new([7u8; 32]);
        let mut packet = [0u8; crate::MAX_COMMAND_LEN];
        let len = crate::encode_command(
            &header,
            &crate::Command::CancelRequest { request: 3 },
            &key,
            &mut packet,
        )
        .unwrap();
        let id = RequestId::of_command(&header);
        assert!(len > 4);
        assert_eq!(u16::from_be_bytes([packet[0], packet[1]]), id.packet_id);
        assert_eq!(
            u16::from_be_bytes([packet[2], packet[3]]),
            id.sequence_control
        );
    }
}

//! Link frames of the two-way link: what travels inside one COBS frame in either direction.
//!
//! On a two-way link (`orbhash-link`) each COBS frame carries one of two things, told apart by
//! the first byte's top three bits, which both standards fix:
//!
//! ```text
//! 000 . . . . .   a CCSDS space packet (version 0): a telecommand going up (see `command`)
//! 001 . . . . .   a CCSDS CFDP PDU (version 2, CCSDS 727.0-B-5): the delivery layer
//! ```
//!
//! A CFDP PDU travels as
//!
//! ```text
//! field           size   content
//! PDU             n B    the CFDP PDU as the standard lays it out, its CRC-16 flag set and the
//!                        CRC-16/CCITT-FALSE last (corruption shows there)
//! MAC             16 B   only with a mission key: HMAC-SHA-256 truncated to 16 bytes over
//!                        "orbhash-cfdp-1" followed by the n PDU bytes (forgery shows here)
//! ```
//!
//! The MAC is what keeps a forged Finished PDU from making the board forget records the ground
//! never stored. The PDU's own length field says where the MAC starts, so a frame with bytes
//! missing, extra or moved is refused by length before any MAC is computed.

use crate::packet::{MacKey, MAC_LEN};

const MAC_DOMAIN: &[u8] = b"orbhash-cfdp-1";
/// CFDP's fixed header: flags, data field length (2 B), field lengths, then entity ids and the
/// transaction sequence number, whose lengths the fourth byte gives.
const CFDP_FIXED_HEADER: usize = 4;

/// What a link frame carries, by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    SpacePacket,
    CfdpPdu,
}

/// The kind of a decoded frame; `None` for an empty frame or a version neither standard uses.
pub fn frame_kind(frame: &[u8]) -> Option<FrameKind> {
    match frame.first()? >> 5 {
        0 => Some(FrameKind::SpacePacket),
        1 => Some(FrameKind::CfdpPdu),
        _ => None,
    }
}

/// Why a CFDP link frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PduFrameError {
    /// Shorter than its header says, or longer than the PDU and its MAC.
    Length { found: usize, expected: usize },
    /// The MAC does not verify under the mission key.
    BadMac,
    /// Not a CFDP PDU (see [`frame_kind`]).
    NotCfdp,
}

impl core::fmt::Display for PduFrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PduFrameError::Length { found, expected } => {
                write!(f, "CFDP frame of {found} bytes, its header says {expected}")
            }
            PduFrameError::BadMac => f.write_str("CFDP frame MAC does not verify"),
            PduFrameError::NotCfdp => f.write_str("not a CFDP PDU"),
        }
    }
}

impl core::error::Error for PduFrameError {}

/// The PDU's length from its header, or `None` if too short to tell.
fn pdu_len(frame: &[u8]) -> Option<usize> {
    let [_, high, low, lengths]: [u8; CFDP_FIXED_HEADER] =
        frame.get(..CFDP_FIXED_HEADER)?.try_into().ok()?;
    let data_field = usize::from(u16::from_be_bytes([high, low]));
    // Entity id and sequence number lengths are stored minus one, in bits 6-4 and 2-0.
    let entity_len = usize::from((lengths >> 4) & 0x7) + 1;
    let sequence_len = usize::from(lengths & 0x7) + 1;
    Some(CFDP_FIXED_HEADER + 2 * entity_len + sequence_len + data_field)
}

/// The MAC that follows `pdu` on the link under `key`.
pub fn pdu_mac(key: &MacKey, pdu: &[u8]) -> [u8; MAC_LEN] {
    key.tag_parts(&[MAC_DOMAIN, pdu])
}

/// The PDU inside a link frame, checked for length and, with a key, authenticity. The PDU's
/// CRC-16 is the CFDP library's to check.
pub fn open_pdu_frame<'a>(
    frame: &'a [u8],
    key: Option<&MacKey>,
) -> Result<&'a [u8], PduFrameError> {
    if frame_kind(frame) != Some(FrameKind::CfdpPdu) {
        return Err(PduFrameError::NotCfdp);
    }
    let mac_len = if key.is_some() { MAC_LEN } else { 0 };
    let found = frame.len();
    let pdu_len = pdu_len(frame).ok_or(PduFrameError::Length {
        found,
        expected: CFDP_FIXED_HEADER,
    })?;
    let expected = pdu_len + mac_len;
    if found != expected {
        return Err(PduFrameError::Length { found, expected });
    }
    let (pdu, mac) = frame.split_at(pdu_len);
    match key {
        Some(key) if !key.verify_parts(&[MAC_DOMAIN, pdu], mac) => Err(PduFrameError::BadMac),
        _ => Ok(pdu),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A Finished PDU header: version 2 (001), directive, 1-byte ids and sequence number, with a
    // 3-byte data field, then 5 bytes of data field and CRC.
    const PDU: [u8; 10] = [0x24, 0x00, 0x03, 0x00, 0x01, 0x07, 0x02, 0x05, 0x12, 0x34];

    #[test]
    fn frames_are_told_apart_by_their_version_bits() {
        assert_eq!(frame_kind(&PDU), Some(FrameKind::CfdpPdu));
        assert_eq!(frame_kind(&[0x18, 0x00]), Some(FrameKind::SpacePacket));
        assert_eq!(frame_kind(&[0xE0]), None);
        assert_eq!(frame_kind(&[]), None);
    }

    #[test]
    fn a_sealed_pdu_opens_and_a_changed_one_does_not() {
        let key = MacKey::new([7; 32]);
        let mut frame = PDU.to_vec();
        frame.extend_from_slice(&pdu_mac(&key, &PDU));
        assert_eq!(open_pdu_frame(&frame, Some(&key)), Ok(&PDU[..]));
        assert_eq!(open_pdu_frame(&PDU, None), Ok(&PDU[..]));
        // Without its MAC, under a key: refused by length.
        assert!(matches!(
            open_pdu_frame(&PDU, Some(&key)),
            Err(PduFrameError::Length { .. })
        ));
        let mut forged = frame.clone();
        forged[7] ^= 1;
        assert_eq!(
            open_pdu_frame(&forged, Some(&key)),
            Err(PduFrameError::BadMac)
        );
        assert_eq!(
            open_pdu_frame(&frame, Some(&MacKey::new([8; 32]))),
            Err(PduFrameError::BadMac)
        );
        assert!(open_pdu_frame(&frame[..5], Some(&key)).is_err());
        assert!(open_pdu_frame(&[0x24], None).is_err());
    }
}

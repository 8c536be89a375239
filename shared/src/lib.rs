//! orbhash's wire types: what the satellite downlinks and the ground reads.
//!
//! `no_std` and allocation-free so the same code runs on a flight computer, a microcontroller
//! and the ground station; `std` extras sit behind the `std` feature.
//!
//! - A tile's hash is a [`Code`]; [`hamming`] compares two.
//! - What is downlinked for one tile is a [`Record`].
//! - Records travel in packets: CCSDS Space Packets built by [`encode_packet`] and checked by
//!   [`decode_packet`] (CRC-32C, optional truncated HMAC-SHA-256 under a [`MacKey`]).
//! - On byte streams each packet is a COBS frame ending in 0x00: [`PacketWriter`] writes them to an
//!   `embedded_io::Write`; [`Decoder`] reads any chunking of bytes back into [`Event`]s and counts
//!   losses, duplicates and replays ([`DecoderStats`], and per pass [`PassStats`]).
//!
//! - Commands flow back up as PUS telecommands ([`command`]): [`encode_command`] on the ground,
//!   [`CommandGate`] on the board (authenticated, replay-protected, every outcome counted).
//! - The board answers in PUS telemetry reports ([`report`]): commands carried out, scenes
//!   evicted from its store.
//!
//! The byte layout is in the [`packet`] module docs and in `FORMAT.md` beside this crate.
#![no_std]
// Everything here parses bytes off a radio link: no path may panic on what it reads.
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

#[cfg(feature = "std")]
extern crate std;

pub mod code;
pub mod command;
pub mod decoder;
pub mod delivery;
pub mod hex;
#[cfg(feature = "std")]
pub mod io;
pub mod packet;
pub mod record;
pub mod report;
mod wire;
pub mod writer;

pub use code::{
    hamming, hamming_words, is_supported_length, pack_words, words_for, Code, CodeError,
    SUPPORTED_BITS,
};
pub use command::{
    decode_command, encode_command, Command, CommandEncodeError, CommandError, CommandGate,
    CommandHeader, CommandStats, RetentionPolicy, StreamPosition, TileList, TileRef,
    MAX_COMMAND_LEN, MAX_TILES_PER_REQUEST,
};
pub use decoder::{
    Continuity, Decoder, DecoderStats, Event, FrameError, PassStats, Rejection, SequenceError,
    StreamDecoder,
};
pub use delivery::{frame_kind, open_pdu_frame, pdu_mac, FrameKind, PduFrameError};
#[cfg(feature = "std")]
pub use io::{decode_stream, OwnedEvent, StdIo};
pub use packet::{
    decode_packet, encode_packet, EncodeError, MacKey, Malformed, PacketContext, PacketError,
    PacketHeader, PacketView, Records, CRC32C, SEQUENCE_MODULUS,
};
pub use record::{
    confidence_probability, quantise_confidence, scene_id_of, MapCoordinates, ModelId, Record,
    TileGrid, TilePosition,
};
pub use report::{
    decode_report, encode_report, EvictionCause, Report, ReportEncodeError, ReportError,
    ReportHeader, RequestId, MAX_REPORT_LEN,
};
pub use writer::{encode_frame, PacketWriter, WriteError, WriterConfig, MAX_FRAME_LEN};

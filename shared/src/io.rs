//! `std` conveniences for the ground and for the edge on Linux.
//!
//! [`StdIo`] lets any `std::io::Read`/`Write` (file, TCP stream, serial port) drive the
//! `embedded_io` encoder and decoder. It is a dozen lines, so it lives here rather than pulling in
//! `embedded-io-adapters`, whose releases track embedded-io's and would add a second version to
//! keep in step.

use std::vec::Vec;

use crate::decoder::{Continuity, Decoder, DecoderStats, Event, Rejection};
use crate::packet::PacketHeader;
use crate::record::Record;

/// Adapts a `std::io` reader or writer to `embedded_io`.
#[derive(Debug)]
pub struct StdIo<T>(pub T);

impl<T> embedded_io::ErrorType for StdIo<T> {
    type Error = std::io::Error;
}

impl<T: std::io::Read> embedded_io::Read for StdIo<T> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, std::io::Error> {
        loop {
            match self.0.read(buf) {
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}

impl<T: std::io::Write> embedded_io::Write for StdIo<T> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, std::io::Error> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> Result<(), std::io::Error> {
        self.0.flush()
    }
}

/// An [`Event`] that owns its records, for code that keeps events past the next frame.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedEvent {
    Packet {
        header: PacketHeader,
        authenticated: bool,
        continuity: Continuity,
        records: Vec<Record>,
    },
    Rejected(Rejection),
}

impl From<Event<'_>> for OwnedEvent {
    fn from(event: Event<'_>) -> Self {
        match event {
            Event::Packet { packet, continuity } => OwnedEvent::Packet {
                header: packet.header,
                authenticated: packet.authenticated,
                continuity,
                records: packet.records().collect(),
            },
            Event::Rejected(rejection) => OwnedEvent::Rejected(rejection),
        }
    }
}

impl Decoder {
    /// Decodes all of `bytes` as a complete stream, ending it with [`Decoder::finish`].
    pub fn decode_all(&mut self, bytes: &[u8]) -> Vec<OwnedEvent> {
        let mut input = bytes;
        let mut events = Vec::new();
        while let Some(event) = self.feed(&mut input) {
            events.push(event.into());
        }
        if let Some(event) = self.finish() {
            events.push(event.into());
        }
        events
    }
}

/// Decodes a whole byte stream with a fresh decoder.
pub fn decode_stream(bytes: &[u8], decoder: Decoder) -> (Vec<OwnedEvent>, DecoderStats) {
    let mut decoder = decoder;
    let events = decoder.decode_all(bytes);
    (events, *decoder.stats())
}

//! The flight side: records in, COBS-framed space packets out to any `embedded_io::Write`.
//!
//! A frame on a byte stream is `COBS(packet) 0x00`. COBS removes every zero byte from the packet,
//! so 0x00 only ever marks a frame's end and a reader that lost its place (garbage, a dropped
//! byte) resynchronises at the next one. Overhead: one byte per 254 plus the delimiter.

use embedded_io::Write;

use crate::packet::{
    check_context, Batch, EncodeError, MacKey, PacketContext, MAX_PACKET_LEN, MAX_RECORDS,
    SEQUENCE_MODULUS,
};
use crate::record::Record;

/// Largest frame on a byte stream: a [`MAX_PACKET_LEN`] packet after COBS, plus the delimiter.
pub const MAX_FRAME_LEN: usize = cobs::max_encoding_length(MAX_PACKET_LEN) + 1;

/// COBS-encodes `packet` and appends the 0x00 delimiter; returns the frame's length.
pub fn encode_frame(packet: &[u8], out: &mut [u8]) -> Result<usize, EncodeError> {
    let encoded = cobs::try_encode(packet, out).map_err(|_| EncodeError::TooLarge)?;
    *out.get_mut(encoded).ok_or(EncodeError::TooLarge)? = 0;
    encoded.checked_add(1).ok_or(EncodeError::TooLarge)
}

/// How the flight software wants its records packed.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub context: PacketContext,
    /// A packet is sent as soon as it holds this many records (1..=MAX_RECORDS). Smaller packets
    /// lose fewer records to one corrupted bit and reach the ground sooner; larger ones spread the
    /// fixed ~35 bytes of header and trailer over more tiles.
    pub max_records: u16,
    /// A packet never exceeds this many bytes, primary header and trailers included, before
    /// COBS (at most MAX_PACKET_LEN).
    pub max_packet_len: usize,
    /// With a key, every packet carries a truncated HMAC-SHA-256.
    pub key: Option<MacKey>,
}

impl WriterConfig {
    /// 100 records per packet, 4096-byte packets, no MAC.
    pub fn new(context: PacketContext) -> Self {
        Self {
            context,
            max_records: 100,
            max_packet_len: MAX_PACKET_LEN,
            key: None,
        }
    }
}

/// Why a record could not be sent.
#[derive(Debug)]
pub enum WriteError<E> {
    Encode(EncodeError),
    /// The sink failed. The packet being written is dropped; its sequence count stays used, so
    /// the ground sees the loss as a gap.
    Io(E),
}

impl<E: core::fmt::Debug> core::fmt::Display for WriteError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WriteError::Encode(error) => write!(f, "encoding: {error}"),
            WriteError::Io(error) => write!(f, "writing the frame: {error:?}"),
        }
    }
}

impl<E: core::fmt::Debug> core::error::Error for WriteError<E> {}

impl<E> From<EncodeError> for WriteError<E> {
    fn from(error: EncodeError) -> Self {
        WriteError::Encode(error)
    }
}

/// Packs records into packets and writes each full packet as a frame.
///
/// A packet is sent when it reaches `max_records`, when the next record would push it past
/// `max_packet_len`, when the next record belongs to another scene, or on [`flush`](Self::flush).
/// Sequence counts start at 0 and wrap at 2^14.
///
/// Holds three 4 KiB buffers (records, packet, frame): place it in a `static` on small targets.
pub struct PacketWriter {
    config: WriterConfig,
    next_sequence_count: u16,
    batch: Option<Batch>,
    packet: [u8; MAX_PACKET_LEN],
    frame: [u8; MAX_FRAME_LEN],
}

impl PacketWriter {
    pub fn new(config: WriterConfig) -> Result<Self, EncodeError> {
        check_context(&config.context)?;
        if config.max_records == 0 || config.max_records > MAX_RECORDS {
            return Err(EncodeError::TooManyRecords);
        }
        if config.max_packet_len > MAX_PACKET_LEN {
            return Err(EncodeError::TooLarge);
        }
        Ok(Self {
            config,
            next_sequence_count: 0,
            batch: None,
            packet: [0; MAX_PACKET_LEN],
            frame: [0; MAX_FRAME_LEN],
        })
    }

    pub fn config(&self) -> &WriterConfig {
        &self.config
    }

    /// The sequence count the next packet will carry.
    pub fn next_sequence_count(&self) -> u16 {
        self.next_sequence_count
    }

    /// Continues a sequence after a restart: the next packet carries `next` (mod 2^14), so counts
    /// already downlinked before the restart are not reused.
    pub fn resume_sequence_count(&mut self, next: u16) {
        self.next_sequence_count = next % SEQUENCE_MODULUS;
    }

    /// Records waiting in the current, unsent packet.
    pub fn pending_records(&self) -> u16 {
        self.batch.as_ref().map_or(0, Batch::len)
    }

    /// Adds a record; writes zero, one or two frames (the packet it closed, and its own if that
    /// filled up). Returns how many frames were written.
    pub fn push<W: Write>(
        &mut self,
        record: &Record,
        sink: &mut W,
    ) -> Result<usize, WriteError<W::Error>> {
        if record.code.bits() != self.config.context.code_bits {
            return Err(WriteError::Encode(EncodeError::CodeLengthMismatch {
                expected: self.config.context.code_bits,
                found: record.code.bits(),
            }));
        }
        let mut written = 0;
        if self
            .batch
            .as_ref()
            .is_some_and(|batch| batch.scene_id() != record.position.scene_id)
        {
            written += usize::from(self.flush(sink)?);
        }
        let mac = self.config.key.is_some();
        let budget = self.config.max_packet_len;
        let batch = self.batch.get_or_insert_with(|| Batch::new(record));
        match batch.push(&self.config.context, record, budget, mac) {
            Ok(()) => {}
            Err(EncodeError::TooLarge) if batch.len() > 0 => {
                written += usize::from(self.flush(sink)?);
                let batch = self.batch.insert(Batch::new(record));
                if let Err(error) = batch.push(&self.config.context, record, budget, mac) {
                    self.batch = None;
                    return Err(WriteError::Encode(error));
                }
            }
            Err(error) => {
                if batch.len() == 0 {
                    self.batch = None;
                }
                return Err(WriteError::Encode(error));
            }
        }
        if self.pending_records() >= self.config.max_records {
            written += usize::from(self.flush(sink)?);
        }
        Ok(written)
    }

    /// Sends the pending packet, if any. Returns whether a frame was written.
    pub fn flush<W: Write>(&mut self, sink: &mut W) -> Result<bool, WriteError<W::Error>> {
        let Some(batch) = self.batch.take() else {
            return Ok(false);
        };
        let sequence_count = self.next_sequence_count;
        self.next_sequence_count = (sequence_count + 1) % SEQUENCE_MODULUS;
        let packet_len = batch.finish(
            &self.config.context,
            sequence_count,
            self.config.key.as_ref(),
            &mut self.packet,
        )?;
        let packet = self.packet.get(..packet_len).ok_or(EncodeError::TooLarge)?;
        let frame_len = encode_frame(packet, &mut self.frame)?;
        let frame = self.frame.get(..frame_len).ok_or(EncodeError::TooLarge)?;
        sink.write_all(frame).map_err(WriteError::Io)?;
        Ok(true)
    }

    /// Starts a new pass: sends what is pending under the old epoch, then stamps `epoch` on every
    /// later packet. The epoch must grow (see `Decoder` on replay).
    pub fn start_epoch<W: Write>(
        &mut self,
        epoch: u32,
        sink: &mut W,
    ) -> Result<(), WriteError<W::Error>> {
        self.flush(sink)?;
        self.config.context.epoch = epoch;
        Ok(())
    }
}

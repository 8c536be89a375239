//! The store-and-forward queue: downlink frames wait on disk until the link takes them.
//!
//! On orbit the link is up only during ground passes, so every frame is first made durable here
//! and leaves the queue only after it has been written to a one-way link, or, on a two-way link,
//! only after the ground has acknowledged it (see `crate::contact`). Layout of the queue
//! directory:
//!
//! - `segment-<n>.log`: entries `[u32 LE payload length][u32 LE CRC-32C of payload][payload]`,
//!   the payload being one COBS frame exactly as it goes on the link. Appended and fsynced per
//!   entry; a torn last entry (crash mid-write) fails its length or CRC and is cut off at open.
//!   A new segment starts past [`SEGMENT_BYTES`].
//! - `cursor`: `<segment> <offset>` of the first unsent entry, replaced atomically (write, fsync,
//!   rename) after each send. A crash between a send and the cursor update sends that frame again;
//!   the ground drops it as a duplicate by its sequence count.
//! - `journal.log`: `<scene id> <tile id>` of every record in a segment that has been sent (or
//!   dropped) completely, written and fsynced before the segment is deleted, plus `seq <n>` lines:
//!   with the records still in segments, this tells a restarted run which tiles are already done
//!   and which sequence count comes next, so none is hashed twice or reused.
//! - `epoch`: the pass/boot counter, raised at every open (the wire's epoch must grow at every
//!   reboot).
//! - `screened.log` (only with `--drop-label`): tiles screened out instead of queued, kept by
//!   [`crate::screen`], not by the queue.
//!
//! Bounded size: when the unsent bytes exceed the limit, the oldest whole segment is dropped
//! (oldest-first: on a long outage the newest observations are worth more), its records are
//! journalled as done and counted as dropped, and the ground sees the sequence gap.

use std::collections::{HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use orbhash_wire::{Decoder, OwnedEvent};

/// A segment is closed and a new one started once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 64 * 1024;
const ENTRY_HEADER: u64 = 8;
// The wire format's CRC-32C, so packets and queue entries share one definition.
use orbhash_wire::{CRC32C, SEQUENCE_MODULUS};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("queue {}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> QueueError + '_ {
    move |source| QueueError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a reopened queue knows of earlier runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recovery {
    /// (scene id, tile id) of every record queued by earlier runs, sent or not.
    pub done: HashSet<(u32, u32)>,
    /// Sequence count for the next packet.
    pub next_sequence_count: u16,
    /// Epoch for this run: one more than the last run's.
    pub epoch: u32,
    /// Frames waiting from earlier runs.
    pub pending_frames: usize,
    /// Bytes of a torn last entry cut off at open.
    pub truncated_bytes: u64,
}

/// Counters for the run summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    pub frames_queued: u64,
    pub frames_sent: u64,
    pub frames_dropped: u64,
    pub bytes_sent: u64,
}

/// A segment as read at open, with what its intact frames hold.
struct ScannedSegment {
    segment: Segment,
    truncated_bytes: u64,
    tiles: Vec<(u32, u32)>,
    last_sequence_count: Option<u16>,
}

/// The entries of a segment file with their offsets, up to the first torn or damaged one.
fn intact_entries(bytes: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    let mut offset = 0usize;
    std::iter::from_fn(move || {
        let header = bytes.get(offset..offset + ENTRY_HEADER as usize)?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let start = offset + ENTRY_HEADER as usize;
        let payload = bytes.get(start..start.checked_add(len)?)?;
        if CRC32C.checksum(payload) != crc {
            return None;
        }
        let entry = (offset as u64, payload);
        offset = start + len;
        Some(entry)
    })
}

struct Segment {
    number: u64,
    path: PathBuf,
    /// Entry offsets and lengths (payload only), in order.
    entries: VecDeque<(u64, u32)>,
    len: u64,
}

pub struct Queue {
    dir: PathBuf,
    max_bytes: u64,
    /// Oldest first; the last one is appended to.
    segments: VecDeque<Segment>,
    /// Unsent bytes (entries with headers).
    pending_bytes: u64,
    append: Option<File>,
    stats: QueueStats,
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("segment-{number:012}.log"))
}

/// Writes `contents` to `path` so that a crash leaves either the old or the new file.
fn replace_file(path: &Path, contents: &[u8]) -> Result<(), QueueError> {
    let partial = path.with_extension("partial");
    let mut file = File::create(&partial).map_err(io_error(&partial))?;
    file.write_all(contents).map_err(io_error(&partial))?;
    file.sync_all().map_err(io_error(&partial))?;
    std::fs::rename(&partial, path).map_err(io_error(path))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn sync_dir(dir: &Path) -> Result<(), QueueError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

/// (scene id, tile id, sequence count) of the records in one frame; nothing for a frame that does
/// not decode (it is still sent: the ground reports it).
fn frame_contents(frame: &[u8]) -> (Vec<(u32, u32)>, Option<u16>) {
    let mut tiles = Vec::new();
    let mut sequence = None;
    for event in Decoder::new().decode_all(frame) {
        if let OwnedEvent::Packet {
            header, records, ..
        } = event
        {
            sequence = Some(header.sequence_count);
            tiles.extend(
                records
                    .iter()
                    .map(|record| (record.position.scene_id, record.tile_id)),
            );
        }
    }
    (tiles, sequence)
}

impl Queue {
    /// Opens (or creates) the queue in `dir`, holding at most `max_bytes` unsent.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(Self, Recovery), QueueError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let mut recovery = Recovery::default();

        let epoch_path = dir.join("epoch");
        let last_epoch = match std::fs::read_to_string(&epoch_path) {
            Ok(text) => text
                .trim()
                .parse::<u32>()
                .map_err(|_| QueueError::Corrupt {
                    path: epoch_path.clone(),
                    reason: format!("{text:?} is not an epoch number"),
                })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
            Err(error) => return Err(io_error(&epoch_path)(error)),
        };
        recovery.epoch = last_epoch.wrapping_add(1);
        replace_file(&epoch_path, format!("{}\n", recovery.epoch).as_bytes())?;

        let mut last_sequence_count = None;
        let journal_path = dir.join("journal.log");
        if let Ok(file) = File::open(&journal_path) {
            for line in BufReader::new(file).lines() {
                let line = line.map_err(io_error(&journal_path))?;
                let mut fields = line.split_whitespace();
                match (fields.next(), fields.next()) {
                    (Some("seq"), Some(n)) => last_sequence_count = n.parse().ok(),
                    (Some(scene), Some(tile)) => {
                        if let (Ok(scene), Ok(tile)) = (scene.parse(), tile.parse()) {
                            recovery.done.insert((scene, tile));
                        }
                    }
                    // A torn last line from a crash mid-append: the segment it came from is
                    // still on disk, so its records are recovered from there.
                    _ => {}
                }
            }
        }

        let mut numbers: Vec<u64> = std::fs::read_dir(dir)
            .map_err(io_error(dir))?
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                name.strip_prefix("segment-")?
                    .strip_suffix(".log")?
                    .parse()
                    .ok()
            })
            .collect();
        numbers.sort_unstable();
        let mut segments = VecDeque::new();
        for number in numbers {
            let path = segment_path(dir, number);
            let scanned = Self::scan_segment(number, &path)?;
            recovery.truncated_bytes += scanned.truncated_bytes;
            recovery.done.extend(scanned.tiles);
            if scanned.last_sequence_count.is_some() {
                last_sequence_count = scanned.last_sequence_count;
            }
            let segment = scanned.segment;
            segments.push_back(segment);
        }

        // Entries before the cursor were sent.
        let cursor_path = dir.join("cursor");
        if let Ok(text) = std::fs::read_to_string(&cursor_path) {
            let mut fields = text.split_whitespace().map(str::parse::<u64>);
            if let (Some(Ok(number)), Some(Ok(offset))) = (fields.next(), fields.next()) {
                while segments.front().is_some_and(|s| s.number < number) {
                    segments.pop_front();
                }
                if let Some(front) = segments.front_mut().filter(|s| s.number == number) {
                    while front.entries.front().is_some_and(|e| e.0 < offset) {
                        front.entries.pop_front();
                    }
                }
            }
        }
        let pending_bytes = segments
            .iter()
            .flat_map(|s| s.entries.iter())
            .map(|&(_, len)| ENTRY_HEADER + u64::from(len))
            .sum();
        recovery.pending_frames = segments.iter().map(|s| s.entries.len()).sum();
        recovery.next_sequence_count = last_sequence_count.map_or(0, |n| {
            ((u32::from(n) + 1) % u32::from(SEQUENCE_MODULUS)) as u16
        });
        let queue = Self {
            dir: dir.to_path_buf(),
            max_bytes,
            segments,
            pending_bytes,
            append: None,
            stats: QueueStats::default(),
        };
        Ok((queue, recovery))
    }

    /// Reads a segment's entries and what their frames hold, cutting off a torn tail.
    fn scan_segment(number: u64, path: &Path) -> Result<ScannedSegment, QueueError> {
        let bytes = std::fs::read(path).map_err(io_error(path))?;
        let mut entries = VecDeque::new();
        let mut tiles = Vec::new();
        let mut last_sequence_count = None;
        let mut end = 0u64;
        for (offset, frame) in intact_entries(&bytes) {
            let (frame_tiles, sequence) = frame_contents(frame);
            tiles.extend(frame_tiles);
            last_sequence_count = sequence.or(last_sequence_count);
            entries.push_back((offset, frame.len() as u32));
            end = offset + ENTRY_HEADER + frame.len() as u64;
        }
        let truncated_bytes = bytes.len() as u64 - end;
        if truncated_bytes > 0 {
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io_error(path))?;
            file.set_len(end)
                .and_then(|()| file.sync_all())
                .map_err(io_error(path))?;
        }
        Ok(ScannedSegment {
            segment: Segment {
                number,
                path: path.to_path_buf(),
                entries,
                len: end,
            },
            truncated_bytes,
            tiles,
            last_sequence_count,
        })
    }

    /// Makes one frame durable at the tail of the queue.
    pub fn append(&mut self, frame: &[u8]) -> Result<(), QueueError> {
        let needs_new = self
            .segments
            .back()
            .is_none_or(|segment| segment.len >= SEGMENT_BYTES)
            || self.append.is_none();
        if needs_new {
            let number = match self.segments.back() {
                // Reopening the last, still small segment after a restart keeps segments full.
                Some(last) if last.len < SEGMENT_BYTES && self.append.is_none() => last.number,
                Some(last) => last.number + 1,
                None => 1,
            };
            let path = segment_path(&self.dir, number);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io_error(&path))?;
            if self.segments.back().is_none_or(|s| s.number != number) {
                sync_dir(&self.dir)?;
                self.segments.push_back(Segment {
                    number,
                    path,
                    entries: VecDeque::new(),
                    len: 0,
                });
            }
            self.append = Some(file);
        }
        let (Some(segment), Some(file)) = (self.segments.back_mut(), self.append.as_mut()) else {
            return Ok(());
        };
        let len = u32::try_from(frame.len()).map_err(|_| QueueError::Corrupt {
            path: segment.path.clone(),
            reason: "frame over 4 GiB".into(),
        })?;
        let mut entry = Vec::with_capacity(frame.len() + ENTRY_HEADER as usize);
        entry.extend_from_slice(&len.to_le_bytes());
        entry.extend_from_slice(&CRC32C.checksum(frame).to_le_bytes());
        entry.extend_from_slice(frame);
        file.write_all(&entry)
            .and_then(|()| file.sync_data())
            .map_err(io_error(&segment.path))?;
        segment.entries.push_back((segment.len, len));
        segment.len += entry.len() as u64;
        self.pending_bytes += entry.len() as u64;
        self.stats.frames_queued += 1;
        self.enforce_limit()?;
        Ok(())
    }

    fn enforce_limit(&mut self) -> Result<(), QueueError> {
        while self.pending_bytes > self.max_bytes && self.segments.len() > 1 {
            let dropped = self.segments.front().map_or(0, |s| s.entries.len());
            self.stats.frames_dropped += dropped as u64;
            self.retire_front()?;
        }
        Ok(())
    }

    /// Journals the front segment's records and deletes it. Callers keep at least one segment
    /// behind it, the one being appended to.
    fn retire_front(&mut self) -> Result<(), QueueError> {
        let Some(segment) = self.segments.pop_front() else {
            return Ok(());
        };
        let bytes = std::fs::read(&segment.path).map_err(io_error(&segment.path))?;
        let mut lines = String::new();
        let mut last_sequence_count = None;
        for (_, frame) in intact_entries(&bytes) {
            let (tiles, sequence) = frame_contents(frame);
            for (scene, tile) in tiles {
                lines.push_str(&format!("{scene} {tile}\n"));
            }
            last_sequence_count = sequence.or(last_sequence_count);
        }
        // Later sequence counts are in the segments still on disk, which a reopen reads after
        // the journal.
        if let Some(sequence) = last_sequence_count {
            lines.push_str(&format!("seq {sequence}\n"));
        }
        self.pending_bytes = self.pending_bytes.saturating_sub(
            segment
                .entries
                .iter()
                .map(|&(_, len)| ENTRY_HEADER + u64::from(len))
                .sum(),
        );
        let journal_path = self.dir.join("journal.log");
        let mut journal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)
            .map_err(io_error(&journal_path))?;
        journal
            .write_all(lines.as_bytes())
            .and_then(|()| journal.sync_data())
            .map_err(io_error(&journal_path))?;
        std::fs::remove_file(&segment.path).map_err(io_error(&segment.path))?;
        sync_dir(&self.dir)
    }

    /// The oldest unsent frame.
    pub fn peek(&self) -> Result<Option<Vec<u8>>, QueueError> {
        let Some((segment, &(offset, len))) = self
            .segments
            .iter()
            .find_map(|s| s.entries.front().map(|e| (s, e)))
        else {
            return Ok(None);
        };
        let mut file = File::open(&segment.path).map_err(io_error(&segment.path))?;
        let mut frame = vec![0; len as usize];
        file.seek(SeekFrom::Start(offset + ENTRY_HEADER))
            .and_then(|_| file.read_exact(&mut frame))
            .map_err(io_error(&segment.path))?;
        Ok(Some(frame))
    }

    /// Marks the oldest unsent frame as written to the link.
    pub fn mark_sent(&mut self) -> Result<(), QueueError> {
        self.mark_sent_many(1)
    }

    /// The oldest unsent frames, in order, up to `max_bytes` of them (always at least one when
    /// any is waiting): the contents of one acknowledged transfer.
    pub fn front_frames(&self, max_bytes: u64) -> Result<Vec<Vec<u8>>, QueueError> {
        let mut frames = Vec::new();
        let mut total = 0u64;
        for segment in &self.segments {
            if segment.entries.is_empty() {
                continue;
            }
            let bytes = std::fs::read(&segment.path).map_err(io_error(&segment.path))?;
            for &(offset, len) in &segment.entries {
                if !frames.is_empty() && total + u64::from(len) > max_bytes {
                    return Ok(frames);
                }
                let start = (offset + ENTRY_HEADER) as usize;
                let frame =
                    bytes
                        .get(start..start + len as usize)
                        .ok_or_else(|| QueueError::Corrupt {
                            path: segment.path.clone(),
                            reason: format!("entry at {offset} runs past the end"),
                        })?;
                frames.push(frame.to_vec());
                total += u64::from(len);
            }
        }
        Ok(frames)
    }

    /// Marks the `count` oldest unsent frames as done (written to a one-way link, or
    /// acknowledged by the ground on a two-way one), with one cursor update.
    pub fn mark_sent_many(&mut self, count: usize) -> Result<(), QueueError> {
        let mut cursor = None;
        for _ in 0..count {
            let Some(index) = self.segments.iter().position(|s| !s.entries.is_empty()) else {
                break;
            };
            let segment = &mut self.segments[index];
            let Some((offset, len)) = segment.entries.pop_front() else {
                break;
            };
            cursor = Some((segment.number, offset + ENTRY_HEADER + u64::from(len)));
            self.pending_bytes = self
                .pending_bytes
                .saturating_sub(ENTRY_HEADER + u64::from(len));
            self.stats.frames_sent += 1;
            self.stats.bytes_sent += u64::from(len);
        }
        let Some((number, next_offset)) = cursor else {
            return Ok(());
        };
        replace_file(
            &self.dir.join("cursor"),
            format!("{number} {next_offset}\n").as_bytes(),
        )?;
        // Fully sent segments other than the one being appended to are retired.
        while self.segments.len() > 1 && self.segments.front().is_some_and(|s| s.entries.is_empty())
        {
            self.retire_front()?;
        }
        Ok(())
    }

    /// Frames waiting to be sent.
    pub fn pending_frames(&self) -> usize {
        self.segments.iter().map(|s| s.entries.len()).sum()
    }

    pub fn stats(&self) -> QueueStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_a_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut queue, recovery) = Queue::open(dir.path(), 1 << 20).expect("opens");
        assert_eq!(recovery.epoch, 1);
        for frame in [&b"one\0"[..], b"two\0", b"three\0"] {
            queue.append(frame).expect("appends");
        }
        assert_eq!(queue.peek().expect("reads"), Some(b"one\0".to_vec()));
        queue.mark_sent().expect("sent");
        drop(queue);
        // A crash mid-append leaves half an entry behind.
        let segment = segment_path(dir.path(), 1);
        let mut file = OpenOptions::new()
            .append(true)
            .open(&segment)
            .expect("opens");
        file.write_all(&[9, 0, 0, 0, 1, 2]).expect("writes");
        drop(file);

        let (queue, recovery) = Queue::open(dir.path(), 1 << 20).expect("reopens");
        assert_eq!(recovery.epoch, 2);
        assert_eq!(recovery.pending_frames, 2);
        assert_eq!(recovery.truncated_bytes, 6);
        assert_eq!(queue.peek().expect("reads"), Some(b"two\0".to_vec()));
    }

    #[test]
    fn a_full_queue_drops_its_oldest_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut queue, _) = Queue::open(dir.path(), SEGMENT_BYTES).expect("opens");
        let frame = vec![7u8; 1000];
        for _ in 0..200 {
            queue.append(&frame).expect("appends");
        }
        assert!(queue.stats().frames_dropped > 0);
        assert!(queue.pending_frames() < 200);
        assert!(queue.pending_bytes <= SEGMENT_BYTES + 2 * (1000 + ENTRY_HEADER));
    }
}

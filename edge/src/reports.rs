//! The board's reports to the ground (PUS telemetry, see `orbhash_wire::report`), kept on disk
//! until the ground has committed them.
//!
//! `reports.log` in the queue directory holds the report packets back to back, each appended and
//! synced as it is made; `reports-cursor` holds the offset up to which the ground has confirmed
//! them. A crash mid-append leaves a partial packet at the end, cut off on the next open. Once
//! everything is confirmed both start again from empty.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use orbhash_wire::{decode_report, encode_report, Report, ReportHeader, MAX_REPORT_LEN};

#[derive(Debug, thiserror::Error)]
pub enum ReportLogError {
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ReportLogError + '_ {
    move |source| ReportLogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reports made and not yet confirmed by the ground.
#[derive(Debug)]
pub struct ReportLog {
    log_path: PathBuf,
    cursor_path: PathBuf,
    /// Bytes of whole packets in the log.
    len: u64,
    /// Bytes the ground has confirmed.
    confirmed: u64,
    apid: u16,
    /// Continues from the number of packets in the log (informative, wraps).
    sequence: u16,
}

impl ReportLog {
    /// Opens the log in `dir`; reports go out under `apid`.
    pub fn open(dir: &Path, apid: u16) -> Result<Self, ReportLogError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let log_path = dir.join("reports.log");
        let cursor_path = dir.join("reports-cursor");
        let bytes = match std::fs::read(&log_path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(io_error(&log_path)(error)),
        };
        let (whole, packets) = whole_packets(&bytes);
        if whole < bytes.len() {
            // The tail a crash cut short: its report was never counted as made.
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&log_path)
                .map_err(io_error(&log_path))?;
            file.set_len(whole as u64)
                .and_then(|()| file.sync_all())
                .map_err(io_error(&log_path))?;
        }
        let confirmed = match std::fs::read_to_string(&cursor_path) {
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .map_err(|_| ReportLogError::Corrupt {
                    path: cursor_path.clone(),
                    reason: format!("{text:?} is not a byte offset"),
                })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
            Err(error) => return Err(io_error(&cursor_path)(error)),
        };
        if confirmed > whole as u64 {
            return Err(ReportLogError::Corrupt {
                path: cursor_path,
                reason: format!("confirmed offset {confirmed} is past the log's {whole} bytes"),
            });
        }
        Ok(Self {
            log_path,
            cursor_path,
            len: whole as u64,
            confirmed,
            apid,
            sequence: (packets % usize::from(u16::MAX)) as u16,
        })
    }

    /// Makes `report` durable; it goes down with the next reports file.
    pub fn append(&mut self, report: &Report) -> Result<(), ReportLogError> {
        let header = ReportHeader {
            apid: self.apid,
            sequence_count: self.sequence,
            message_counter: self.sequence,
            time_unix_ms: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as u64),
        };
        let mut packet = [0u8; MAX_REPORT_LEN];
        let len = encode_report(&header, report, &mut packet).map_err(|error| {
            ReportLogError::Corrupt {
                path: self.log_path.clone(),
                reason: format!("report not encodable: {error:?}"),
            }
        })?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(io_error(&self.log_path))?;
        file.write_all(packet.get(..len).unwrap_or_default())
            .and_then(|()| file.sync_all())
            .map_err(io_error(&self.log_path))?;
        self.len += len as u64;
        self.sequence = self.sequence.wrapping_add(1);
        Ok(())
    }

    /// Reports not yet confirmed, and the offset to confirm once the ground has them.
    pub fn unconfirmed(&self) -> Result<Option<(Vec<u8>, u64)>, ReportLogError> {
        if self.confirmed >= self.len {
            return Ok(None);
        }
        let bytes = std::fs::read(&self.log_path).map_err(io_error(&self.log_path))?;
        let pending = bytes
            .get(self.confirmed as usize..self.len as usize)
            .ok_or_else(|| ReportLogError::Corrupt {
                path: self.log_path.clone(),
                reason: "shorter than the reports it held".into(),
            })?;
        Ok(Some((pending.to_vec(), self.len)))
    }

    /// The ground has committed everything up to `offset`.
    pub fn confirm(&mut self, offset: u64) -> Result<(), ReportLogError> {
        if offset >= self.len {
            // All confirmed: the log starts again, the cursor first so a crash between the two
            // never points past the log.
            write_durably(&self.cursor_path, "0\n")?;
            std::fs::write(&self.log_path, b"")
                .and_then(|()| std::fs::File::open(&self.log_path)?.sync_all())
                .map_err(io_error(&self.log_path))?;
            self.len = 0;
            self.confirmed = 0;
            return Ok(());
        }
        write_durably(&self.cursor_path, &format!("{offset}\n"))?;
        self.confirmed = offset;
        Ok(())
    }

    /// Whether anything waits for the ground.
    pub fn is_empty(&self) -> bool {
        self.confirmed >= self.len
    }
}

fn write_durably(path: &Path, text: &str) -> Result<(), ReportLogError> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text)
        .and_then(|()| std::fs::File::open(&partial)?.sync_all())
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(io_error(path))
}

/// The length of the whole report packets at the start of `bytes`, and how many there are.
fn whole_packets(bytes: &[u8]) -> (usize, usize) {
    let (mut at, mut count) = (0usize, 0usize);
    while let Some(rest) = bytes.get(at..).filter(|rest| !rest.is_empty()) {
        match decode_report(rest) {
            Ok((_, _, len)) => {
                at += len;
                count += 1;
            }
            Err(_) => break,
        }
    }
    (at, count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use orbhash_wire::EvictionCause;

    fn evicted(scene_id: u32) -> Report {
        Report::SceneEvicted {
            scene_id,
            bytes: 1000,
            cause: EvictionCause::Capacity,
        }
    }

    fn decoded(bytes: &[u8]) -> Vec<Report> {
        let mut reports = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let (_, report, len) = decode_report(&bytes[at..]).expect("a report");
            reports.push(report);
            at += len;
        }
        reports
    }

    #[test]
    fn reports_stay_until_confirmed_and_survive_a_torn_append() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = ReportLog::open(dir.path(), 0x42).expect("opens");
        assert!(log.unconfirmed().expect("reads").is_none());
        log.append(&evicted(1)).expect("appends");
        log.append(&evicted(2)).expect("appends");
        let (bytes, upto) = log.unconfirmed().expect("reads").expect("some");
        assert_eq!(decoded(&bytes), vec![evicted(1), evicted(2)]);
        // A third report made while the first two travel is not confirmed with them.
        log.append(&evicted(3)).expect("appends");
        log.confirm(upto).expect("confirms");
        // A crash mid-append: half a packet at the end.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("reports.log"))
            .expect("opens");
        file.write_all(&bytes[..7]).expect("writes");
        drop(file);
        let mut log = ReportLog::open(dir.path(), 0x42).expect("reopens");
        let (bytes, upto) = log.unconfirmed().expect("reads").expect("some");
        assert_eq!(decoded(&bytes), vec![evicted(3)]);
        log.confirm(upto).expect("confirms");
        assert!(log.is_empty());
        let log = ReportLog::open(dir.path(), 0x42).expect("reopens");
        assert!(log.unconfirmed().expect("reads").is_none());
    }

    #[test]
    fn a_cursor_past_the_log_is_named_not_trusted() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("reports-cursor"), "99\n").expect("writes");
        let error = ReportLog::open(dir.path(), 1).expect_err("refuses");
        assert!(error.to_string().contains("reports-cursor"), "{error}");
    }
}

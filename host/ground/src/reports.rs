//! The board's reports (PUS telemetry, `orbhash_wire::report`) as the ground takes them: a
//! telecommand the board carried out stops being repeated; a scene it evicted is recorded, and
//! the tiles of it still asked for are answered "no longer on board" at once.
//!
//! A reports file is taken in one SQLite transaction, and taking it twice changes nothing (the
//! board sends it again when the ground's confirmation is lost).

use orbhash_wire::{decode_report, EvictionCause, Report, ReportHeader};
use rusqlite::params;
use serde::Serialize;

use crate::archive::Archive;
use crate::{now_ms, GroundError, Result};

/// What one reports file held.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReportsTaken {
    pub commands_executed: u64,
    pub scenes_evicted: u64,
    /// Tiles still asked for whose scene is gone.
    pub tasks_answered: u64,
    /// Reports this ground cannot read (a newer board), each named in the log.
    pub unreadable: u64,
}

/// A scene the board reported evicted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportedEviction {
    pub scene_id: u32,
    pub bytes: u64,
    pub cause: String,
    pub board_ms: i64,
}

fn cause_name(cause: EvictionCause) -> &'static str {
    match cause {
        EvictionCause::Capacity => "capacity",
        EvictionCause::Age => "age",
    }
}

impl Archive {
    /// Takes the reports in `bytes` (a delivered `reports-*.bin`), all or nothing.
    pub fn take_reports(&self, source: &str, bytes: &[u8]) -> Result<ReportsTaken> {
        let sql = |source| GroundError::Sqlite {
            path: self.db_path().to_path_buf(),
            source,
        };
        let tx = self.connection().unchecked_transaction().map_err(sql)?;
        let mut taken = ReportsTaken::default();
        let now = now_ms();
        let mut at = 0usize;
        while let Some(rest) = bytes.get(at..).filter(|rest| !rest.is_empty()) {
            let (header, report, len): (ReportHeader, Report, usize) = match decode_report(rest) {
                Ok(decoded) => decoded,
                Err(error) => {
                    // The file's PDUs verified under the mission key: what cannot be read is a
                    // board newer than this ground, not damage. Nothing after it can be framed.
                    eprintln!("orbhash ground: {source}: report at byte {at}: {error}");
                    taken.unreadable += 1;
                    break;
                }
            };
            at += len;
            match report {
                Report::Executed { position, .. } => {
                    tx.execute(
                        "UPDATE uplinked SET executed_ms = ?3
                         WHERE epoch = ?1 AND counter = ?2 AND executed_ms IS NULL",
                        params![position.epoch, position.counter, now],
                    )
                    .map_err(sql)?;
                    tx.execute(
                        "UPDATE telecommands SET executed_ms = ?2 WHERE executed_ms IS NULL
                         AND id = (SELECT telecommand FROM uplinked
                                   WHERE epoch = ?1 AND counter = ?3)",
                        params![position.epoch, now, position.counter],
                    )
                    .map_err(sql)?;
                    taken.commands_executed += 1;
                }
                Report::SceneEvicted {
                    scene_id,
                    bytes,
                    cause,
                } => {
                    let board_ms = i64::try_from(header.time_unix_ms).unwrap_or(i64::MAX);
                    tx.execute(
                        "INSERT OR IGNORE INTO evictions (scene_id, bytes, cause, board_ms,
                                                          received_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![
                            scene_id,
                            i64::try_from(bytes).unwrap_or(i64::MAX),
                            cause_name(cause),
                            board_ms,
                            now
                        ],
                    )
                    .map_err(sql)?;
                    let answer = format!(
                        "no longer on board: scene {scene_id:08x} evicted ({})",
                        match cause {
                            EvictionCause::Capacity => "store over capacity",
                            EvictionCause::Age => "past the maximum age",
                        }
                    );
                    // Only tiles asked for before the eviction: a later request is the board's
                    // to answer.
                    let answered = tx
                        .execute(
                            "UPDATE tasks SET status = 'absent', answer = ?2, updated_ms = ?3
                             WHERE scene_id = ?1 AND status = 'requested' AND requested_ms <= ?4",
                            params![scene_id, answer, now, board_ms],
                        )
                        .map_err(sql)?;
                    taken.scenes_evicted += 1;
                    taken.tasks_answered += answered as u64;
                }
            }
        }
        tx.commit().map_err(sql)?;
        Ok(taken)
    }

    /// The scenes the board reported evicted, oldest first.
    pub fn reported_evictions(&self) -> Result<Vec<ReportedEviction>> {
        let sql = |source| GroundError::Sqlite {
            path: self.db_path().to_path_buf(),
            source,
        };
        let mut statement = self
            .connection()
            .prepare_cached(
                "SELECT scene_id, bytes, cause, board_ms FROM evictions ORDER BY board_ms",
            )
            .map_err(sql)?;
        let rows = statement
            .query_map([], |row| {
                Ok(ReportedEviction {
                    scene_id: row.get(0)?,
                    bytes: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                    cause: row.get(2)?,
                    board_ms: row.get(3)?,
                })
            })
            .map_err(sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql)?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::{QueuedCommand, TaskStatus};
    use orbhash_wire::{encode_report, RequestId, StreamPosition, MAX_REPORT_LEN};

    fn report_bytes(reports: &[(u64, Report)]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for (i, (time_unix_ms, report)) in reports.iter().enumerate() {
            let header = ReportHeader {
                apid: 0x42,
                sequence_count: i as u16,
                message_counter: i as u16,
                time_unix_ms: *time_unix_ms,
            };
            let mut packet = [0u8; MAX_REPORT_LEN];
            let len = encode_report(&header, report, &mut packet).expect("encodes");
            bytes.extend_from_slice(&packet[..len]);
        }
        bytes
    }

    #[test]
    fn a_command_reported_carried_out_is_no_longer_repeated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = Archive::open(dir.path()).expect("opens");
        archive
            .queue_command(QueuedCommand::CancelRequest { request: 4 })
            .expect("queues");
        let (id, command) = archive.queued_commands().expect("lists")[0];
        let position = archive.next_command_position().expect("position");
        archive
            .note_command_uplinked(id, command, position)
            .expect("notes");
        // Another position's report does not confirm it.
        let other = StreamPosition {
            epoch: position.epoch,
            counter: position.counter + 7,
        };
        let executed = |position| Report::Executed {
            request: RequestId {
                packet_id: 0x1842,
                sequence_control: 0xc000,
            },
            position,
        };
        archive
            .take_reports("test", &report_bytes(&[(1, executed(other))]))
            .expect("takes");
        assert_eq!(archive.queued_commands().expect("lists").len(), 1);
        let file = report_bytes(&[(1, executed(position))]);
        for _ in 0..2 {
            // Taken twice (a lost confirmation): the same outcome.
            let taken = archive.take_reports("test", &file).expect("takes");
            assert_eq!(taken.commands_executed, 1);
            assert!(archive.queued_commands().expect("lists").is_empty());
        }
    }

    #[test]
    fn an_eviction_answers_the_tiles_asked_for_before_it_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = Archive::open(dir.path()).expect("opens");
        // Tasks need no record here: the connection is the tasks module's own.
        archive
            .connection()
            .execute(
                "INSERT INTO tasks (request, scene_id, tile_id, status, requested_ms, updated_ms)
                 VALUES (1, 9, 3, 'requested', 100, 100), (1, 8, 3, 'requested', 100, 100),
                        (2, 9, 4, 'requested', 5000, 5000)",
                [],
            )
            .expect("inserts");
        let file = report_bytes(&[(
            1000,
            Report::SceneEvicted {
                scene_id: 9,
                bytes: 4096,
                cause: EvictionCause::Age,
            },
        )]);
        let taken = archive.take_reports("test", &file).expect("takes");
        assert_eq!((taken.scenes_evicted, taken.tasks_answered), (1, 1));
        let again = archive.take_reports("test", &file).expect("takes");
        assert_eq!(again.tasks_answered, 0);
        assert_eq!(archive.reported_evictions().expect("lists").len(), 1);
        let statuses: Vec<(u32, u32, TaskStatus)> = archive
            .tasks()
            .expect("lists")
            .into_iter()
            .map(|task| (task.scene_id, task.tile_id, task.status))
            .collect();
        assert!(statuses.contains(&(9, 3, TaskStatus::Absent)));
        assert!(statuses.contains(&(8, 3, TaskStatus::Requested)));
        assert!(statuses.contains(&(9, 4, TaskStatus::Requested)));
    }

    #[test]
    fn an_unreadable_report_is_counted_and_what_came_before_it_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = Archive::open(dir.path()).expect("opens");
        let mut file = report_bytes(&[(
            1000,
            Report::SceneEvicted {
                scene_id: 9,
                bytes: 1,
                cause: EvictionCause::Capacity,
            },
        )]);
        file.extend_from_slice(&[0x08, 0x42, 0xc0, 0x00, 0x00]);
        let taken = archive.take_reports("test", &file).expect("takes");
        assert_eq!((taken.scenes_evicted, taken.unreadable), (1, 1));
    }
}

//! Tasking: the full tiles operators ask the board for, and what became of each request.
//!
//! A task is one tile of one request. Its status moves
//!
//! ```text
//! requested ──(the board starts sending it)──▶ sent ──(file committed)──▶ received
//!     │                                           └──(the board's answer)──▶ absent ("no longer on board")
//!     └──(operator cancels)──▶ cancelled
//! ```
//!
//! Requested tiles go up in `request-tiles` telecommands at every command interval until the board
//! reports it carried the request out (or starts sending them); asked again if nothing came for
//! ten intervals (the board ignores a tile it already has queued, so repeats are harmless). A
//! received tile is a GeoTIFF under `tiles/` in the archive directory, named after its scene and
//! tile, beside the record it was tasked from.

use std::path::{Path, PathBuf};

pub use orbhash_link::delivery::{tile_file_name, tile_of_file_name};
use orbhash_link::PassAccount;
use orbhash_wire::{StreamPosition, TileRef};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::archive::Archive;
use crate::{now_ms, GroundError, Result};

/// Where received tiles are kept, inside the archive directory.
pub const TILES_DIR: &str = "tiles";

/// A command queued for the uplink besides tile requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueuedCommand {
    CancelRequest { request: u32 },
    SetRetention { capacity_bytes: u64, max_age_s: u32 },
}

impl QueuedCommand {
    /// The name it is stored and listed under.
    pub fn kind(self) -> &'static str {
        match self {
            QueuedCommand::CancelRequest { .. } => "cancel-request",
            QueuedCommand::SetRetention { .. } => "set-retention",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskStatus {
    Requested,
    Sent,
    Received,
    /// The board answered that the tile is no longer on board (evicted) or cannot be sent.
    Absent,
    Cancelled,
}

impl TaskStatus {
    fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Requested => "requested",
            TaskStatus::Sent => "sent",
            TaskStatus::Received => "received",
            TaskStatus::Absent => "absent",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "requested" => TaskStatus::Requested,
            "sent" => TaskStatus::Sent,
            "received" => TaskStatus::Received,
            "absent" => TaskStatus::Absent,
            "cancelled" => TaskStatus::Cancelled,
            _ => return None,
        })
    }

    /// What `ground tiles` prints.
    pub fn describe(self) -> &'static str {
        match self {
            TaskStatus::Requested => "requested",
            TaskStatus::Sent => "sent",
            TaskStatus::Received => "received",
            TaskStatus::Absent => "no longer on board",
            TaskStatus::Cancelled => "cancelled",
        }
    }
}

/// One tasked tile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Task {
    pub request: u32,
    pub scene_id: u32,
    pub tile_id: u32,
    pub status: TaskStatus,
    pub requested_ms: i64,
    pub updated_ms: i64,
    /// Telecommands that carried it.
    pub uplinked: u32,
    /// The received GeoTIFF, when received.
    pub file: Option<PathBuf>,
    pub bytes: Option<u64>,
    /// The board's answer, when it could not send the tile.
    pub answer: Option<String>,
}

fn sql(archive: &Archive) -> impl Fn(rusqlite::Error) -> GroundError + '_ {
    move |source| GroundError::Sqlite {
        path: archive.db_path().to_path_buf(),
        source,
    }
}

impl Archive {
    /// Queues a request for `tiles` (each must be a tile the archive holds a record of); returns
    /// its request id. Tiles already requested and not yet settled are not asked for twice.
    pub fn request_tiles(&self, tiles: &[TileRef]) -> Result<(u32, usize)> {
        let sql = sql(self);
        for tile in tiles {
            if self
                .records_of_tile(tile.tile, Some(tile.scene))?
                .is_empty()
            {
                return Err(GroundError::NoSuchTile {
                    tile: tile.tile,
                    scene: format!(" of scene {:08x}", tile.scene),
                });
            }
        }
        let conn = self.connection();
        let request: u32 = conn
            .query_row(
                "SELECT COALESCE(MAX(request), 0) + 1 FROM tasks",
                [],
                |row| row.get(0),
            )
            .map_err(&sql)?;
        let now = now_ms();
        let mut added = 0;
        for tile in tiles {
            let open: Option<i64> = conn
                .query_row(
                    "SELECT id FROM tasks WHERE scene_id = ?1 AND tile_id = ?2
                     AND status IN ('requested', 'sent')",
                    params![tile.scene, tile.tile],
                    |row| row.get(0),
                )
                .optional()
                .map_err(&sql)?;
            if open.is_some() {
                continue;
            }
            conn.execute(
                "INSERT INTO tasks (request, scene_id, tile_id, status, requested_ms, updated_ms)
                 VALUES (?1, ?2, ?3, 'requested', ?4, ?4)",
                params![request, tile.scene, tile.tile, now],
            )
            .map_err(&sql)?;
            added += 1;
        }
        Ok((request, added))
    }

    /// Every task, oldest first.
    pub fn tasks(&self) -> Result<Vec<Task>> {
        let sql = sql(self);
        let mut statement = self
            .connection()
            .prepare_cached(
                "SELECT request, scene_id, tile_id, status, requested_ms, updated_ms, uplinked,
                        file, bytes, answer FROM tasks ORDER BY id",
            )
            .map_err(&sql)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, u32>(0)?,
                    row.get::<_, u32>(1)?,
                    row.get::<_, u32>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, i64>(5)?,
                    row.get::<_, u32>(6)?,
                    row.get::<_, Option<String>>(7)?,
                    row.get::<_, Option<i64>>(8)?,
                    row.get::<_, Option<String>>(9)?,
                ))
            })
            .map_err(&sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(&sql)?;
        let dir = self.dir().to_path_buf();
        Ok(rows
            .into_iter()
            .map(
                |(
                    request,
                    scene_id,
                    tile_id,
                    status,
                    requested_ms,
                    updated_ms,
                    uplinked,
                    file,
                    bytes,
                    answer,
                )| {
                    Task {
                        request,
                        scene_id,
                        tile_id,
                        // A status this build does not know reads as requested: asked again.
                        status: TaskStatus::parse(&status).unwrap_or(TaskStatus::Requested),
                        requested_ms,
                        updated_ms,
                        uplinked,
                        file: file.map(|name| dir.join(TILES_DIR).join(name)),
                        bytes: bytes.and_then(|b| u64::try_from(b).ok()),
                        answer,
                    }
                },
            )
            .collect())
    }

    /// Tiles still to ask for, by request, in request order: those requested whose request the
    /// board has not reported carried out in the last `stale_ms`, and those the board began to
    /// send more than `stale_ms` ago without their file arriving (a transfer can end on board
    /// without reaching the ground; asking again is harmless, the board ignores a tile it still
    /// has queued).
    pub fn tiles_to_uplink(&self, stale_ms: i64) -> Result<Vec<(u32, Vec<TileRef>)>> {
        let sql = sql(self);
        let mut requests: Vec<(u32, Vec<TileRef>)> = Vec::new();
        let stale_before = now_ms() - stale_ms;
        let confirmed: std::collections::HashSet<u32> = self
            .connection()
            .prepare_cached(
                "SELECT DISTINCT request FROM uplinked
                 WHERE kind = 'request-tiles' AND executed_ms >= ?1",
            )
            .map_err(&sql)?
            .query_map(params![stale_before], |row| row.get(0))
            .map_err(&sql)?
            .collect::<rusqlite::Result<_>>()
            .map_err(&sql)?;
        for task in self.tasks()?.into_iter().filter(|t| {
            (t.status == TaskStatus::Requested && !confirmed.contains(&t.request))
                || (t.status == TaskStatus::Sent && t.updated_ms < stale_before)
        }) {
            let tile = TileRef {
                scene: task.scene_id,
                tile: task.tile_id,
            };
            match requests.last_mut() {
                Some((request, tiles)) if *request == task.request => tiles.push(tile),
                _ => requests.push((task.request, vec![tile])),
            }
        }
        Ok(requests)
    }

    /// Counts one more telecommand, the one at `position`, that carried `request`'s open tiles.
    pub fn note_uplinked(&self, request: u32, position: StreamPosition) -> Result<()> {
        let sql = sql(self);
        self.connection()
            .execute(
                "UPDATE tasks SET uplinked = uplinked + 1 WHERE request = ?1
                 AND status IN ('requested', 'sent')",
                params![request],
            )
            .map_err(&sql)?;
        self.note_position(position, "request-tiles", Some(request), None)
    }

    /// What the telecommand at `position` carried, for the board's report that it carried it out.
    fn note_position(
        &self,
        position: StreamPosition,
        kind: &str,
        request: Option<u32>,
        telecommand: Option<i64>,
    ) -> Result<()> {
        self.connection()
            .execute(
                "INSERT OR REPLACE INTO uplinked (epoch, counter, kind, request, telecommand, sent_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    position.epoch,
                    position.counter,
                    kind,
                    request,
                    telecommand,
                    now_ms()
                ],
            )
            .map_err(sql(self))?;
        Ok(())
    }

    /// Cancels what is left of `request` and queues the cancel command for the board; returns
    /// how many tiles.
    pub fn cancel_request(&self, request: u32) -> Result<usize> {
        let sql = sql(self);
        let cancelled = self
            .connection()
            .execute(
                "UPDATE tasks SET status = 'cancelled', updated_ms = ?2 WHERE request = ?1
                 AND status IN ('requested', 'sent')",
                params![request, now_ms()],
            )
            .map_err(&sql)?;
        self.queue_command(QueuedCommand::CancelRequest { request })?;
        Ok(cancelled)
    }

    /// Queues `command` for the next contacts: it goes up at every command interval until the
    /// board reports it carried it out (both kinds are idempotent, so a repeat is harmless).
    pub fn queue_command(&self, command: QueuedCommand) -> Result<()> {
        let kind = command.kind();
        let (request, capacity, max_age) = match command {
            QueuedCommand::CancelRequest { request } => (Some(request), None, None),
            QueuedCommand::SetRetention {
                capacity_bytes,
                max_age_s,
            } => (
                None,
                Some(i64::try_from(capacity_bytes).unwrap_or(i64::MAX)),
                Some(max_age_s),
            ),
        };
        self.connection()
            .execute(
                "INSERT INTO telecommands (kind, request, capacity_bytes, max_age_s, queued_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![kind, request, capacity, max_age, now_ms()],
            )
            .map_err(sql(self))?;
        Ok(())
    }

    /// Queued commands the board has not yet reported carried out: (row id, command).
    pub fn queued_commands(&self) -> Result<Vec<(i64, QueuedCommand)>> {
        let sql = sql(self);
        let mut statement = self
            .connection()
            .prepare_cached(
                "SELECT id, kind, request, capacity_bytes, max_age_s FROM telecommands
                 WHERE executed_ms IS NULL ORDER BY id",
            )
            .map_err(&sql)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<u32>>(2)?,
                    row.get::<_, Option<i64>>(3)?,
                    row.get::<_, Option<u32>>(4)?,
                ))
            })
            .map_err(&sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(&sql)?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, kind, request, capacity, max_age)| {
                let command = match (kind.as_str(), request, capacity, max_age) {
                    ("cancel-request", Some(request), _, _) => {
                        QueuedCommand::CancelRequest { request }
                    }
                    ("set-retention", _, Some(capacity), Some(max_age_s)) => {
                        QueuedCommand::SetRetention {
                            capacity_bytes: u64::try_from(capacity).unwrap_or(0),
                            max_age_s,
                        }
                    }
                    // A row this build cannot read is not sent: sending a guess would be worse.
                    _ => return None,
                };
                Some((id, command))
            })
            .collect())
    }

    /// One more uplink of queued command `id`, in the telecommand at `position`.
    pub fn note_command_uplinked(
        &self,
        id: i64,
        command: QueuedCommand,
        position: StreamPosition,
    ) -> Result<()> {
        self.connection()
            .execute(
                "UPDATE telecommands SET uplinked = uplinked + 1 WHERE id = ?1",
                params![id],
            )
            .map_err(sql(self))?;
        self.note_position(position, command.kind(), None, Some(id))
    }

    /// The board started sending `tile`.
    pub fn tile_sent(&self, tile: TileRef) -> Result<()> {
        self.connection()
            .execute(
                "UPDATE tasks SET status = 'sent', updated_ms = ?3 WHERE scene_id = ?1
                 AND tile_id = ?2 AND status = 'requested'",
                params![tile.scene, tile.tile, now_ms()],
            )
            .map_err(sql(self))?;
        Ok(())
    }

    /// `tile` arrived whole: `file` (under `tiles/`) holds it. A tile nobody asked for (a request
    /// from another ground station's archive) is recorded as received under request 0.
    pub fn tile_received(&self, tile: TileRef, file: &str, bytes: u64) -> Result<()> {
        self.settle(tile, TaskStatus::Received, Some((file, bytes)), None)
    }

    /// The board answered that it cannot send `tile`.
    pub fn tile_absent(&self, tile: TileRef, answer: &str) -> Result<()> {
        self.settle(tile, TaskStatus::Absent, None, Some(answer))
    }

    fn settle(
        &self,
        tile: TileRef,
        status: TaskStatus,
        file: Option<(&str, u64)>,
        answer: Option<&str>,
    ) -> Result<()> {
        let sql = sql(self);
        let now = now_ms();
        let (name, bytes) = file.map_or((None, None), |(name, bytes)| {
            (Some(name), i64::try_from(bytes).ok())
        });
        let updated = self
            .connection()
            .execute(
                "UPDATE tasks SET status = ?3, updated_ms = ?4, file = ?5, bytes = ?6, answer = ?7
                 WHERE scene_id = ?1 AND tile_id = ?2 AND status IN ('requested', 'sent')",
                params![
                    tile.scene,
                    tile.tile,
                    status.as_str(),
                    now,
                    name,
                    bytes,
                    answer
                ],
            )
            .map_err(&sql)?;
        if updated == 0 {
            self.connection()
                .execute(
                    "INSERT INTO tasks (request, scene_id, tile_id, status, requested_ms,
                                        updated_ms, file, bytes, answer)
                     VALUES (0, ?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7)",
                    params![
                        tile.scene,
                        tile.tile,
                        status.as_str(),
                        now,
                        name,
                        bytes,
                        answer
                    ],
                )
                .map_err(&sql)?;
        }
        Ok(())
    }

    /// The next telecommand position, made durable before it is used: a restarted ground
    /// station never sends a position twice, so the board's replay check never refuses a new
    /// command.
    pub fn next_command_position(&self) -> Result<StreamPosition> {
        let sql = sql(self);
        let conn = self.connection();
        conn.execute(
            "INSERT INTO uplink (id, epoch, counter) VALUES (1, 1, 0)
             ON CONFLICT (id) DO UPDATE SET counter = counter + 1",
            [],
        )
        .map_err(&sql)?;
        conn.query_row(
            "SELECT epoch, counter FROM uplink WHERE id = 1",
            [],
            |row| {
                Ok(StreamPosition {
                    epoch: row.get(0)?,
                    counter: row.get(1)?,
                })
            },
        )
        .map_err(&sql)
    }

    /// Stores what one pass of the two-way link carried, as the `contact` run that started at
    /// `run_ms` counted it (a restarted station counts the rest of a pass in a row of its own).
    pub fn save_link_pass(&self, pass: &PassAccount, run_ms: i64) -> Result<()> {
        let json = serde_json::to_string(pass).unwrap_or_default();
        self.connection()
            .execute(
                "INSERT INTO link_passes (pass, run_ms, updated_ms, account_json)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (pass, run_ms) DO UPDATE SET updated_ms = ?3, account_json = ?4",
                params![
                    i64::try_from(pass.pass).unwrap_or(i64::MAX),
                    run_ms,
                    now_ms(),
                    json
                ],
            )
            .map_err(sql(self))?;
        Ok(())
    }

    /// Every pass of the two-way link, the counts of every `contact` run in it added up.
    pub fn link_passes(&self) -> Result<Vec<PassAccount>> {
        let sql = sql(self);
        let mut statement = self
            .connection()
            .prepare_cached("SELECT pass, account_json FROM link_passes ORDER BY pass, run_ms")
            .map_err(&sql)?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(&sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(&sql)?;
        let mut passes: Vec<PassAccount> = Vec::new();
        for (pass, json) in rows {
            let path = self.db_path().to_path_buf();
            let counted: PassAccount =
                serde_json::from_str(&json).map_err(|source| GroundError::BadReport {
                    path,
                    session: pass,
                    source,
                })?;
            match passes.last_mut() {
                Some(last) if last.pass == counted.pass => {
                    last.account.add(&counted.account);
                    last.channel.frames += counted.channel.frames;
                    last.channel.lost += counted.channel.lost;
                    last.channel.corrupted += counted.channel.corrupted;
                    last.channel.duplicated += counted.channel.duplicated;
                    last.frames_outside_contact += counted.frames_outside_contact;
                }
                _ => passes.push(counted),
            }
        }
        Ok(passes)
    }
}

/// Copies the received tiles (all, or those of `request`) into `dir`; returns the files written.
pub fn export_tiles(archive: &Archive, dir: &Path, request: Option<u32>) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|source| GroundError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    for task in archive.tasks()? {
        let Some(file) = task
            .file
            .as_ref()
            .filter(|_| task.status == TaskStatus::Received)
        else {
            continue;
        };
        if request.is_some_and(|r| r != task.request) {
            continue;
        }
        let Some(name) = file.file_name() else {
            continue;
        };
        let target = dir.join(name);
        std::fs::copy(file, &target).map_err(|source| GroundError::Io {
            path: file.clone(),
            source,
        })?;
        written.push(target);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_positions_only_grow_across_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = Archive::open(dir.path())
            .expect("opens")
            .next_command_position()
            .expect("position");
        let archive = Archive::open(dir.path()).expect("reopens");
        let second = archive.next_command_position().expect("position");
        assert!(second > first, "{first:?} then {second:?}");
    }
}

//! The archive: SQLite as the system of record for records, model cards, ingest sessions and passes.
//!
//! An archive is a directory: `archive.sqlite` (this module) and `codes/` (the packed code matrices
//! derived from it, see [`crate::matrix`]). SQLite runs in WAL mode with
//! `synchronous = FULL`: a commit is on disk when [`ArchiveTx::commit`] returns, and a crash (even
//! `kill -9` mid-transaction) leaves either the whole transaction or none of it. Ingest commits in
//! batches, so the fsync is paid once per batch rather than once per packet.
//!
//! # Duplicate key, sequence-count wraps and epochs
//!
//! A packet is identified by `(apid, epoch, sequence count, scene id, first tile id, time base)`,
//! unique in `packets`; its records are stored with it in the same transaction, or not at all.
//! A record is then identified by its packet and its index in the packet, so re-ingesting a file,
//! or a packet the link duplicated, adds nothing (`INSERT OR IGNORE` on the packet, records only
//! for a packet that was new).
//!
//! Why not just `(apid, sequence count, record index)`: the 14-bit sequence count wraps every 16 384
//! packets (a long pass at 100 records per packet wraps after 1.6 M tiles), and the flight software
//! restarts counts after a reboot. The epoch (raised every pass and every reboot) separates passes
//! and reboots; within one epoch, two packets 2^14 counts apart still differ in the scene, the first
//! tile or the capture time, which move forward as the satellite images. Two packets that agree on
//! all six fields carry the same tiles of the same capture, so treating them as one is right. The
//! key needs no per-pass state, so it is the same whichever order or session packets arrive in.
//!
//! Records are append-only: rows are never updated or deleted, which is what lets a code matrix
//! recognise itself as stale from the count and highest id it was built from.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use orbhash_wire::{MapCoordinates, ModelId, PacketHeader, Record};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;

use crate::{now_ms, to_hex, GroundError, Result};

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

/// Schema migrations: entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE models (
    id INTEGER PRIMARY KEY,
    model_id TEXT NOT NULL UNIQUE,      -- 16 hex digits
    code_bits INTEGER NOT NULL,
    label_set INTEGER NOT NULL,
    card_json TEXT,                      -- the model card, once registered
    first_seen_ms INTEGER NOT NULL,
    record_count INTEGER NOT NULL DEFAULT 0,
    max_record_id INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,               -- file path, 'stdin' or 'tcp'
    peer TEXT,                          -- remote address for TCP
    authenticated INTEGER NOT NULL,     -- whether a mission key was required
    started_ms INTEGER NOT NULL,
    finished_ms INTEGER,                -- NULL: still running, or interrupted
    report_json TEXT NOT NULL           -- the SessionReport as of the last commit
);
CREATE TABLE packets (
    id INTEGER PRIMARY KEY,
    apid INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    sequence_count INTEGER NOT NULL,
    scene_id INTEGER NOT NULL,
    first_tile_id INTEGER NOT NULL,
    time_base_ms INTEGER NOT NULL,
    model_ref INTEGER NOT NULL REFERENCES models(id),
    record_count INTEGER NOT NULL,
    authenticated INTEGER NOT NULL,
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    UNIQUE (apid, epoch, sequence_count, scene_id, first_tile_id, time_base_ms)
);
CREATE TABLE records (
    id INTEGER PRIMARY KEY,
    packet_id INTEGER NOT NULL REFERENCES packets(id),
    record_index INTEGER NOT NULL,
    model_ref INTEGER NOT NULL REFERENCES models(id),
    scene_id INTEGER NOT NULL,
    tile_id INTEGER NOT NULL,
    capture_time_ms INTEGER NOT NULL,   -- u64 on the wire, stored bit for bit as i64
    row_px INTEGER NOT NULL,
    col_px INTEGER NOT NULL,
    epsg INTEGER,
    easting REAL,
    northing REAL,
    label INTEGER NOT NULL,
    confidence INTEGER NOT NULL,
    code BLOB NOT NULL
);
CREATE TABLE session_passes (
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    apid INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    packets_received INTEGER NOT NULL,
    packets_stored INTEGER NOT NULL,
    duplicates INTEGER NOT NULL,
    missing INTEGER NOT NULL,
    late INTEGER NOT NULL,
    PRIMARY KEY (session_id, apid, epoch)
);
"#];

/// A stored record with its archive id and model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredRecord {
    pub id: i64,
    pub model_id: String,
    pub scene_id: u32,
    pub tile_id: u32,
    pub capture_time_ms: u64,
    pub row_px: u32,
    pub col_px: u32,
    pub map: Option<MapCoordinates>,
    pub label: u16,
    pub confidence: u8,
    /// The code, hex.
    pub code: String,
}

/// A model id seen in packets, and its card once registered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    #[serde(skip)]
    pub model_ref: i64,
    #[serde(serialize_with = "serialize_model_id")]
    pub model_id: ModelId,
    pub code_bits: u16,
    pub label_set: u16,
    pub record_count: u64,
    pub max_record_id: i64,
    /// Class names from the model card, when one was registered.
    pub class_names: Option<Vec<String>>,
}

fn serialize_model_id<S: serde::Serializer>(id: &ModelId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&id.to_string())
}

impl ModelInfo {
    /// The label's class name when the model card is known, its index otherwise.
    pub fn label_name(&self, label: u16) -> String {
        self.class_names
            .as_ref()
            .and_then(|names| names.get(usize::from(label)))
            .cloned()
            .unwrap_or_else(|| label.to_string())
    }
}

/// One decoded packet waiting to be stored.
#[derive(Debug, Clone)]
pub struct PendingPacket {
    pub header: PacketHeader,
    pub authenticated: bool,
    pub records: Vec<Record>,
}

/// Per pass (APID, epoch) counts within one ingest session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PassCounts {
    pub apid: u16,
    pub epoch: u32,
    /// Packets the decoder accepted (intact, in sequence or late).
    pub packets_received: u64,
    /// Of those, packets new to the archive.
    pub packets_stored: u64,
    /// Packets seen twice: by the decoder within the session, or already in the archive.
    pub duplicates: u64,
    /// Sequence gaps, less the late packets that filled them.
    pub missing: u64,
    pub late: u64,
}

/// What one ingest session (a file, stdin, a TCP connection) brought.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SessionReport {
    pub session_id: i64,
    pub source: String,
    pub peer: Option<String>,
    pub authenticated: bool,
    pub bytes: u64,
    pub frames: u64,
    pub packets_received: u64,
    pub packets_stored: u64,
    pub records_stored: u64,
    /// Duplicate packets (within the session or already archived) and their records.
    pub packets_duplicate: u64,
    pub records_duplicate: u64,
    /// Frames damaged on the link (framing, length, CRC).
    pub corrupt: u64,
    /// Packets known lost (sequence gaps not filled by late packets).
    pub missing: u64,
    pub late: u64,
    /// Missing or wrong MAC, replays (only with a mission key).
    pub auth_failures: u64,
    /// Intact packets refused for layout, version, code length or APID table reasons.
    pub other_rejected: u64,
    /// Whether the session ran to its end (false while running, or if it was interrupted).
    pub finished: bool,
    pub passes: Vec<PassCounts>,
}

/// A pass across all sessions, computed from what the archive holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PassReport {
    pub apid: u16,
    pub epoch: u32,
    pub packets_stored: u64,
    pub records_stored: u64,
    /// Sum over sessions of packets the decoder accepted for this pass.
    pub packets_received: u64,
    /// Sum over sessions of duplicate packets.
    pub duplicates: u64,
    /// Packets still missing between the first and the last stored one (sequence counts
    /// unwrapped in arrival order), whichever session brought them.
    pub missing: u64,
}

/// Archive-wide numbers for `orbhash ground stats`.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveStats {
    pub path: String,
    pub bytes_on_disk: u64,
    pub records: u64,
    pub packets: u64,
    pub models: Vec<ModelStats>,
    pub passes: Vec<PassReport>,
    pub sessions: Vec<SessionReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelStats {
    #[serde(flatten)]
    pub model: ModelInfo,
    /// (label name or index, count), most frequent first.
    pub labels: Vec<(String, u64)>,
}

/// Columns a code matrix needs for one record.
#[derive(Debug, Clone)]
pub struct MatrixRow<'a> {
    pub id: i64,
    pub code: &'a [u8],
    pub label: u16,
    pub scene_id: u32,
    pub tile_id: u32,
    pub capture_time_ms: u64,
}

#[derive(Debug, Clone, Copy)]
struct ModelState {
    model_ref: i64,
    bits: u16,
    record_count: u64,
    max_record_id: i64,
}

/// An open archive.
pub struct Archive {
    dir: PathBuf,
    db_path: PathBuf,
    conn: Connection,
    models: HashMap<ModelId, ModelState>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive").field("dir", &self.dir).finish()
    }
}

impl Archive {
    /// Opens the archive in `dir`, creating it and migrating its schema as needed.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| GroundError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let db_path = dir.join("archive.sqlite");
        let sql = |source| GroundError::Sqlite {
            path: db_path.clone(),
            source,
        };
        let mut conn = Connection::open(&db_path).map_err(sql)?;
        // WAL: readers (queries) never block the ingest writer. FULL: a commit survives power loss,
        // not only a process crash; batching keeps its fsync off the per-record path.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", "OFF")
            .map_err(sql)?;
        // Another process (a query rebuilding its matrix) may hold the lock briefly.
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(sql)?;
        conn.pragma_update(None, "cache_size", -65536)
            .map_err(sql)?;
        migrate(&mut conn, &db_path)?;
        let mut archive = Self {
            dir: dir.to_path_buf(),
            db_path,
            conn,
            models: HashMap::new(),
        };
        archive.load_models()?;
        Ok(archive)
    }

    /// Opens an existing archive for reading only (queries, stats).
    pub fn open_read_only(dir: &Path) -> Result<Self> {
        let db_path = dir.join("archive.sqlite");
        if !db_path.exists() {
            return Err(GroundError::Io {
                path: db_path,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no archive here"),
            });
        }
        // Opening read-write lets SQLite recover a WAL left by a crashed writer; nothing is written.
        Self::open(dir).or_else(|_| {
            let conn = Connection::open_with_flags(&db_path, OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(|source| GroundError::Sqlite {
                    path: db_path.clone(),
                    source,
                })?;
            let mut archive = Self {
                dir: dir.to_path_buf(),
                db_path,
                conn,
                models: HashMap::new(),
            };
            archive.load_models()?;
            Ok(archive)
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Maps an SQLite error to one naming this archive (owns its path, so `self` stays free).
    fn sql(&self) -> impl Fn(rusqlite::Error) -> GroundError {
        sql_error(&self.db_path)
    }

    fn load_models(&mut self) -> Result<()> {
        let sql = self.sql();
        let mut statement = self
            .conn
            .prepare("SELECT model_id, id, code_bits, record_count, max_record_id FROM models")
            .map_err(&sql)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    ModelState {
                        model_ref: row.get(1)?,
                        bits: row.get(2)?,
                        record_count: row.get::<_, i64>(3)?.max(0) as u64,
                        max_record_id: row.get(4)?,
                    },
                ))
            })
            .map_err(&sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(&sql)?;
        drop(statement);
        let mut models = HashMap::new();
        for (text, state) in rows {
            models.insert(super::parse_model_id(&text)?, state);
        }
        self.models = models;
        Ok(())
    }

    /// Starts an ingest session; its row exists (unfinished) from now on.
    pub fn begin_session(
        &mut self,
        source: &str,
        peer: Option<&str>,
        authenticated: bool,
    ) -> Result<SessionReport> {
        let mut report = SessionReport {
            source: source.to_string(),
            peer: peer.map(str::to_string),
            authenticated,
            ..SessionReport::default()
        };
        let json = serde_json::to_string(&report).unwrap_or_default();
        self.conn
            .execute(
                "INSERT INTO sessions (source, peer, authenticated, started_ms, report_json)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![source, peer, authenticated, now_ms(), json],
            )
            .map_err(self.sql())?;
        report.session_id = self.conn.last_insert_rowid();
        Ok(report)
    }

    /// Starts a write transaction.
    pub fn begin(&mut self) -> Result<ArchiveTx<'_>> {
        let sql = |source| GroundError::Sqlite {
            path: self.db_path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql)?;
        Ok(ArchiveTx {
            tx,
            db_path: &self.db_path,
            models: &mut self.models,
            touched: HashMap::new(),
        })
    }

    /// Stores (or replaces) the model card of `model_id`: the JSON the export writes. Class names
    /// are taken from its `classes` (or `class_names`, `labels`) array of strings when present.
    /// The model need not have sent any packet yet.
    pub fn register_model_card(&mut self, model_id: ModelId, card_json: &str) -> Result<()> {
        let card: serde_json::Value =
            serde_json::from_str(card_json).map_err(|error| GroundError::BadModelCard {
                model: model_id,
                why: error.to_string(),
            })?;
        let bits = card
            .get("code_bits")
            .or_else(|| card.get("bits"))
            .and_then(serde_json::Value::as_u64)
            .and_then(|bits| u16::try_from(bits).ok());
        let known = self.models.get(&model_id).map(|state| state.bits);
        if let (Some(card_bits), Some(seen_bits)) = (bits, known) {
            if card_bits != seen_bits {
                return Err(GroundError::BadModelCard {
                    model: model_id,
                    why: format!(
                        "card says {card_bits}-bit codes, packets carry {seen_bits}-bit codes"
                    ),
                });
            }
        }
        let sql = self.sql();
        let updated = self
            .conn
            .execute(
                "UPDATE models SET card_json = ?2 WHERE model_id = ?1",
                params![model_id.to_string(), card_json],
            )
            .map_err(&sql)?;
        if updated == 0 {
            let Some(bits) = bits else {
                return Err(GroundError::BadModelCard {
                    model: model_id,
                    why: "the model has sent no packet yet, so the card must give code_bits"
                        .to_string(),
                });
            };
            let label_set = card
                .get("label_set")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            self.conn
                .execute(
                    "INSERT INTO models (model_id, code_bits, label_set, card_json, first_seen_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![model_id.to_string(), bits, label_set, card_json, now_ms()],
                )
                .map_err(&sql)?;
            drop(sql);
            self.load_models()?;
        }
        Ok(())
    }

    /// Every model seen, in order of first appearance.
    pub fn models(&self) -> Result<Vec<ModelInfo>> {
        let sql = self.sql();
        let mut statement = self
            .conn
            .prepare(
                "SELECT id, model_id, code_bits, label_set, record_count, max_record_id, card_json
                 FROM models ORDER BY id",
            )
            .map_err(&sql)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, u16>(2)?,
                    row.get::<_, u16>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, i64>(5)?,
                    row.get::<_, Option<String>>(6)?,
                ))
            })
            .map_err(&sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(&sql)?;
        rows.into_iter()
            .map(
                |(model_ref, text, code_bits, label_set, count, max_id, card)| {
                    Ok(ModelInfo {
                        model_ref,
                        model_id: super::parse_model_id(&text)?,
                        code_bits,
                        label_set,
                        record_count: count.max(0) as u64,
                        max_record_id: max_id,
                        class_names: card.as_deref().and_then(class_names),
                    })
                },
            )
            .collect()
    }

    /// The model `model_id`.
    pub fn model(&self, model_id: ModelId) -> Result<ModelInfo> {
        self.models()?
            .into_iter()
            .find(|model| model.model_id == model_id)
            .ok_or(GroundError::UnknownModel(model_id))
    }

    /// Calls `f` for every record of `model` with id above `after_id`, in id order.
    pub fn for_each_matrix_row(
        &self,
        model: &ModelInfo,
        after_id: i64,
        mut f: impl FnMut(MatrixRow<'_>) -> Result<()>,
    ) -> Result<()> {
        let sql = self.sql();
        // `id > ?` walks the rowid b-tree from there on; records of other models are skipped
        // without any index (records are appended, so a rebuild reads each row once).
        let mut statement = self
            .conn
            .prepare(
                "SELECT id, code, label, scene_id, tile_id, capture_time_ms FROM records
                 WHERE id > ?1 AND model_ref = ?2 ORDER BY id",
            )
            .map_err(&sql)?;
        let mut rows = statement
            .query(params![after_id, model.model_ref])
            .map_err(&sql)?;
        while let Some(row) = rows.next().map_err(&sql)? {
            let code =
                row.get_ref(1)
                    .map_err(&sql)?
                    .as_blob()
                    .map_err(|e| GroundError::Sqlite {
                        path: self.db_path.clone(),
                        source: e.into(),
                    })?;
            f(MatrixRow {
                id: row.get(0).map_err(&sql)?,
                code,
                label: row.get(2).map_err(&sql)?,
                scene_id: row.get(3).map_err(&sql)?,
                tile_id: row.get(4).map_err(&sql)?,
                capture_time_ms: row.get::<_, i64>(5).map_err(&sql)? as u64,
            })?;
        }
        Ok(())
    }

    /// The records with these ids (missing ids are skipped), in the order asked.
    pub fn records_by_id(&self, ids: &[i64]) -> Result<Vec<StoredRecord>> {
        let sql = self.sql();
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT r.id, m.model_id, r.scene_id, r.tile_id, r.capture_time_ms, r.row_px,
                        r.col_px, r.epsg, r.easting, r.northing, r.label, r.confidence, r.code
                 FROM records r JOIN models m ON m.id = r.model_ref WHERE r.id = ?1",
            )
            .map_err(&sql)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(record) = statement
                .query_row([id], stored_record)
                .optional()
                .map_err(&sql)?
            {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// The records of tile `tile_id` (in scene `scene_id` if given), oldest first.
    pub fn records_of_tile(
        &self,
        tile_id: u32,
        scene_id: Option<u32>,
    ) -> Result<Vec<StoredRecord>> {
        let sql = self.sql();
        let mut statement = self
            .conn
            .prepare(
                "SELECT r.id, m.model_id, r.scene_id, r.tile_id, r.capture_time_ms, r.row_px,
                        r.col_px, r.epsg, r.easting, r.northing, r.label, r.confidence, r.code
                 FROM records r JOIN models m ON m.id = r.model_ref
                 WHERE r.tile_id = ?1 AND (?2 IS NULL OR r.scene_id = ?2) ORDER BY r.id",
            )
            .map_err(&sql)?;
        let rows = statement
            .query_map(params![tile_id, scene_id], stored_record)
            .map_err(&sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(&sql)?;
        Ok(rows)
    }

    /// Records stored in total.
    pub fn record_count(&self) -> Result<u64> {
        Ok(self.models.values().map(|state| state.record_count).sum())
    }

    /// Ingest sessions, oldest first.
    pub fn sessions(&self) -> Result<Vec<SessionReport>> {
        let sql = self.sql();
        let mut statement = self
            .conn
            .prepare("SELECT id, report_json, finished_ms FROM sessions ORDER BY id")
            .map_err(&sql)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<i64>>(2)?,
                ))
            })
            .map_err(&sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(&sql)?;
        Ok(rows
            .into_iter()
            .map(|(id, json, finished)| {
                let mut report = parse_session_report(&json);
                report.session_id = id;
                report.finished = finished.is_some();
                report
            })
            .collect())
    }

    /// Every pass (APID, epoch) in the archive, with its losses as the archive stands.
    pub fn passes(&self) -> Result<Vec<PassReport>> {
        let sql = self.sql();
        let mut received: BTreeMap<(u16, u32), (u64, u64)> = BTreeMap::new();
        {
            let mut statement = self
                .conn
                .prepare(
                    "SELECT apid, epoch, SUM(packets_received), SUM(duplicates)
                     FROM session_passes GROUP BY apid, epoch",
                )
                .map_err(&sql)?;
            let rows = statement
                .query_map([], |row| {
                    Ok((
                        (row.get::<_, u16>(0)?, row.get::<_, u32>(1)?),
                        (
                            row.get::<_, i64>(2)?.max(0) as u64,
                            row.get::<_, i64>(3)?.max(0) as u64,
                        ),
                    ))
                })
                .map_err(&sql)?;
            for row in rows {
                let (key, value) = row.map_err(&sql)?;
                received.insert(key, value);
            }
        }
        // Packets in arrival order per pass; unwrapping the 14-bit counts needs that order.
        let mut statement = self
            .conn
            .prepare(
                "SELECT apid, epoch, sequence_count, record_count FROM packets
                 ORDER BY apid, epoch, id",
            )
            .map_err(&sql)?;
        let mut rows = statement.query([]).map_err(&sql)?;
        let mut passes = Vec::new();
        let mut current: Option<(u16, u32, SequenceUnwrapper, u64)> = None;
        let finish = |(apid, epoch, unwrapper, records): (u16, u32, SequenceUnwrapper, u64),
                      passes: &mut Vec<PassReport>| {
            let (packets_received, duplicates) =
                received.get(&(apid, epoch)).copied().unwrap_or((0, 0));
            passes.push(PassReport {
                apid,
                epoch,
                packets_stored: unwrapper.distinct(),
                records_stored: records,
                packets_received,
                duplicates,
                missing: unwrapper.missing(),
            });
        };
        while let Some(row) = rows.next().map_err(&sql)? {
            let apid: u16 = row.get(0).map_err(&sql)?;
            let epoch: u32 = row.get(1).map_err(&sql)?;
            let count: u16 = row.get(2).map_err(&sql)?;
            let records: i64 = row.get(3).map_err(&sql)?;
            if current
                .as_ref()
                .is_none_or(|(a, e, _, _)| (*a, *e) != (apid, epoch))
            {
                if let Some(done) = current.take() {
                    finish(done, &mut passes);
                }
                current = Some((apid, epoch, SequenceUnwrapper::default(), 0));
            }
            if let Some((_, _, unwrapper, stored)) = current.as_mut() {
                unwrapper.push(count);
                *stored += records.max(0) as u64;
            }
        }
        if let Some(done) = current.take() {
            finish(done, &mut passes);
        }
        Ok(passes)
    }

    /// Everything `orbhash ground stats` shows.
    pub fn stats(&self) -> Result<ArchiveStats> {
        let sql = self.sql();
        let models = self.models()?;
        let mut labels: HashMap<i64, Vec<(u16, u64)>> = HashMap::new();
        {
            let mut statement = self
                .conn
                .prepare("SELECT model_ref, label, COUNT(*) FROM records GROUP BY model_ref, label")
                .map_err(&sql)?;
            let rows = statement
                .query_map([], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, u16>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                })
                .map_err(&sql)?;
            for row in rows {
                let (model_ref, label, count) = row.map_err(&sql)?;
                labels
                    .entry(model_ref)
                    .or_default()
                    .push((label, count.max(0) as u64));
            }
        }
        let packets: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM packets", [], |row| row.get(0))
            .map_err(&sql)?;
        let model_stats = models
            .into_iter()
            .map(|model| {
                let mut counts = labels.remove(&model.model_ref).unwrap_or_default();
                counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                ModelStats {
                    labels: counts
                        .into_iter()
                        .map(|(label, count)| (model.label_name(label), count))
                        .collect(),
                    model,
                }
            })
            .collect();
        Ok(ArchiveStats {
            path: self.dir.display().to_string(),
            bytes_on_disk: dir_size(&self.dir),
            records: self.record_count()?,
            packets: packets.max(0) as u64,
            models: model_stats,
            passes: self.passes()?,
            sessions: self.sessions()?,
        })
    }
}

/// An open write transaction. Dropped without [`commit`](Self::commit), nothing it did is kept.
pub struct ArchiveTx<'a> {
    tx: rusqlite::Transaction<'a>,
    db_path: &'a Path,
    models: &'a mut HashMap<ModelId, ModelState>,
    /// Model states as this transaction leaves them; applied to `models` only on commit.
    touched: HashMap<ModelId, ModelState>,
}

impl ArchiveTx<'_> {
    fn sql(&self) -> impl Fn(rusqlite::Error) -> GroundError {
        sql_error(self.db_path)
    }

    fn model_state(&mut self, header: &PacketHeader) -> Result<ModelState> {
        let id = header.model_id;
        if let Some(state) = self.touched.get(&id).or_else(|| self.models.get(&id)) {
            return Ok(*state);
        }
        let sql = |source| GroundError::Sqlite {
            path: self.db_path.to_path_buf(),
            source,
        };
        self.tx
            .execute(
                "INSERT INTO models (model_id, code_bits, label_set, first_seen_ms)
                 VALUES (?1, ?2, ?3, ?4)",
                params![id.to_string(), header.code_bits, header.label_set, now_ms()],
            )
            .map_err(sql)?;
        let state = ModelState {
            model_ref: self.tx.last_insert_rowid(),
            bits: header.code_bits,
            record_count: 0,
            max_record_id: 0,
        };
        self.touched.insert(id, state);
        Ok(state)
    }

    /// Stores a packet and its records; `Ok(false)` when the archive already had it.
    pub fn store_packet(&mut self, packet: &PendingPacket, session_id: i64) -> Result<bool> {
        let header = &packet.header;
        let mut state = self.model_state(header)?;
        if state.bits != header.code_bits {
            // Same model id, different K: impossible for a genuine model; keep the archive clean.
            return Err(GroundError::CodeLength {
                model: header.model_id,
                expected: state.bits,
                found: header.code_bits,
            });
        }
        let sql = self.sql();
        let inserted = self
            .tx
            .prepare_cached(
                "INSERT OR IGNORE INTO packets (apid, epoch, sequence_count, scene_id,
                    first_tile_id, time_base_ms, model_ref, record_count, authenticated, session_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .map_err(&sql)?
            .execute(params![
                header.apid,
                header.epoch,
                header.sequence_count,
                header.scene_id,
                header.first_tile_id,
                header.time_base_ms as i64,
                state.model_ref,
                packet.records.len() as i64,
                packet.authenticated,
                session_id,
            ])
            .map_err(&sql)?;
        if inserted == 0 {
            return Ok(false);
        }
        let packet_id = self.tx.last_insert_rowid();
        let mut insert = self
            .tx
            .prepare_cached(
                "INSERT INTO records (packet_id, record_index, model_ref, scene_id, tile_id,
                    capture_time_ms, row_px, col_px, epsg, easting, northing, label, confidence,
                    code)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )
            .map_err(&sql)?;
        for (index, record) in packet.records.iter().enumerate() {
            let map = record.position.map;
            insert
                .execute(params![
                    packet_id,
                    index as i64,
                    state.model_ref,
                    record.position.scene_id,
                    record.tile_id,
                    record.capture_time_ms as i64,
                    record.position.row_px,
                    record.position.col_px,
                    map.map(|m| m.epsg),
                    map.map(|m| m.easting),
                    map.map(|m| m.northing),
                    record.label,
                    record.confidence,
                    record.code.as_bytes(),
                ])
                .map_err(&sql)?;
            state.max_record_id = self.tx.last_insert_rowid();
        }
        state.record_count += packet.records.len() as u64;
        drop(insert);
        self.touched.insert(header.model_id, state);
        Ok(true)
    }

    /// Saves a session's report as of this transaction.
    pub fn save_session(&mut self, report: &SessionReport, finished: bool) -> Result<()> {
        let sql = self.sql();
        let json = serde_json::to_string(report).unwrap_or_default();
        self.tx
            .prepare_cached("UPDATE sessions SET report_json = ?2, finished_ms = ?3 WHERE id = ?1")
            .map_err(&sql)?
            .execute(params![report.session_id, json, finished.then(now_ms)])
            .map_err(&sql)?;
        let mut upsert = self
            .tx
            .prepare_cached(
                "INSERT OR REPLACE INTO session_passes (session_id, apid, epoch,
                    packets_received, packets_stored, duplicates, missing, late)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(&sql)?;
        for pass in &report.passes {
            upsert
                .execute(params![
                    report.session_id,
                    pass.apid,
                    pass.epoch,
                    pass.packets_received as i64,
                    pass.packets_stored as i64,
                    pass.duplicates as i64,
                    pass.missing as i64,
                    pass.late as i64,
                ])
                .map_err(&sql)?;
        }
        Ok(())
    }

    /// Makes everything in this transaction durable (WAL + fsync), all or nothing.
    pub fn commit(self) -> Result<()> {
        let sql = |source| GroundError::Sqlite {
            path: self.db_path.to_path_buf(),
            source,
        };
        {
            let mut update = self
                .tx
                .prepare_cached(
                    "UPDATE models SET record_count = ?2, max_record_id = ?3 WHERE id = ?1",
                )
                .map_err(sql)?;
            for state in self.touched.values() {
                update
                    .execute(params![
                        state.model_ref,
                        state.record_count as i64,
                        state.max_record_id
                    ])
                    .map_err(sql)?;
            }
        }
        self.tx.commit().map_err(sql)?;
        self.models.extend(self.touched);
        Ok(())
    }
}

fn sql_error(path: &Path) -> impl Fn(rusqlite::Error) -> GroundError {
    let path = path.to_path_buf();
    move |source| GroundError::Sqlite {
        path: path.clone(),
        source,
    }
}

fn stored_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRecord> {
    let epsg: Option<u32> = row.get(7)?;
    let easting: Option<f64> = row.get(8)?;
    let northing: Option<f64> = row.get(9)?;
    let code: Vec<u8> = row.get(12)?;
    Ok(StoredRecord {
        id: row.get(0)?,
        model_id: row.get(1)?,
        scene_id: row.get(2)?,
        tile_id: row.get(3)?,
        capture_time_ms: row.get::<_, i64>(4)? as u64,
        row_px: row.get(5)?,
        col_px: row.get(6)?,
        map: match (epsg, easting, northing) {
            (Some(epsg), Some(easting), Some(northing)) => Some(MapCoordinates {
                epsg,
                easting,
                northing,
            }),
            _ => None,
        },
        label: row.get(10)?,
        confidence: row.get(11)?,
        code: to_hex(&code),
    })
}

fn parse_session_report(json: &str) -> SessionReport {
    // Reports are written by this module; a row from a newer build that does not parse still shows.
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Stored {
        source: String,
        peer: Option<String>,
        authenticated: bool,
        bytes: u64,
        frames: u64,
        packets_received: u64,
        packets_stored: u64,
        records_stored: u64,
        packets_duplicate: u64,
        records_duplicate: u64,
        corrupt: u64,
        missing: u64,
        late: u64,
        auth_failures: u64,
        other_rejected: u64,
        passes: Vec<StoredPass>,
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct StoredPass {
        apid: u16,
        epoch: u32,
        packets_received: u64,
        packets_stored: u64,
        duplicates: u64,
        missing: u64,
        late: u64,
    }
    let stored: Stored = serde_json::from_str(json).unwrap_or_default();
    SessionReport {
        session_id: 0,
        source: stored.source,
        peer: stored.peer,
        authenticated: stored.authenticated,
        bytes: stored.bytes,
        frames: stored.frames,
        packets_received: stored.packets_received,
        packets_stored: stored.packets_stored,
        records_stored: stored.records_stored,
        packets_duplicate: stored.packets_duplicate,
        records_duplicate: stored.records_duplicate,
        corrupt: stored.corrupt,
        missing: stored.missing,
        late: stored.late,
        auth_failures: stored.auth_failures,
        other_rejected: stored.other_rejected,
        finished: false,
        passes: stored
            .passes
            .into_iter()
            .map(|pass| PassCounts {
                apid: pass.apid,
                epoch: pass.epoch,
                packets_received: pass.packets_received,
                packets_stored: pass.packets_stored,
                duplicates: pass.duplicates,
                missing: pass.missing,
                late: pass.late,
            })
            .collect(),
    }
}

/// Class names from a model card: the first of `classes`, `class_names`, `labels` that is an
/// array of strings.
fn class_names(card_json: &str) -> Option<Vec<String>> {
    let card: serde_json::Value = serde_json::from_str(card_json).ok()?;
    ["classes", "class_names", "labels"].iter().find_map(|key| {
        card.get(*key)?
            .as_array()?
            .iter()
            .map(|name| name.as_str().map(str::to_string))
            .collect()
    })
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let sql = |source| GroundError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sql)?;
    if version > SCHEMA_VERSION {
        return Err(GroundError::SchemaTooNew {
            path: path.to_path_buf(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    for (from, migration) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        // Each step and its version bump in one transaction: a crash leaves the old version whole.
        let tx = conn.transaction().map_err(sql)?;
        tx.execute_batch(migration).map_err(sql)?;
        tx.pragma_update(None, "user_version", from as i64 + 1)
            .map_err(sql)?;
        tx.commit().map_err(sql)?;
    }
    Ok(())
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Unwraps 14-bit sequence counts seen in arrival order into a monotone count, to tell how many
/// are missing between the first and the last. A count is placed at the nearest position (within
/// ±2^13) to the highest seen so far, which is right as long as reordering stays below 2^13
/// packets (the decoder's own window is 256).
#[derive(Debug, Default, Clone)]
pub struct SequenceUnwrapper {
    highest: Option<i64>,
    lowest: i64,
    seen: std::collections::HashSet<i64>,
}

impl SequenceUnwrapper {
    pub fn push(&mut self, count: u16) {
        const MODULUS: i64 = 1 << 14;
        let position = match self.highest {
            None => i64::from(count),
            Some(highest) => {
                let delta = (i64::from(count) - highest).rem_euclid(MODULUS);
                let delta = if delta >= MODULUS / 2 {
                    delta - MODULUS
                } else {
                    delta
                };
                highest + delta
            }
        };
        if self.highest.is_none() {
            self.lowest = position;
        }
        self.highest = Some(self.highest.map_or(position, |h| h.max(position)));
        self.lowest = self.lowest.min(position);
        self.seen.insert(position);
    }

    pub fn distinct(&self) -> u64 {
        self.seen.len() as u64
    }

    pub fn missing(&self) -> u64 {
        match self.highest {
            None => 0,
            Some(highest) => ((highest - self.lowest + 1) as u64).saturating_sub(self.distinct()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwrapper_counts_gaps_across_the_wrap() {
        let mut unwrapper = SequenceUnwrapper::default();
        for count in (16_380..16_384).chain(0..5) {
            if count != 16_383 && count != 2 {
                unwrapper.push(count as u16);
            }
        }
        // Late arrival of a missing one.
        unwrapper.push(2);
        assert_eq!(unwrapper.distinct(), 8);
        assert_eq!(unwrapper.missing(), 1);
    }

    #[test]
    fn class_names_come_from_the_card() {
        assert_eq!(
            class_names(r#"{"classes": ["water", "forest"]}"#),
            Some(vec!["water".to_string(), "forest".to_string()])
        );
        assert_eq!(class_names(r#"{"classes": [1]}"#), None);
        assert_eq!(class_names("not json"), None);
    }
}

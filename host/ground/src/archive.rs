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
//!
//! # Loss accounting
//!
//! Sequence and loss figures are the ingest decoder's (`orbhash_wire::PassStats`), stored per
//! session and pass in `session_passes` as reported; [`Archive::passes`] reads them back rather
//! than recounting from the packets it holds.

// Rows read back from the archive and bytes from its packets are untrusted: no panics on them.
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

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use orbhash_contract::card::ModelCard;
use orbhash_wire::{MapCoordinates, ModelId, PacketHeader, Record};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::{now_ms, GroundError, Result};

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 5;

/// Schema migrations: entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
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
"#,
    // Version 2. A model's label set comes from its packets, so it is unknown (NULL) for a model whose
    // card was registered before any packet arrived. Cards are now the strict `ModelCard` JSON; the
    // untyped cards of version 1 would not read, so they are dropped: register them again.
    r#"
CREATE TABLE models_v2 (
    id INTEGER PRIMARY KEY,
    model_id TEXT NOT NULL UNIQUE,      -- 16 hex digits
    code_bits INTEGER NOT NULL,
    label_set INTEGER,                  -- from its packets; NULL until the first arrives
    card_json TEXT,                     -- ModelCard::to_json, once registered
    first_seen_ms INTEGER NOT NULL,
    record_count INTEGER NOT NULL DEFAULT 0,
    max_record_id INTEGER NOT NULL DEFAULT 0
);
INSERT INTO models_v2 (id, model_id, code_bits, label_set, card_json, first_seen_ms,
                       record_count, max_record_id)
    SELECT id, model_id, code_bits, label_set, NULL, first_seen_ms, record_count, max_record_id
    FROM models;
DROP TABLE models;
ALTER TABLE models_v2 RENAME TO models;
"#,
    // Version 3. Tasking (see `crate::tasks`): the tiles operators asked for and what became of
    // them; the uplink's command stream position; what each pass of a two-way link carried.
    r#"
CREATE TABLE tasks (
    id INTEGER PRIMARY KEY,
    request INTEGER NOT NULL,           -- the request id the telecommand carries
    scene_id INTEGER NOT NULL,
    tile_id INTEGER NOT NULL,
    status TEXT NOT NULL,               -- requested | sent | received | absent | cancelled
    requested_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    uplinked INTEGER NOT NULL DEFAULT 0, -- telecommands that carried it
    file TEXT,                          -- under tiles/, once received
    bytes INTEGER,
    answer TEXT                         -- the board's words when it could not send the tile
);
CREATE INDEX tasks_by_tile ON tasks (scene_id, tile_id);
CREATE TABLE telecommands (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,                 -- cancel-request | set-retention
    request INTEGER,                    -- cancel-request: the request
    capacity_bytes INTEGER,             -- set-retention
    max_age_s INTEGER,                  -- set-retention
    queued_ms INTEGER NOT NULL,
    uplinked INTEGER NOT NULL DEFAULT 0 -- times sent so far
);
CREATE TABLE uplink (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    epoch INTEGER NOT NULL,
    counter INTEGER NOT NULL            -- the last counter used
);
CREATE TABLE link_passes (
    pass INTEGER NOT NULL,              -- the contact window's number
    run_ms INTEGER NOT NULL,            -- when the `contact` process that counted it started
    updated_ms INTEGER NOT NULL,
    account_json TEXT NOT NULL,         -- that process's PassAccount, as of the last update
    PRIMARY KEY (pass, run_ms)
);
"#,
    // Version 4. The board's reports (see `crate::reports`): which telecommand each stream
    // position carried and whether the board reported it carried out; scenes it evicted.
    r#"
CREATE TABLE uplinked (
    epoch INTEGER NOT NULL,
    counter INTEGER NOT NULL,
    kind TEXT NOT NULL,                 -- request-tiles | cancel-request | set-retention
    request INTEGER,                    -- request-tiles: the request whose tiles it carried
    telecommand INTEGER,                -- cancel-request, set-retention: telecommands.id
    sent_ms INTEGER NOT NULL,
    executed_ms INTEGER,                -- when the board's report that it carried it out came
    PRIMARY KEY (epoch, counter)
);
CREATE INDEX uplinked_by_request ON uplinked (request);
ALTER TABLE telecommands ADD COLUMN executed_ms INTEGER;
CREATE TABLE evictions (
    scene_id INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    cause TEXT NOT NULL,                -- capacity | age
    board_ms INTEGER NOT NULL,          -- the board's clock when it evicted the scene
    received_ms INTEGER NOT NULL,
    UNIQUE (scene_id, board_ms)
);
"#,
    // Version 5. The Milvus backend (see `crate::milvus`): per deployment and model, the highest
    // record id its collection is known to hold.
    r#"
CREATE TABLE milvus_sync (
    url TEXT NOT NULL,
    model_id TEXT NOT NULL,             -- 16 hex digits
    high_water INTEGER NOT NULL,        -- every record id up to this is in the collection
    PRIMARY KEY (url, model_id)
);
"#,
];

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
    /// From its packets; `None` for a model only its card has announced so far.
    pub label_set: Option<u16>,
    pub record_count: u64,
    pub max_record_id: i64,
    /// The model card's classes, when a card was registered.
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

/// Per pass (APID, epoch) counts within one ingest session: the decoder's figures for the pass
/// (`orbhash_wire::PassStats`), and what the archive made of its packets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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

/// What one ingest session (a file, stdin, a TCP connection) brought. Its loss figures are the
/// sums of its passes'.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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

/// A pass across all sessions: what the archive holds of it, and the sessions' decoder figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PassReport {
    pub apid: u16,
    pub epoch: u32,
    pub packets_stored: u64,
    pub records_stored: u64,
    /// Sessions that received packets of this pass.
    pub sessions: u64,
    /// Sum over sessions of packets the decoder accepted for this pass.
    pub packets_received: u64,
    /// Sum over sessions of duplicate packets.
    pub duplicates: u64,
    /// Sum over sessions of late packets.
    pub late: u64,
    /// The fewest packets any one session's decoder found missing from this pass: ingesting a
    /// pass again from a better recording lowers it. Sessions are not joined up, so a pass whose
    /// halves came through different sessions counts only the gaps within each.
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
    /// `None` until the model's first packet (a card registered ahead of it).
    label_set: Option<u16>,
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
        let sql = sql_error(&db_path);
        let mut conn = Connection::open(&db_path).map_err(&sql)?;
        // WAL: readers (queries) never block the ingest writer. FULL: a commit survives power loss,
        // not only a process crash; batching keeps its fsync off the per-record path.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(&sql)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(&sql)?;
        conn.pragma_update(None, "foreign_keys", "OFF")
            .map_err(&sql)?;
        // Another process (a query rebuilding its matrix) may hold the lock briefly.
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(&sql)?;
        conn.pragma_update(None, "cache_size", -65536)
            .map_err(&sql)?;
        migrate(&mut conn, &db_path)?;
        Self::with_connection(dir, db_path, conn)
    }

    fn with_connection(dir: &Path, db_path: PathBuf, conn: Connection) -> Result<Self> {
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
                .map_err(sql_error(&db_path))?;
            Self::with_connection(dir, db_path, conn)
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The connection, for the modules that keep their own tables in the archive (`tasks`).
    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The archive database's path, for errors.
    pub(crate) fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// Maps an SQLite error to one naming this archive (owns its path, so `self` stays free).
    fn sql(&self) -> impl Fn(rusqlite::Error) -> GroundError {
        sql_error(&self.db_path)
    }

    /// Runs a query and collects its rows through `map`: the one way this module reads rows.
    fn query_rows<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let error = self.sql();
        let mut statement = self.conn.prepare_cached(sql).map_err(&error)?;
        let rows = statement
            .query_map(params, map)
            .map_err(&error)?
            .collect::<rusqlite::Result<Vec<T>>>()
            .map_err(&error);
        rows
    }

    fn load_models(&mut self) -> Result<()> {
        let rows = self.query_rows(
            "SELECT model_id, id, code_bits, label_set, record_count, max_record_id FROM models",
            [],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    ModelState {
                        model_ref: row.get(1)?,
                        bits: row.get(2)?,
                        label_set: row.get(3)?,
                        record_count: count(row.get(4)?),
                        max_record_id: row.get(5)?,
                    },
                ))
            },
        )?;
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
        let json = report_json(&report);
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
        let sql = sql_error(&self.db_path);
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

    /// Stores (or replaces) a model's card, so its labels show by class name. The model need not
    /// have sent any packet yet; if it has, the card must agree on its code length.
    pub fn register_model_card(&mut self, card: &ModelCard) -> Result<()> {
        let model = card.model_id;
        if let Some(state) = self.models.get(&model) {
            if state.bits != card.bits {
                return Err(GroundError::CardCodeLength {
                    model,
                    card_bits: card.bits,
                    seen_bits: state.bits,
                });
            }
        }
        let json = card.to_json();
        let sql = self.sql();
        let updated = self
            .conn
            .execute(
                "UPDATE models SET card_json = ?2 WHERE model_id = ?1",
                params![model.to_string(), json],
            )
            .map_err(&sql)?;
        if updated == 0 {
            self.conn
                .execute(
                    "INSERT INTO models (model_id, code_bits, card_json, first_seen_ms)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![model.to_string(), card.bits, json, now_ms()],
                )
                .map_err(&sql)?;
            drop(sql);
            self.load_models()?;
        }
        Ok(())
    }

    /// Every model seen, in order of first appearance.
    pub fn models(&self) -> Result<Vec<ModelInfo>> {
        let rows = self.query_rows(
            "SELECT id, model_id, code_bits, label_set, record_count, max_record_id, card_json
             FROM models ORDER BY id",
            [],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, u16>(2)?,
                    row.get::<_, Option<u16>>(3)?,
                    row.get::<_, Option<i64>>(4)?,
                    row.get::<_, i64>(5)?,
                    row.get::<_, Option<String>>(6)?,
                ))
            },
        )?;
        rows.into_iter()
            .map(
                |(model_ref, text, code_bits, label_set, records, max_record_id, card)| {
                    let model_id = super::parse_model_id(&text)?;
                    let class_names = match card {
                        Some(json) => Some(
                            ModelCard::from_json(&json)
                                .map_err(|source| GroundError::BadModelCard {
                                    what: format!("stored for model {model_id}"),
                                    source,
                                })?
                                .classes,
                        ),
                        None => None,
                    };
                    Ok(ModelInfo {
                        model_ref,
                        model_id,
                        code_bits,
                        label_set,
                        record_count: count(records),
                        max_record_id,
                        class_names,
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
            let code = row
                .get_ref(1)
                .map_err(&sql)?
                .as_blob()
                .map_err(|e| sql(e.into()))?;
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
        self.query_rows(
            "SELECT r.id, m.model_id, r.scene_id, r.tile_id, r.capture_time_ms, r.row_px,
                    r.col_px, r.epsg, r.easting, r.northing, r.label, r.confidence, r.code
             FROM records r JOIN models m ON m.id = r.model_ref
             WHERE r.tile_id = ?1 AND (?2 IS NULL OR r.scene_id = ?2) ORDER BY r.id",
            params![tile_id, scene_id],
            stored_record,
        )
    }

    /// Records stored in total.
    pub fn record_count(&self) -> Result<u64> {
        Ok(self.models.values().map(|state| state.record_count).sum())
    }

    /// Ingest sessions, oldest first.
    pub fn sessions(&self) -> Result<Vec<SessionReport>> {
        let rows = self.query_rows(
            "SELECT id, report_json, finished_ms FROM sessions ORDER BY id",
            [],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<i64>>(2)?,
                ))
            },
        )?;
        rows.into_iter()
            .map(|(id, json, finished)| {
                let mut report: SessionReport =
                    serde_json::from_str(&json).map_err(|source| GroundError::BadReport {
                        path: self.db_path.clone(),
                        session: id,
                        source,
                    })?;
                report.session_id = id;
                report.finished = finished.is_some();
                Ok(report)
            })
            .collect()
    }

    /// Every pass (APID, epoch) in the archive: what it holds of each, and the figures the
    /// sessions' decoders reported (see [`PassReport`]).
    pub fn passes(&self) -> Result<Vec<PassReport>> {
        let mut passes: BTreeMap<(u16, u32), PassReport> = BTreeMap::new();
        let stored = self.query_rows(
            "SELECT apid, epoch, COUNT(*), SUM(record_count) FROM packets GROUP BY apid, epoch",
            [],
            |row| {
                Ok((
                    row.get::<_, u16>(0)?,
                    row.get::<_, u32>(1)?,
                    row.get(2)?,
                    row.get(3)?,
                ))
            },
        )?;
        for (apid, epoch, packets, records) in stored {
            let report = pass_entry(&mut passes, apid, epoch);
            report.packets_stored = count(packets);
            report.records_stored = count(records);
        }
        let received = self.query_rows(
            "SELECT apid, epoch, COUNT(*), SUM(packets_received), SUM(duplicates), SUM(late),
                    MIN(missing)
             FROM session_passes GROUP BY apid, epoch",
            [],
            |row| {
                Ok((
                    row.get::<_, u16>(0)?,
                    row.get::<_, u32>(1)?,
                    [
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                        row.get(6)?,
                    ],
                ))
            },
        )?;
        for (apid, epoch, [sessions, packets, duplicates, late, missing]) in received {
            let report = pass_entry(&mut passes, apid, epoch);
            report.sessions = count(sessions);
            report.packets_received = count(packets);
            report.duplicates = count(duplicates);
            report.late = count(late);
            report.missing = count(missing);
        }
        Ok(passes.into_values().collect())
    }

    /// Everything `orbhash ground stats` shows.
    pub fn stats(&self) -> Result<ArchiveStats> {
        let models = self.models()?;
        let mut labels: HashMap<i64, Vec<(u16, u64)>> = HashMap::new();
        let rows = self.query_rows(
            "SELECT model_ref, label, COUNT(*) FROM records GROUP BY model_ref, label",
            [],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, u16>(1)?, row.get(2)?)),
        )?;
        for (model_ref, label, records) in rows {
            labels
                .entry(model_ref)
                .or_default()
                .push((label, count(records)));
        }
        let packets: Option<i64> = self
            .conn
            .query_row("SELECT COUNT(*) FROM packets", [], |row| row.get(0))
            .map_err(self.sql())?;
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
            packets: count(packets),
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
        let sql = sql_error(self.db_path);
        if let Some(mut state) = self
            .touched
            .get(&id)
            .or_else(|| self.models.get(&id))
            .copied()
        {
            if state.label_set.is_none() {
                // Its card came first; the first packet tells the label set.
                self.tx
                    .execute(
                        "UPDATE models SET label_set = ?2 WHERE id = ?1",
                        params![state.model_ref, header.label_set],
                    )
                    .map_err(&sql)?;
                state.label_set = Some(header.label_set);
                self.touched.insert(id, state);
            }
            return Ok(state);
        }
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
            label_set: Some(header.label_set),
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
            return Err(GroundError::PacketCodeLength {
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
        let json = report_json(report);
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
        let sql = sql_error(self.db_path);
        {
            let mut update = self
                .tx
                .prepare_cached(
                    "UPDATE models SET record_count = ?2, max_record_id = ?3 WHERE id = ?1",
                )
                .map_err(&sql)?;
            for state in self.touched.values() {
                update
                    .execute(params![
                        state.model_ref,
                        state.record_count as i64,
                        state.max_record_id
                    ])
                    .map_err(&sql)?;
            }
        }
        self.tx.commit().map_err(&sql)?;
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
        code: orbhash_wire::hex::encode(&code),
    })
}

fn pass_entry(
    passes: &mut BTreeMap<(u16, u32), PassReport>,
    apid: u16,
    epoch: u32,
) -> &mut PassReport {
    passes.entry((apid, epoch)).or_insert_with(|| PassReport {
        apid,
        epoch,
        ..PassReport::default()
    })
}

/// A report as the `sessions` table keeps it.
fn report_json(report: &SessionReport) -> String {
    // Plain numbers and strings always serialise; the fallback only keeps this infallible.
    serde_json::to_string(report).unwrap_or_default()
}

/// A count SQLite returns as i64 (or NULL for an empty sum): never negative, as this module
/// writes only counts.
fn count(value: Option<i64>) -> u64 {
    value.map_or(0, |value| u64::try_from(value).unwrap_or(0))
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let sql = sql_error(path);
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(&sql)?;
    if version > SCHEMA_VERSION {
        return Err(GroundError::SchemaTooNew {
            path: path.to_path_buf(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    for (from, migration) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        // Each step and its version bump in one transaction: a crash leaves the old version whole.
        let tx = conn.transaction().map_err(&sql)?;
        tx.execute_batch(migration).map_err(&sql)?;
        tx.pragma_update(None, "user_version", from as i64 + 1)
            .map_err(&sql)?;
        tx.commit().map_err(&sql)?;
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

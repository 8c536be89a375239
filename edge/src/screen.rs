//! On-board screening (`orbhash-edge run --drop-label NAME`): tiles the model labels with one of
//! the given classes (clouds, say, for a model trained on a cloud-screening set) are not
//! downlinked, as Φsat-1 discarded cloudy frames before downlink.
//!
//! What a dropped tile sends: nothing on the link. The wire has only record packets, and a record
//! of a cloud would put a code into the ground's search index that nobody wants to find; a
//! per-tile "dropped" marker would change the wire format every ground station decodes. Instead
//! the board keeps the decisions: the run summary counts them per label and lists this run's
//! dropped tile ids, and `screened.log` in the queue directory holds every decision durably.
//! On the ground a dropped tile is a hole in a scene's tile ids *without* a sequence gap (its
//! record never entered a packet), while a lost frame is a sequence gap the ingest counts as
//! missing; the board's summary says which holes are screened tiles.
//!
//! Restart safety: a dropped tile has no record in the queue, so the queue's recovery alone would
//! hash it again after a crash. The decision is deterministic (same model, same tile, same
//! threshold), so hashing again would be *correct*, but it would spend the board's compute and
//! power on every screened tile once per restart, and the summary after a restart could not say
//! how many tiles earlier runs dropped. So decisions are persisted: `screened.log` lines
//! `<model id> <scene id> <tile id> <label index> <confidence> <raw bytes>`, appended and
//! fsynced. A restarted run skips a logged tile only when the current command would drop it too
//! (same model, label still dropped, confidence still at or above the threshold) and no earlier
//! run queued its record: a rerun with fewer `--drop-label`s hashes and sends what it no longer
//! drops, so the log never hides a tile the command in force would downlink. A decision lost to a
//! crash before its fsync is simply made again, which is why lines may be batched.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use orbhash_contract::card::ModelCard;
use orbhash_wire::{confidence_probability, quantise_confidence, ModelId};

/// The default `--min-confidence`. Dropping is irreversible (the ground never sees the tile), so a
/// tile is dropped only when the model gives its label at least even odds against all other
/// classes together; a weaker guess is downlinked with its label and the ground can still discard
/// it. For a two-class model every predicted label already has probability ≥ 0.5, so there this
/// is the same as dropping on the label alone.
pub const DEFAULT_MIN_CONFIDENCE: f32 = 0.5;

/// The file in the queue directory that holds the drop decisions.
pub const LOG_FILE: &str = "screened.log";

/// What to drop, as given on the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct ScreeningOptions {
    /// Class names, as the model card spells them. Empty: nothing is dropped.
    pub drop_labels: Vec<String>,
    /// Drop only when the predicted label's probability is at least this.
    pub min_confidence: f32,
}

impl Default for ScreeningOptions {
    fn default() -> Self {
        Self {
            drop_labels: Vec::new(),
            min_confidence: DEFAULT_MIN_CONFIDENCE,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScreenError {
    #[error(
        "--drop-label {name:?} is not a class of this model; its classes are: {}",
        classes.join(", ")
    )]
    UnknownLabel { name: String, classes: Vec<String> },
    #[error("--min-confidence {0}: give a probability from 0 to 1")]
    Confidence(f32),
    #[error("screening log {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The screening policy, checked against the model card.
#[derive(Debug, Clone, PartialEq)]
pub struct Screen {
    /// Class indices to drop, sorted.
    labels: Vec<u16>,
    /// The threshold at the wire's resolution: the decision is taken on the quantised confidence a
    /// record carries, so the ground can reproduce it from a plain run's records exactly.
    threshold: u8,
    names: Vec<String>,
    model_id: ModelId,
}

impl Screen {
    /// The policy for `card`; `None` when nothing is to be dropped. Every name must be one of the
    /// card's classes: a misspelt label would otherwise drop nothing, silently.
    pub fn new(options: &ScreeningOptions, card: &ModelCard) -> Result<Option<Self>, ScreenError> {
        let p = options.min_confidence;
        if !(0.0..=1.0).contains(&p) {
            return Err(ScreenError::Confidence(p));
        }
        let mut labels = Vec::new();
        for name in &options.drop_labels {
            let index = card
                .classes
                .iter()
                .position(|class| class == name)
                .and_then(|index| u16::try_from(index).ok())
                .ok_or_else(|| ScreenError::UnknownLabel {
                    name: name.clone(),
                    classes: card.classes.clone(),
                })?;
            labels.push(index);
        }
        labels.sort_unstable();
        labels.dedup();
        if labels.is_empty() {
            return Ok(None);
        }
        let names = labels
            .iter()
            .filter_map(|&index| card.classes.get(usize::from(index)).cloned())
            .collect();
        Ok(Some(Self {
            labels,
            threshold: quantise_confidence(p),
            names,
            model_id: card.model_id,
        }))
    }

    /// Whether a tile hashed to `label` with (quantised) `confidence` is dropped.
    pub fn drops(&self, label: u16, confidence: u8) -> bool {
        confidence >= self.threshold && self.labels.binary_search(&label).is_ok()
    }

    /// Whether a decision an earlier run logged is one this policy would take too.
    fn agrees_with(&self, logged: &Dropped) -> bool {
        logged.model_id == self.model_id && self.drops(logged.label, logged.confidence)
    }

    /// The dropped class names, in class order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The threshold as the probability it stands for on the wire.
    pub fn min_confidence(&self) -> f32 {
        confidence_probability(self.threshold)
    }
}

/// One drop decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    pub model_id: ModelId,
    pub scene_id: u32,
    pub tile_id: u32,
    pub label: u16,
    pub confidence: u8,
    /// The tile's raw bytes (samples as 16-bit values), for the summary after a restart.
    pub raw_bytes: u64,
}

impl Dropped {
    fn line(&self) -> String {
        format!(
            "{} {} {} {} {} {}\n",
            self.model_id, self.scene_id, self.tile_id, self.label, self.confidence, self.raw_bytes
        )
    }

    fn parse(line: &str) -> Option<Self> {
        let mut fields = line.split(' ');
        let dropped = Self {
            model_id: ModelId::from_hex(fields.next()?)?,
            scene_id: fields.next()?.parse().ok()?,
            tile_id: fields.next()?.parse().ok()?,
            label: fields.next()?.parse().ok()?,
            confidence: fields.next()?.parse().ok()?,
            raw_bytes: fields.next()?.parse().ok()?,
        };
        fields.next().is_none().then_some(dropped)
    }
}

/// The durable log of drop decisions in the queue directory.
pub struct ScreenLog {
    path: PathBuf,
    file: File,
    pending: String,
    pending_lines: usize,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ScreenError + '_ {
    move |source| ScreenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ScreenLog {
    /// Opens (or creates) the log in `dir` and returns what earlier runs decided, the last
    /// decision per tile. A torn last line (a crash mid-append) is cut off, so the next append
    /// starts a clean line instead of completing the torn one into a wrong tile id.
    pub fn open(dir: &Path) -> Result<(Self, Vec<Dropped>), ScreenError> {
        let path = dir.join(LOG_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(io_error(&path)(error)),
        };
        // Only newline-terminated lines were written whole.
        let whole = bytes
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |at| at + 1);
        let mut last: HashMap<(u32, u32), Dropped> = HashMap::new();
        let text = String::from_utf8_lossy(&bytes[..whole]);
        for dropped in text.lines().filter_map(Dropped::parse) {
            last.insert((dropped.scene_id, dropped.tile_id), dropped);
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        if whole < bytes.len() {
            file.set_len(whole as u64)
                .and_then(|()| file.sync_all())
                .map_err(io_error(&path))?;
        }
        let mut earlier: Vec<Dropped> = last.into_values().collect();
        earlier.sort_unstable_by_key(|d| (d.scene_id, d.tile_id));
        let log = Self {
            path,
            file,
            pending: String::new(),
            pending_lines: 0,
        };
        Ok((log, earlier))
    }

    /// The earlier decisions `screen` takes too; see the module documentation.
    pub fn honoured<'a>(
        screen: &'a Screen,
        earlier: &'a [Dropped],
    ) -> impl Iterator<Item = &'a Dropped> + 'a {
        earlier.iter().filter(|d| screen.agrees_with(d))
    }

    /// Adds a decision; it is durable after the next [`flush`](Self::flush).
    pub fn push(&mut self, dropped: &Dropped) {
        self.pending.push_str(&dropped.line());
        self.pending_lines += 1;
    }

    /// Decisions pushed since the last flush.
    pub fn pending(&self) -> usize {
        self.pending_lines
    }

    /// Appends and fsyncs the pushed decisions.
    pub fn flush(&mut self) -> Result<(), ScreenError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(self.pending.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(io_error(&self.path))?;
        self.pending.clear();
        self.pending_lines = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::tests::s2_card;

    fn options(labels: &[&str], min_confidence: f32) -> ScreeningOptions {
        ScreeningOptions {
            drop_labels: labels.iter().map(|s| s.to_string()).collect(),
            min_confidence,
        }
    }

    #[test]
    fn an_unknown_label_is_refused_with_the_cards_classes() {
        let error = Screen::new(&options(&["farm", "cloud"], 0.5), &s2_card())
            .expect_err("cloud is no class of the s2 model");
        assert_eq!(
            error.to_string(),
            "--drop-label \"cloud\" is not a class of this model; its classes are: farm, water"
        );
        assert!(matches!(
            Screen::new(&options(&["farm"], 1.5), &s2_card()),
            Err(ScreenError::Confidence(_))
        ));
        assert_eq!(Screen::new(&options(&[], 0.5), &s2_card()).ok(), Some(None));
    }

    #[test]
    fn only_given_labels_at_or_above_the_threshold_are_dropped() {
        let screen = Screen::new(&options(&["water", "water"], 0.6), &s2_card())
            .expect("valid")
            .expect("active");
        assert_eq!(screen.names(), ["water"]);
        let at = quantise_confidence(0.6);
        assert!(screen.drops(1, at));
        assert!(screen.drops(1, 255));
        assert!(!screen.drops(1, at - 1), "a weak guess is kept");
        assert!(!screen.drops(0, 255), "farm is not dropped");
    }

    #[test]
    fn a_torn_last_line_is_cut_and_the_next_decision_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let decision = |tile_id| Dropped {
            model_id: s2_card().model_id,
            scene_id: 7,
            tile_id,
            label: 1,
            confidence: 200,
            raw_bytes: 8192,
        };
        let (mut log, earlier) = ScreenLog::open(dir.path()).expect("opens");
        assert!(earlier.is_empty());
        log.push(&decision(1234));
        log.flush().expect("flushes");
        drop(log);
        // A crash mid-append: part of the line for tile 5678 reached the disk.
        let path = dir.path().join(LOG_FILE);
        let mut file = OpenOptions::new().append(true).open(&path).expect("opens");
        file.write_all(decision(5678).line().get(..22).expect("prefix").as_bytes())
            .expect("writes");
        drop(file);

        let (mut log, earlier) = ScreenLog::open(dir.path()).expect("reopens");
        assert_eq!(earlier, [decision(1234)]);
        log.push(&decision(9));
        log.flush().expect("flushes");
        drop(log);
        let (_, earlier) = ScreenLog::open(dir.path()).expect("reopens");
        assert_eq!(earlier, [decision(9), decision(1234)]);
    }

    #[test]
    fn a_logged_decision_is_honoured_only_if_the_current_policy_takes_it() {
        let card = s2_card();
        let logged = Dropped {
            model_id: card.model_id,
            scene_id: 1,
            tile_id: 2,
            label: 1,
            confidence: quantise_confidence(0.7),
            raw_bytes: 0,
        };
        let screen = |labels: &[&str], p| {
            Screen::new(&options(labels, p), &card)
                .expect("valid")
                .expect("active")
        };
        let honoured =
            |screen: &Screen, logged: Dropped| ScreenLog::honoured(screen, &[logged]).count() == 1;
        assert!(honoured(&screen(&["water"], 0.5), logged));
        assert!(!honoured(&screen(&["farm"], 0.5), logged));
        assert!(!honoured(&screen(&["water"], 0.9), logged));
        let other_model = Dropped {
            model_id: ModelId::of_model(b"other"),
            ..logged
        };
        assert!(!honoured(&screen(&["water"], 0.5), other_model));
    }
}

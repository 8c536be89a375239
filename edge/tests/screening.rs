//! On-board screening (`orbhash-edge run --drop-label`) through the binary as flown, with the
//! shipped Sentinel-2 model: a screened run must send exactly the records of a plain run less
//! those the screening takes, count what it dropped, and survive restarts and `kill -9` without
//! repeating a record or a decision.
//!
//! Scenes: the real Sentinel-2 scene when set-up has fetched it, and always a small synthetic
//! 4-band scene (bright fields and dark water-like patches), so the pipeline is checked
//! everywhere; whatever the model makes of the synthetic tiles, a plain run of the same scene is
//! the reference.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use orbhash_wire::{quantise_confidence, Decoder, OwnedEvent, Record, Rejection, SequenceError};
use serde_json::Value;

const DROPPED: &str = "farm";
const TILE: u32 = 32;

fn model() -> PathBuf {
    orbhash_test_support::repo_root().join("models/s2-brandenburg-dhcnn64-f32.onnx")
}

/// A 4-band uint16 TIFF (B04/B03/B02/B08 unnamed, as the shipped model assumes them) of
/// `cols` × `rows` tiles, each tile bright soil, vegetation or dark water, with noise.
fn synthetic_scene(path: &Path, cols: u32, rows: u32) -> PathBuf {
    use tiff::encoder::{colortype, TiffEncoder};
    let (w, h) = (cols * TILE, rows * TILE);
    let kinds: [[u16; 4]; 3] = [
        [2200, 1900, 1600, 2600],
        [450, 700, 500, 3400],
        [250, 400, 600, 150],
    ];
    let mut samples = Vec::with_capacity((4 * w * h) as usize);
    for y in 0..h {
        for x in 0..w {
            let tile = (y / TILE) * cols + x / TILE;
            let kind = kinds[(tile.wrapping_mul(2_654_435_761) >> 7) as usize % 3];
            let noise = (x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663)) % 200;
            samples.extend(kind.iter().map(|&v| v + noise as u16));
        }
    }
    let file = std::fs::File::create(path).expect("creates the scene");
    let mut encoder = TiffEncoder::new(file).expect("encoder");
    encoder
        .write_image::<colortype::RGBA16>(w, h, &samples)
        .expect("writes the scene");
    path.to_path_buf()
}

/// The scenes to check: the synthetic one and, when present, the real one.
fn scenes(dir: &Path) -> Vec<PathBuf> {
    let mut scenes = vec![synthetic_scene(&dir.join("synthetic.tif"), 8, 4)];
    if let Some(real) =
        orbhash_test_support::asset(".cache/data/s2-brandenburg/scenes/T33UUU_20170216T102101.tif")
    {
        scenes.push(real);
    }
    scenes
}

fn edge(scene: &Path, downlink: &Path, queue: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_orbhash-edge"));
    command
        .args(["run", "--model"])
        .arg(model())
        .arg("--tiles")
        .arg(scene)
        .arg("--downlink")
        .arg(format!("file:{}", downlink.display()))
        .arg("--queue")
        .arg(queue)
        .args(["--records-per-packet", "8", "--quiet", "--json"])
        .args(extra);
    command
}

/// Runs to the end and returns the JSON summary.
fn summary_of(command: &mut Command) -> Value {
    let output = command.output().expect("runs orbhash-edge");
    assert!(
        output.status.success(),
        "orbhash-edge failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON summary")
}

/// Every record on the downlink, by tile id, failing on a corrupt frame; resent frames (a kill
/// between a send and its cursor update) are dropped as duplicates, as the ground does.
fn records(downlink: &Path) -> BTreeMap<u32, Vec<Record>> {
    let bytes = std::fs::read(downlink).unwrap_or_default();
    let mut by_tile: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
    for event in Decoder::new().decode_all(&bytes) {
        match event {
            OwnedEvent::Packet { records, .. } => {
                for record in records {
                    by_tile.entry(record.tile_id).or_default().push(record);
                }
            }
            OwnedEvent::Rejected(Rejection::Sequence(SequenceError::Duplicate { .. })) => {}
            OwnedEvent::Rejected(other) => panic!("corrupt or refused frame: {other:?}"),
        }
    }
    by_tile
}

/// What a plain run of `scene` downlinks, and which of its tiles `--drop-label farm` at the
/// default threshold must drop (the decision is on the quantised confidence the record carries).
struct Reference {
    records: BTreeMap<u32, Record>,
    dropped: BTreeSet<u32>,
    bytes: u64,
    frames: u64,
}

impl Reference {
    /// The tiles a screening run must still send: every tile of the plain run but the dropped.
    fn kept_tiles(&self) -> BTreeSet<u32> {
        self.records
            .keys()
            .filter(|tile| !self.dropped.contains(tile))
            .copied()
            .collect()
    }
}

fn plain_run(scene: &Path, dir: &Path) -> Reference {
    let downlink = dir.join("plain.bin");
    let summary = summary_of(&mut edge(scene, &downlink, &dir.join("plain-queue"), &[]));
    assert!(summary["screening"].is_null());
    let records: BTreeMap<u32, Record> = records(&downlink)
        .into_iter()
        .map(|(tile, mut records)| {
            assert_eq!(records.len(), 1, "tile {tile} sent twice by a plain run");
            (tile, records.remove(0))
        })
        .collect();
    let farm = class_index(DROPPED);
    let threshold = quantise_confidence(0.5);
    let dropped: BTreeSet<u32> = records
        .values()
        .filter(|r| r.label == farm && r.confidence >= threshold)
        .map(|r| r.tile_id)
        .collect();
    assert!(
        !dropped.is_empty() && dropped.len() < records.len(),
        "{}: the reference needs tiles of both kinds ({} of {} {DROPPED})",
        scene.display(),
        dropped.len(),
        records.len()
    );
    Reference {
        records,
        dropped,
        bytes: summary["downlinked_bytes"].as_u64().expect("bytes"),
        frames: summary["queue"]["frames_sent"].as_u64().expect("frames"),
    }
}

/// The index of `name` among the shipped model's classes, as `orbhash-edge inspect` lists them.
fn class_index(name: &str) -> u16 {
    let output = Command::new(env!("CARGO_BIN_EXE_orbhash-edge"))
        .arg("inspect")
        .arg(model())
        .output()
        .expect("inspects");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let classes = text
        .lines()
        .find_map(|line| line.strip_prefix("classes: "))
        .expect("inspect lists the classes");
    classes
        .split(", ")
        .position(|class| class == name)
        .expect("the class is the model's") as u16
}

fn count(value: &Value, label: &str) -> u64 {
    value[label]
        .as_u64()
        .unwrap_or_else(|| panic!("no count for {label} in {value}"))
}

#[test]
fn an_unknown_label_stops_the_run_before_any_tile_is_hashed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scene = synthetic_scene(&dir.path().join("scene.tif"), 2, 2);
    let (downlink, queue) = (dir.path().join("down.bin"), dir.path().join("queue"));
    let output = edge(
        &scene,
        &downlink,
        &queue,
        &["--drop-label", "farm", "--drop-label", "cloud"],
    )
    .stdout(Stdio::null())
    .output()
    .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "--drop-label \"cloud\" is not a class of this model; its classes are: farm,"
        ),
        "{stderr}"
    );
    // Refused before the queue was opened: nothing hashed, queued or sent.
    assert!(!queue.exists() && !downlink.exists());

    let output = edge(&scene, &downlink, &queue, &["--min-confidence", "0.7"])
        .output()
        .expect("runs");
    assert!(
        !output.status.success(),
        "--min-confidence alone must be refused"
    );
}

#[test]
fn dropping_a_class_drops_exactly_the_tiles_a_plain_run_labels_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    for scene in scenes(dir.path()) {
        let work = tempfile::tempdir_in(dir.path()).expect("tempdir");
        let reference = plain_run(&scene, work.path());
        let downlink = work.path().join("screened.bin");
        let summary = summary_of(&mut edge(
            &scene,
            &downlink,
            &work.path().join("queue"),
            &["--drop-label", DROPPED],
        ));
        let sent = records(&downlink);
        let expected = reference.kept_tiles();
        assert_eq!(sent.keys().copied().collect::<BTreeSet<_>>(), expected);
        for (tile, records) in &sent {
            assert_eq!(records.len(), 1, "tile {tile} sent twice");
            let (got, want) = (&records[0], &reference.records[tile]);
            assert_eq!(
                (got.label, got.confidence, &got.code),
                (want.label, want.confidence, &want.code)
            );
        }

        let screening = &summary["screening"];
        assert_eq!(
            count(&screening["tiles_dropped"], DROPPED),
            reference.dropped.len() as u64
        );
        assert_eq!(count(&screening["tiles_already_dropped"], DROPPED), 0);
        let listed: BTreeSet<u32> = screening["dropped_tiles"]
            .as_array()
            .expect("list")
            .iter()
            .map(|pair| pair[0].as_u64().expect("tile id") as u32)
            .collect();
        assert_eq!(listed, reference.dropped);
        assert_eq!(
            summary["tiles_hashed"].as_u64(),
            Some(reference.records.len() as u64)
        );
        assert_eq!(
            summary["records_queued"].as_u64(),
            Some(expected.len() as u64)
        );
        // Bytes: queued = sent here (the file link takes every frame); without screening the
        // same run would have queued what the plain run sent, up to a COBS byte per frame (the
        // capture time differs between the runs).
        let queued = screening["record_bytes_queued"].as_u64().expect("bytes");
        let unscreened = screening["record_bytes_unscreened"]
            .as_u64()
            .expect("bytes");
        assert_eq!(Some(queued), summary["downlinked_bytes"].as_u64());
        assert!(
            unscreened.abs_diff(reference.bytes) <= reference.frames,
            "unscreened {unscreened} B, the plain run sent {} B",
            reference.bytes
        );
        assert_eq!(
            screening["record_bytes_not_sent"].as_u64(),
            Some(unscreened - queued)
        );
        assert!(queued < unscreened);
        let tile_bytes = 2 * 4 * u64::from(TILE * TILE);
        assert_eq!(
            screening["raw_tile_bytes_not_sent"].as_u64(),
            Some(tile_bytes * reference.dropped.len() as u64)
        );
    }
}

#[test]
fn a_restart_skips_the_dropped_tiles_and_a_rerun_without_screening_sends_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scene = synthetic_scene(&dir.path().join("scene.tif"), 8, 4);
    let reference = plain_run(&scene, dir.path());
    let (downlink, queue) = (dir.path().join("down.bin"), dir.path().join("queue"));
    let screened = ["--drop-label", DROPPED];

    let first = summary_of(&mut edge(
        &scene,
        &downlink,
        &queue,
        &[&screened[..], &["--max-tiles", "10"]].concat(),
    ));
    let first_dropped = count(&first["screening"]["tiles_dropped"], DROPPED);
    let second = summary_of(&mut edge(&scene, &downlink, &queue, &screened));
    let total = reference.records.len() as u64;
    // The restart hashes only what the first run left: neither its records nor its drops.
    assert_eq!(second["tiles_hashed"].as_u64(), Some(total - 10));
    assert_eq!(
        count(&second["screening"]["tiles_already_dropped"], DROPPED),
        first_dropped
    );
    assert_eq!(
        first_dropped + count(&second["screening"]["tiles_dropped"], DROPPED),
        reference.dropped.len() as u64
    );
    let sent = records(&downlink);
    assert!(sent.values().all(|records| records.len() == 1));
    assert!(sent.keys().all(|tile| !reference.dropped.contains(tile)));
    assert_eq!(
        sent.len() + reference.dropped.len(),
        reference.records.len()
    );

    // The log never hides a tile the command in force would send: without --drop-label the
    // dropped tiles, and only they, are hashed and sent.
    let third = summary_of(&mut edge(&scene, &downlink, &queue, &[]));
    assert_eq!(
        third["tiles_hashed"].as_u64(),
        Some(reference.dropped.len() as u64)
    );
    let sent = records(&downlink);
    assert_eq!(sent.len(), reference.records.len());
    assert!(sent.values().all(|records| records.len() == 1));
    // And screening again drops nothing more: every tile has its record now.
    let fourth = summary_of(&mut edge(&scene, &downlink, &queue, &screened));
    assert_eq!(fourth["tiles_hashed"].as_u64(), Some(0));
    assert_eq!(
        count(&fourth["screening"]["tiles_already_dropped"], DROPPED),
        0
    );
}

#[test]
fn killing_a_screening_board_repeats_no_record_and_no_decision() {
    const KILLS: u64 = 10;
    let dir = tempfile::tempdir().expect("tempdir");
    let scene = synthetic_scene(&dir.path().join("scene.tif"), 16, 8);
    let reference = plain_run(&scene, dir.path());
    let screened = ["--drop-label", DROPPED];
    let (downlink, queue) = (dir.path().join("down.bin"), dir.path().join("queue"));
    let edge = || {
        let mut command = edge(&scene, &downlink, &queue, &screened);
        command.stdout(Stdio::null()).stderr(Stdio::null());
        command
    };
    // Kill times spread over start-up plus the work, measured in a scratch queue (the spread only
    // decides where the kills land, never whether the test passes).
    let timed = |queue: &Path| {
        let start = std::time::Instant::now();
        summary_of(&mut self::edge(
            &scene,
            &dir.path().join("scratch.bin"),
            queue,
            &screened,
        ));
        start.elapsed()
    };
    let whole = timed(&dir.path().join("scratch"));
    let startup = timed(&dir.path().join("scratch"));
    let slice_ms = (2 * whole.saturating_sub(startup).as_millis() as u64 / KILLS).max(1);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut finished_early = 0;
    for _ in 0..KILLS {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut child = edge().spawn().expect("starts the edge");
        std::thread::sleep(startup + Duration::from_millis(state % slice_ms));
        if child.try_wait().expect("polls").is_some() {
            finished_early += 1;
        }
        child.kill().ok(); // SIGKILL
        child.wait().expect("reaps");
    }
    let last = summary_of(&mut self::edge(&scene, &downlink, &queue, &screened));

    let sent = records(&downlink);
    let repeated: Vec<u32> = sent
        .iter()
        .filter(|(_, r)| r.len() > 1)
        .map(|(&t, _)| t)
        .collect();
    assert!(
        repeated.is_empty(),
        "records downlinked twice: {repeated:?}"
    );
    let expected = reference.kept_tiles();
    assert_eq!(sent.keys().copied().collect::<BTreeSet<_>>(), expected);
    // Every decision logged once (a process kill leaves whole lines; a torn one is cut and made
    // again), and the last run's counts add up to the scene's.
    let log = std::fs::read_to_string(queue.join("screened.log")).expect("the decisions");
    let mut logged: BTreeMap<u32, usize> = BTreeMap::new();
    for line in log.lines() {
        let tile = line
            .split(' ')
            .nth(2)
            .and_then(|t| t.parse().ok())
            .expect("tile id");
        *logged.entry(tile).or_default() += 1;
    }
    assert!(
        logged.values().all(|&n| n == 1),
        "decisions logged twice: {logged:?}"
    );
    assert_eq!(
        logged.keys().copied().collect::<BTreeSet<_>>(),
        reference.dropped
    );
    let screening = &last["screening"];
    println!(
        "{KILLS} kills ({finished_early} runs had already finished; whole run {whole:?}, start-up \
         {startup:?}); the last run hashed {} tiles, found {} dropped by the killed runs",
        last["tiles_hashed"], screening["tiles_already_dropped"][DROPPED]
    );
    assert_eq!(
        count(&screening["tiles_already_dropped"], DROPPED)
            + count(&screening["tiles_dropped"], DROPPED),
        reference.dropped.len() as u64
    );
}

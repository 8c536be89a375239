//! The board is killed at random moments while it downlinks to a file; after a last, complete
//! run the ground-side decoder must find every tile's record exactly once (a frame sent again
//! after a kill is dropped by its sequence count) and nothing corrupt.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use orbhash_wire::{Decoder, OwnedEvent, Rejection, SequenceError};

mod common;
use common::{tiny_model, write_png, Precision};

const KILLS: usize = 50;
const SCENE_TILES_PER_SIDE: u32 = 40;
const TILE: u32 = 16;

#[test]
fn killing_the_board_fifty_times_loses_and_repeats_no_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny_model(dir.path(), TILE, Precision::F32);
    let scene = dir.path().join("scene.png");
    let side = SCENE_TILES_PER_SIDE * TILE;
    write_png(&scene, side, side, 7);
    let edge_into = |downlink: &Path, queue: &Path| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_orbhash-edge-under-test"));
        command
            .args(["run", "--model"])
            .arg(&model)
            .arg("--tiles")
            .arg(&scene)
            .arg("--downlink")
            .arg(format!("file:{}", downlink.display()))
            .arg("--queue")
            .arg(queue)
            .args(["--batch", "4", "--records-per-packet", "8", "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };
    // Timing: a whole run (T) and a run with nothing left to do (start-up, S), in a scratch queue.
    let timed = |command: &mut Command| {
        let start = std::time::Instant::now();
        assert!(command.status().expect("runs").success());
        start.elapsed()
    };
    let scratch = dir.path().join("scratch");
    let whole = timed(&mut edge_into(
        &scratch.join("down.bin"),
        &scratch.join("queue"),
    ));
    let startup = timed(&mut edge_into(
        &scratch.join("down.bin"),
        &scratch.join("queue"),
    ));
    let work_ms = whole.saturating_sub(startup).as_millis() as u64;
    // Each kill lands after start-up plus a slice of the work, so the runs end at every stage of
    // the pipeline and the 50 kills together cover about twice the whole run.
    let slice_ms = (2 * work_ms / KILLS as u64).max(1);

    let downlink = dir.path().join("downlink.bin");
    let queue = dir.path().join("queue");
    let edge = || edge_into(&downlink, &queue);

    // A seeded spread of kill times.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut finished_early = 0;
    for _ in 0..KILLS {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let delay = startup + Duration::from_millis(state % slice_ms);
        let mut child = edge().spawn().expect("starts the edge");
        std::thread::sleep(delay);
        if child.try_wait().expect("polls").is_some() {
            finished_early += 1;
        }
        child.kill().ok(); // SIGKILL
        child.wait().expect("reaps");
    }
    let status = edge().status().expect("last run");
    assert!(status.success(), "the last run failed: {status}");

    let bytes = std::fs::read(&downlink).expect("downlink file");
    let mut decoder = Decoder::new();
    let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
    let mut duplicates = 0;
    for event in decoder.decode_all(&bytes) {
        match event {
            OwnedEvent::Packet { records, .. } => {
                for record in records {
                    *seen.entry(record.tile_id).or_default() += 1;
                }
            }
            OwnedEvent::Rejected(Rejection::Sequence(SequenceError::Duplicate { .. })) => {
                duplicates += 1
            }
            OwnedEvent::Rejected(other) => panic!("corrupt or refused frame: {other:?}"),
        }
    }
    let tiles = SCENE_TILES_PER_SIDE * SCENE_TILES_PER_SIDE;
    let missing: Vec<u32> = (0..tiles).filter(|t| !seen.contains_key(t)).collect();
    let repeated: Vec<(&u32, &usize)> = seen.iter().filter(|(_, &n)| n > 1).collect();
    println!(
        "{KILLS} kills ({finished_early} runs had already finished; whole run {whole:?}, start-up \
         {startup:?}), {duplicates} resent frames dropped as duplicates, {} records",
        seen.len()
    );
    assert!(missing.is_empty(), "records never downlinked: {missing:?}");
    assert!(
        repeated.is_empty(),
        "records downlinked twice: {repeated:?}"
    );
    assert_eq!(seen.len() as u32, tiles);
}

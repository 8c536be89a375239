//! The board is killed at random moments while it downlinks to a file; after a last, complete
//! run the ground-side decoder must find every tile's record exactly once (a frame sent again
//! after a kill is dropped by its sequence count) and nothing corrupt.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use orbhash_host::export::onnx::WeightScaling;
use orbhash_host::export::{export, Calibration, ExportOptions};
use orbhash_host::model::backbone::BackboneKind;
use orbhash_host::torch::DeviceChoice;
use orbhash_host::train::{train, TrainConfig};
use orbhash_shared::{Decoder, OwnedEvent, Rejection, SequenceError};

const KILLS: usize = 50;
const SCENE_TILES_PER_SIDE: u32 = 40;
const TILE: u32 = 16;

fn write_png(path: &Path, width: u32, height: u32, seed: u32) {
    let pixels: Vec<u8> = (0..width * height * 3)
        .map(|i| {
            let x = i
                .wrapping_mul(2_654_435_761)
                .wrapping_add(seed.wrapping_mul(40_503));
            (x >> 13) as u8
        })
        .collect();
    image::save_buffer(path, &pixels, width, height, image::ExtendedColorType::Rgb8)
        .expect("writes PNG");
}

/// A tiny trained model: two classes of 16-px tiles, the small CNN, 16-bit codes.
fn tiny_model(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("data");
    for (class, offset) in [("dark", 0u32), ("bright", 1000)] {
        std::fs::create_dir_all(data.join(class)).expect("mkdir");
        for i in 0..6 {
            write_png(
                &data.join(class).join(format!("{i}.png")),
                TILE,
                TILE,
                offset + i,
            );
        }
    }
    orbhash_host::torch::init_for_tests();
    let config = TrainConfig {
        data: data.clone(),
        backbone: BackboneKind::SmallCnn,
        pretrained: None,
        bits: 16,
        input_size: TILE,
        epochs: 1,
        batch_size: 4,
        ..TrainConfig::default()
    };
    let outcome = train(&config, DeviceChoice::Cpu, &dir.join("run"), None).expect("trains");
    let out = dir.join("tiny.onnx");
    export(&ExportOptions {
        checkpoint: outcome.checkpoint,
        out: out.clone(),
        int8: false,
        data: None,
        calibration: Calibration::MinMax,
        calibration_tiles: 8,
        weights: WeightScaling::PerChannel,
        keep_f32: vec![],
    })
    .expect("exports");
    out
}

#[test]
fn killing_the_board_fifty_times_loses_and_repeats_no_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny_model(dir.path());
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

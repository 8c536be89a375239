//! The mission in miniature, on real data: train a small DHCNN on `s2-brandenburg`, export it
//! (f32 and int8) and verify the files against the checkpoint, hash the real Sentinel-2 scene on
//! board through a lossy, intermittent simulated link, ingest the downlink on the ground and find
//! a tile again by its image.
//!
//! Needs the data set that `scripts/setup.sh` builds; without it the test says so and passes.

use std::path::PathBuf;
use std::time::Duration;

use orbhash_edge::link::{LinkTarget, Simulation};
use orbhash_edge::run::{run, Downlink, RunOptions};
use orbhash_ground::ingest::{ingest_files, IngestOptions};
use orbhash_ground::search::{run_query, Backend, Method, Query, QuerySpec, SearchSpec};
use orbhash_host::export::onnx::WeightScaling;
use orbhash_host::export::{export, verify, Calibration, ExportOptions};
use orbhash_host::model::backbone::BackboneKind;
use orbhash_host::torch::DeviceChoice;
use orbhash_host::train::{train, TrainConfig};
use orbhash_test_support::s2_data_set;

#[test]
fn train_export_hash_downlink_ingest_and_find_a_tile_by_its_image() {
    let Some((data, scene)) = s2_data_set() else {
        return;
    };
    orbhash_host::torch::init_for_tests();
    let work = tempfile::tempdir().expect("tempdir");

    // 1. Train: the small CNN, 32-bit codes, on the real patches at their own 32 px.
    let config = TrainConfig {
        data: data.clone(),
        backbone: BackboneKind::SmallCnn,
        pretrained: None,
        bits: 32,
        input_size: 32,
        epochs: 3,
        batch_size: 16,
        ..TrainConfig::default()
    };
    let outcome = train(&config, DeviceChoice::Cpu, work.path(), None).expect("trains");
    assert_eq!(outcome.epochs_done, 3);

    // 2. Export f32 and int8; both must meet their parity thresholds (issue 6).
    let options = |out: &str, int8: bool| ExportOptions {
        checkpoint: outcome.checkpoint.clone(),
        out: work.path().join(out),
        int8,
        data: None,
        calibration: Calibration::MinMax,
        calibration_tiles: 64,
        weights: WeightScaling::PerChannel,
        keep_f32: vec![],
        bias_correction: true,
        pretrained: None,
    };
    let (f32_file, f32_model) = export(&options("f32.onnx", false)).expect("exports f32");
    let report = verify::verify(&outcome.checkpoint, &f32_model, None).expect("verifies");
    assert!(report.passed(), "f32 parity: {:?}", report.failures);
    assert!(report.max_hash_error <= 1e-4);
    // The query tiles' own figures pick the right rows: on f32 they agree as the whole set does.
    assert_eq!(report.query_label_agreement, 1.0);
    assert!(report.query_bit_agreement > 0.999, "{report:?}");
    let (int8_file, int8_model) = export(&options("int8.onnx", true)).expect("exports int8");
    assert!(
        int8_file.bytes * 3 < f32_file.bytes,
        "int8 weights are a quarter of f32's"
    );
    let report = verify::verify(&outcome.checkpoint, &int8_model, None).expect("verifies");
    println!(
        "int8: bits agree {:.2} %, labels agree {:.2} %, mAP {:.4} vs {:.4}",
        report.bit_agreement * 100.0,
        report.label_agreement * 100.0,
        report.map_model,
        report.map_checkpoint
    );
    assert!(report.passed(), "int8 parity: {:?}", report.failures);

    // 3. On board: the whole scene, through a link that is down a third of the time and loses or
    //    damages frames (4 % lost, 6 % damaged).
    let downlink = work.path().join("downlink.bin");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let summary = runtime
        .block_on(run(RunOptions {
            model: f32_file.path.clone(),
            tiles: scene.clone(),
            downlink: Downlink::OneWay {
                target: LinkTarget::File(downlink.clone()),
                simulation: Some(Simulation {
                    up: Duration::from_millis(200),
                    down: Duration::from_millis(100),
                    corrupt: 0.06,
                    drop: 0.04,
                    seed: 7,
                }),
            },
            queue: work.path().join("queue"),
            queue_max_bytes: 1 << 30,
            batch: 8,
            apid: 0x42,
            label_set: 0,
            key: None,
            max_records_per_packet: 16,
            capture_time_ms: 1_487_239_261_000,
            progress: false,
            max_tiles: None,
            screening: Default::default(),
            scene_store: Some((
                work.path().join("scene-store"),
                orbhash_wire::RetentionPolicy {
                    capacity_bytes: 1 << 30,
                    max_age_s: 0,
                },
            )),
        }))
        .expect("edge run");
    assert_eq!(summary.tiles_failed, 0, "{:?}", summary.problems);
    // The scene is kept on board, byte for byte, for tasking.
    let store = summary.scene_store.as_ref().expect("store summary");
    assert!(store.evictions.is_empty());
    assert_eq!(store.scenes_kept.len(), 1);
    assert_eq!(store.scenes_kept[0].scene_id, summary.scene_id);
    assert_eq!(
        std::fs::read(&store.scenes_kept[0].path).expect("stored scene"),
        std::fs::read(&scene).expect("scene")
    );
    assert_eq!(summary.tiles_hashed, u64::from(summary.tiles_in_source));
    assert_eq!(summary.frames_left_in_queue, 0);
    assert!(summary.downlinked_bytes * 100 < summary.raw_tile_bytes);

    // 4. On the ground: every intact record stored, every loss counted.
    let archive = work.path().join("archive");
    let reports = ingest_files(
        &archive,
        std::slice::from_ref(&downlink),
        IngestOptions::default(),
        None,
    )
    .expect("ingests");
    let stored: u64 = reports.iter().map(|r| r.records_stored).sum();
    let corrupt: u64 = reports.iter().map(|r| r.corrupt).sum();
    let missing: u64 = reports.iter().map(|r| r.missing).sum();
    let damaged = summary.channel.corrupted + summary.channel.lost;
    println!(
        "{} tiles, {} records stored; channel {:?}; ground reports {corrupt} corrupt and {missing} \
         missing packets",
        summary.tiles_hashed, stored, summary.channel
    );
    // CRC-32C catches every damaged frame; a lost frame shows as a sequence gap (unless it was
    // the very last one), and so does a damaged one.
    assert_eq!(corrupt, summary.channel.corrupted);
    assert!(
        missing <= damaged && missing + 1 >= damaged,
        "{missing} vs {damaged}"
    );
    // Every intact record is stored: only the damaged frames' (at most 16 records each) are not.
    assert!(stored <= summary.records_queued);
    assert!(stored + 16 * damaged >= summary.records_queued);
    assert!(
        damaged > 0,
        "the simulated channel damaged nothing: the test proves less than it says"
    );

    // 5. Query by image: a real patch cut from the same scene finds itself at distance 0.
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("manifest.json")).expect("manifest"),
    )
    .expect("manifest JSON");
    let patches = manifest["patches"].as_array().expect("patches");
    let (codes_for, card) = {
        let images: Vec<PathBuf> = patches
            .iter()
            .take(20)
            .filter_map(|p| p["file"].as_str().map(|f| data.join(f)))
            .collect();
        let (card, codes) =
            orbhash_ground::by_image::hash_images(&f32_file.path, &images).expect("hashes");
        (codes, card)
    };
    let query = |code| Query {
        queries: vec![QuerySpec::Code(code)],
        model: Some(card.model_id),
        spec: SearchSpec::top_k(1),
        labels: vec![],
        same_label: false,
        scenes: vec![],
        time_from: None,
        time_to: None,
        method: Method::Scan,
        threads: 1,
        backend: Backend::Embedded,
    };
    let found = codes_for
        .into_iter()
        .map(|code| run_query(&archive, &query(code)).expect("query"))
        .filter(|result| {
            result.answers[0]
                .matches
                .first()
                .is_some_and(|m| m.distance == 0)
        })
        .count();
    // Unless its packet was lost on the link, each patch's own tile is in the archive.
    assert!(found >= 15, "only {found} of 20 patches found themselves");
}

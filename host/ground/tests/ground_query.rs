//! Ground station search through the archive: by tile and by code, filters, methods agreeing,
//! model cards, code matrix staleness.

mod common;

use std::path::Path;

use common::{card, MODEL};
use orbhash_ground::archive::Archive;
use orbhash_ground::bench::synthetic_stream;
use orbhash_ground::ingest::{ingest_files, IngestOptions};
use orbhash_ground::matrix::{CodeMatrix, MatrixSource};
use orbhash_ground::search::{
    brute_force, run_query, Filter, Method, Query, QuerySpec, SearchSpec,
};
use orbhash_ground::GroundError;
use orbhash_wire::{pack_words, ModelId};

const CLASSES: [&str; 10] = [
    "water", "forest", "urban", "crop", "bare", "snow", "cloud", "road", "rail", "port",
];

fn ingest(dir: &Path, stream: &[u8], name: &str) {
    let file = dir.join(name);
    std::fs::write(&file, stream).expect("write stream");
    ingest_files(
        &dir.join("archive"),
        &[file],
        IngestOptions::default(),
        None,
    )
    .expect("ingest");
}

fn query(queries: Vec<QuerySpec>, spec: SearchSpec) -> Query {
    Query {
        method: Method::Scan,
        threads: 2,
        ..Query::new(queries, spec)
    }
}

#[test]
fn queries_by_tile_and_code_with_filters_are_exact() {
    let dir = tempfile::tempdir().expect("temp dir");
    // 2 scenes (1 000 000 tiles per scene in the generator: use two epochs' worth instead).
    ingest(
        dir.path(),
        &synthetic_stream(20_000, 1, 1, None).expect("s"),
        "a.bin",
    );
    let archive_dir = dir.path().join("archive");
    Archive::open(&archive_dir)
        .expect("open")
        .register_model_card(&card(MODEL, 64, &CLASSES))
        .expect("card");
    let archive = Archive::open(&archive_dir).expect("open");
    let model = archive.model(MODEL).expect("model");
    let (matrix, _) = CodeMatrix::open_or_build(&archive, &model).expect("matrix");

    // "All tiles labelled like tile 1234, like it": same label, top 15.
    let mut request = query(
        vec![QuerySpec::Tile {
            tile: 1234,
            scene: Some(0),
        }],
        SearchSpec::top_k(15),
    );
    request.same_label = true;
    let result = run_query(&archive_dir, &request).expect("query");
    let row = matrix.tiles.iter().position(|t| *t == 1234).expect("row");
    let label = matrix.labels[row];
    let expected = brute_force(
        &matrix,
        matrix.code(row),
        SearchSpec::top_k(15),
        &Filter {
            labels: Some(vec![label]),
            ..Filter::default()
        },
    );
    let matches = &result.answers[0].matches;
    assert_eq!(matches.len(), 15);
    assert_eq!(
        matches[0].record.tile_id, 1234,
        "the tile itself, distance 0"
    );
    for (found, want) in matches.iter().zip(&expected) {
        assert_eq!(found.distance, want.distance);
        assert_eq!(found.record.id, matrix.ids[want.row as usize]);
        assert_eq!(found.record.label, label);
    }
    assert_eq!(matches[0].label_name, CLASSES[usize::from(label)]);

    // By code, by label name, radius, time window; scan and MIH agree.
    let code_hex = orbhash_wire::hex::encode(&matrix.code(7)[0].to_le_bytes());
    let mut request = query(
        vec![
            QuerySpec::Hex(code_hex),
            QuerySpec::Tile {
                tile: 99,
                scene: None,
            },
        ],
        SearchSpec {
            k: Some(50),
            radius: Some(26),
        },
    );
    request.labels = vec!["water".to_string(), "3".to_string()];
    request.time_from = Some(1_700_000_000_000);
    let scanned = run_query(&archive_dir, &request).expect("scan");
    request.method = Method::Mih;
    let multi = run_query(&archive_dir, &request).expect("mih");
    for (a, b) in scanned.answers.iter().zip(&multi.answers) {
        let ids = |answer: &orbhash_ground::search::QueryAnswer| -> Vec<(u32, i64)> {
            answer
                .matches
                .iter()
                .map(|m| (m.distance, m.record.id))
                .collect()
        };
        assert_eq!(ids(a), ids(b));
        assert!(a.matches.iter().all(|m| m.distance <= 26));
        assert!(a
            .matches
            .iter()
            .all(|m| m.record.label == 0 || m.record.label == 3));
    }
    let mut expected_query = [0u64; 1];
    pack_words(&matrix.code(7)[0].to_le_bytes(), &mut expected_query);
    let expected = brute_force(
        &matrix,
        &expected_query,
        SearchSpec {
            k: Some(50),
            radius: Some(26),
        },
        &Filter {
            labels: Some(vec![0, 3]),
            time_from: Some(1_700_000_000_000),
            ..Filter::default()
        },
    );
    assert_eq!(scanned.answers[0].matches.len(), expected.len());

    // Unknown label, unknown tile, wrong code length: errors that say so.
    request.labels = vec!["lava".to_string()];
    assert!(matches!(
        run_query(&archive_dir, &request),
        Err(GroundError::UnknownLabel { .. })
    ));
    let request = query(
        vec![QuerySpec::Tile {
            tile: 999_999,
            scene: None,
        }],
        SearchSpec::top_k(1),
    );
    assert!(matches!(
        run_query(&archive_dir, &request),
        Err(GroundError::NoSuchTile { .. })
    ));
    let request = query(
        vec![QuerySpec::Hex("abcd".to_string())],
        SearchSpec::top_k(1),
    );
    assert!(run_query(&archive_dir, &request).is_err());
    for (text, bad_digits) in [("xyz", true), ("zz", true), ("abcdef", false)] {
        let request = query(vec![QuerySpec::Hex(text.to_string())], SearchSpec::top_k(1));
        let outcome = run_query(&archive_dir, &request);
        if bad_digits {
            assert!(matches!(outcome, Err(GroundError::BadHex { .. })), "{text}");
        } else {
            assert!(
                matches!(outcome, Err(GroundError::BadCode { .. })),
                "{text}"
            );
        }
    }
}

#[test]
fn the_code_matrix_is_extended_or_rebuilt_when_stale() {
    let dir = tempfile::tempdir().expect("temp dir");
    ingest(
        dir.path(),
        &synthetic_stream(3_000, 1, 1, None).expect("a"),
        "a.bin",
    );
    let archive_dir = dir.path().join("archive");
    let source = |expect_rows: usize| {
        let archive = Archive::open(&archive_dir).expect("open");
        let model = archive.model(MODEL).expect("model");
        let (matrix, source) = CodeMatrix::open_or_build(&archive, &model).expect("matrix");
        assert_eq!(matrix.len(), expect_rows);
        source
    };
    assert!(matches!(source(3_000), MatrixSource::Rebuilt(_)));
    assert_eq!(source(3_000), MatrixSource::Loaded);
    ingest(
        dir.path(),
        &synthetic_stream(1_000, 2, 1, None).expect("b"),
        "b.bin",
    );
    assert_eq!(source(4_000), MatrixSource::Extended(1_000));
    assert_eq!(source(4_000), MatrixSource::Loaded);
    // A damaged file is rebuilt from SQLite, never trusted.
    let path = CodeMatrix::path_for(&archive_dir, MODEL);
    let mut bytes = std::fs::read(&path).expect("read");
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&path, &bytes).expect("damage");
    assert!(matches!(source(4_000), MatrixSource::Rebuilt(_)));
    std::fs::remove_file(&path).expect("remove");
    assert!(matches!(source(4_000), MatrixSource::Rebuilt(_)));
    // And the rebuilt matrix holds what SQLite holds.
    let archive = Archive::open(&archive_dir).expect("open");
    let model = archive.model(MODEL).expect("model");
    let (matrix, _) = CodeMatrix::open_or_build(&archive, &model).expect("matrix");
    let records = archive
        .records_by_id(&[matrix.ids[0], matrix.ids[3_999]])
        .expect("records");
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].tile_id, matrix.tiles[3_999]);
}

#[test]
fn model_cards_and_stats() {
    let dir = tempfile::tempdir().expect("temp dir");
    ingest(
        dir.path(),
        &synthetic_stream(1_000, 1, 1, None).expect("a"),
        "a.bin",
    );
    let archive_dir = dir.path().join("archive");
    let mut archive = Archive::open(&archive_dir).expect("open");
    let stats = archive.stats().expect("stats");
    assert_eq!(stats.records, 1_000);
    assert_eq!(stats.models.len(), 1);
    assert!(stats.models[0]
        .labels
        .iter()
        .all(|(name, _)| name.parse::<u16>().is_ok()));
    assert!(matches!(
        archive.register_model_card(&card(MODEL, 128, &["a"])),
        Err(GroundError::CardCodeLength { .. })
    ));
    archive
        .register_model_card(&card(MODEL, 64, &CLASSES))
        .expect("card");
    let stats = archive.stats().expect("stats");
    let total: u64 = stats.models[0].labels.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 1_000);
    assert!(stats.models[0]
        .labels
        .iter()
        .any(|(name, _)| name == "water"));
    assert_eq!(stats.passes.len(), 1);
    assert_eq!(stats.sessions.len(), 1);
}

#[test]
fn a_card_may_come_before_its_models_packets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let archive_dir = dir.path().join("archive");
    let mut archive = Archive::open(&archive_dir).expect("open");
    archive
        .register_model_card(&card(MODEL, 64, &CLASSES))
        .expect("card first");
    let other = ModelId([1; 8]);
    archive
        .register_model_card(&card(other, 32, &["x"]))
        .expect("a model that never sends");
    let models = archive.models().expect("models");
    assert_eq!(models.len(), 2);
    assert!(models.iter().all(|model| model.label_set.is_none()));
    drop(archive);
    ingest(
        dir.path(),
        &synthetic_stream(1_000, 1, 1, None).expect("a"),
        "a.bin",
    );
    let model = Archive::open(&archive_dir)
        .expect("open")
        .model(MODEL)
        .expect("model");
    assert_eq!(
        model.label_set,
        Some(1),
        "its first packet tells the label set"
    );
    assert_eq!(model.record_count, 1_000);
    assert_eq!(model.class_names.as_deref().map(<[String]>::len), Some(10));
}

//! The Milvus backend against a real Milvus server (the one milvus-lite 2.5.1 carries): the same
//! hits as the embedded backend, ties included; a re-sync adds nothing; a stale or unreachable
//! Milvus is an error naming the URL, never an empty answer.

use std::path::{Path, PathBuf};

use orbhash_ground::archive::Archive;
use orbhash_ground::bench::{synthetic_stream_of, SyntheticStream};
use orbhash_ground::ingest::{ingest_files, IngestOptions};
use orbhash_ground::milvus::{Milvus, MilvusConfig};
use orbhash_ground::search::{run_query, Backend, Method, Query, QuerySpec, SearchSpec};
use orbhash_ground::GroundError;
use orbhash_test_support::MilvusServer;
use orbhash_wire::{Code, ModelId};
use rand_chacha::rand_core::{RngCore, SeedableRng};

const RECORDS: usize = 3_000;
const SCENES: usize = 3;
/// Queries per combination of spec and filter: random codes and archived ones.
const QUERIES: usize = 1_000;

fn model_id(bits: u16) -> ModelId {
    let mut id = *b"milvus00";
    id[5..8].copy_from_slice(format!("{bits:03}").as_bytes());
    ModelId(id)
}

/// A downlink file of `records` random `bits`-bit codes, `per_scene` tiles to a scene.
fn pass_file(dir: &Path, name: &str, records: usize, bits: u16, per_scene: usize) -> PathBuf {
    let stream = synthetic_stream_of(
        &SyntheticStream {
            records,
            bits,
            tiles_per_scene: per_scene,
            model_id: model_id(bits),
            apid: 1,
            epoch: u32::from(bits),
        },
        None,
    )
    .expect("generates");
    let file = dir.join(name);
    std::fs::write(&file, stream).expect("writes");
    file
}

/// An archive of `RECORDS` random `bits`-bit codes over `SCENES` scenes.
fn archive_of(dir: &Path, bits: u16) -> PathBuf {
    let file = pass_file(dir, &format!("{bits}.bin"), RECORDS, bits, RECORDS / SCENES);
    let archive = dir.join(format!("archive-{bits}"));
    ingest_files(&archive, &[file], IngestOptions::default(), None).expect("ingests");
    archive
}

fn query(codes: &[Code], spec: SearchSpec, backend: Backend) -> Query {
    Query {
        method: Method::Scan,
        threads: 2,
        backend,
        ..Query::new(codes.iter().cloned().map(QuerySpec::Code).collect(), spec)
    }
}

/// Each answer as (distance, record id) in rank order.
fn hits(archive: &Path, query: &Query) -> Vec<Vec<(u32, i64)>> {
    run_query(archive, query)
        .expect("query")
        .answers
        .iter()
        .map(|answer| {
            answer
                .matches
                .iter()
                .map(|m| (m.distance, m.record.id))
                .collect()
        })
        .collect()
}

#[test]
fn both_backends_return_identical_hits_at_every_code_length() {
    let Some(server) = MilvusServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let config = MilvusConfig::new(server.url.clone());
    for bits in [16u16, 32, 64, 128] {
        let archive_dir = archive_of(dir.path(), bits);
        let archive = Archive::open(&archive_dir).expect("opens");
        let model = archive.model(model_id(bits)).expect("model");
        let milvus = Milvus::connect(&config).expect("connects");
        let first = milvus.sync(&archive, &model).expect("syncs");
        assert_eq!(first.records_written, RECORDS as u64);
        // Idempotent: a second sync, and one from a high-water mark reset to zero, add nothing.
        assert_eq!(
            milvus
                .sync(&archive, &model)
                .expect("syncs")
                .records_written,
            0
        );
        milvus.rebuild(&archive, &model).expect("rebuilds");
        assert_eq!(milvus.count(&model).expect("counts"), RECORDS as u64);

        // Random codes, and archived codes (distance-0 hits, and their ties).
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(u64::from(bits));
        let archived = run_query(
            &archive_dir,
            &query(
                &[Code::from_bytes(bits, &vec![0u8; usize::from(bits) / 8]).expect("code")],
                SearchSpec::top_k(QUERIES / 2),
                Backend::Embedded,
            ),
        )
        .expect("query");
        let mut codes: Vec<Code> = archived.answers[0]
            .matches
            .iter()
            .map(|m| {
                let bytes = orbhash_wire::hex::decode(&m.record.code).expect("hex");
                Code::from_bytes(bits, &bytes).expect("code")
            })
            .collect();
        while codes.len() < QUERIES {
            let mut bytes = vec![0u8; usize::from(bits) / 8];
            rng.fill_bytes(&mut bytes);
            codes.push(Code::from_bytes(bits, &bytes).expect("code"));
        }
        let radius = u32::from(bits) / 4;
        let specs = [
            SearchSpec::top_k(10),
            SearchSpec::within(radius),
            SearchSpec {
                k: Some(5),
                radius: Some(radius),
            },
        ];
        for spec in specs {
            for filter in 0..4 {
                let mut embedded = query(&codes, spec, Backend::Embedded);
                match filter {
                    1 => embedded.labels = vec!["3".into(), "7".into()],
                    2 => embedded.scenes = vec![1],
                    3 => {
                        embedded.time_from = Some(1_700_000_000_000 + 60_000);
                        embedded.time_to = Some(1_700_000_000_000 + 2 * 60_000);
                    }
                    _ => {}
                }
                let mut remote = embedded.clone();
                remote.backend = Backend::Milvus(config.clone());
                let expected = hits(&archive_dir, &embedded);
                let found = hits(&archive_dir, &remote);
                assert!(
                    expected.iter().any(|answer| !answer.is_empty()),
                    "{bits} bits, {spec:?}, filter {filter}: nothing to compare"
                );
                for (at, (want, got)) in expected.iter().zip(&found).enumerate() {
                    assert_eq!(
                        want, got,
                        "{bits} bits, {spec:?}, filter {filter}, query {at}: the backends differ"
                    );
                }
                assert_eq!(expected.len(), found.len());
            }
        }
    }
}

#[test]
fn a_stale_or_unreachable_milvus_is_an_error_never_an_empty_answer() {
    let Some(mut server) = MilvusServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let archive_dir = archive_of(dir.path(), 64);
    let config = MilvusConfig {
        timeout: std::time::Duration::from_secs(5),
        ..MilvusConfig::new(server.url.clone())
    };
    let code = Code::from_bytes(64, &[0u8; 8]).expect("code");
    let remote = query(
        &[code],
        SearchSpec::top_k(5),
        Backend::Milvus(config.clone()),
    );
    // Never synced: the collection does not hold the archive's codes.
    match run_query(&archive_dir, &remote) {
        Err(GroundError::MilvusBehind { held, archived, .. }) => {
            assert_eq!((held, archived), (0, RECORDS as u64));
        }
        other => panic!("a stale collection was searched: {other:?}"),
    }
    let archive = Archive::open(&archive_dir).expect("opens");
    let model = archive.model(model_id(64)).expect("model");
    Milvus::connect(&config)
        .expect("connects")
        .sync(&archive, &model)
        .expect("syncs");
    assert_eq!(hits(&archive_dir, &remote)[0].len(), 5);
    // Down: the error names the URL.
    server.kill();
    let error = run_query(&archive_dir, &remote).expect_err("Milvus is down");
    assert!(
        error.to_string().contains(&server.url),
        "the error does not name the server: {error}"
    );
}

#[test]
fn a_milvus_killed_mid_sync_and_restarted_ends_with_every_code_once() {
    let Some(binary) = MilvusServer::binary() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("milvus.db");
    let mut server = MilvusServer::start_on(&binary, &data, None);
    let port = server.port();
    let records = 60_000usize;
    let file = pass_file(dir.path(), "big.bin", records, 64, 20_000);
    let archive_dir = dir.path().join("archive");
    ingest_files(&archive_dir, &[file], IngestOptions::default(), None).expect("ingests");
    let config = MilvusConfig {
        timeout: std::time::Duration::from_secs(10),
        ..MilvusConfig::new(server.url.clone())
    };

    // Sync in the background; kill -9 the server once its first batch has landed.
    let syncing = {
        let (archive_dir, config) = (archive_dir.clone(), config.clone());
        std::thread::spawn(move || {
            let archive = Archive::open(&archive_dir).expect("opens");
            let model = archive.model(model_id(64)).expect("model");
            Milvus::connect(&config)?.sync(&archive, &model)
        })
    };
    let watcher = Milvus::connect(&config).expect("connects");
    let model = Archive::open(&archive_dir)
        .expect("opens")
        .model(model_id(64))
        .expect("model");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while watcher.count(&model).unwrap_or(0) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    server.kill();
    let interrupted = syncing.join().expect("the sync thread");
    println!(
        "sync when the server was killed: {}",
        match &interrupted {
            Ok(report) => format!("had finished ({} written)", report.records_written),
            Err(error) => format!("interrupted: {error}"),
        }
    );

    // Restarted on its data: a sync completes it; every code once, and search agrees.
    let _server = MilvusServer::start_on(&binary, &data, Some(port));
    let archive = Archive::open(&archive_dir).expect("opens");
    let milvus = Milvus::connect(&config).expect("reconnects");
    milvus
        .sync(&archive, &model)
        .expect("syncs after the restart");
    assert_eq!(milvus.count(&model).expect("counts"), records as u64);
    let codes: Vec<Code> = (0..50u64)
        .map(|i| {
            Code::from_bytes(64, &i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes())
                .expect("code")
        })
        .collect();
    let embedded = query(&codes, SearchSpec::top_k(10), Backend::Embedded);
    let mut remote = embedded.clone();
    remote.backend = Backend::Milvus(config);
    assert_eq!(hits(&archive_dir, &embedded), hits(&archive_dir, &remote));
}

/// The command line as an operator runs it: `ingest --milvus` writes both, `query --milvus`
/// answers as the embedded backend does, `index sync` has nothing left to write.
#[test]
fn ingest_and_query_with_milvus_from_the_command_line() {
    let Some(server) = MilvusServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = pass_file(dir.path(), "pass.bin", 2_000, 32, 1_000);
    let archive = dir.path().join("archive");
    let ground = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_orbhash-ground"))
            .args(args)
            .output()
            .expect("runs orbhash-ground");
        assert!(
            output.status.success(),
            "orbhash-ground {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let archive_arg = archive.to_str().expect("utf-8");
    let file_arg = file.to_str().expect("utf-8");
    ground(&[
        "ingest",
        "--archive",
        archive_arg,
        "--milvus",
        &server.url,
        file_arg,
    ]);
    // Ingested twice: the archive and Milvus both add nothing.
    ground(&[
        "ingest",
        "--archive",
        archive_arg,
        "--milvus",
        &server.url,
        file_arg,
    ]);
    let sync = ground(&[
        "index",
        "sync",
        "--archive",
        archive_arg,
        "--milvus",
        &server.url,
    ]);
    assert!(sync.contains("2000"), "{sync}");
    let answer = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "query",
            "--archive",
            archive_arg,
            "--code",
            "0f0f0f0f",
            "-k",
            "25",
            "--scene",
            "1",
            "--json",
        ];
        args.extend_from_slice(extra);
        let json: serde_json::Value = serde_json::from_str(&ground(&args)).expect("json");
        json["answers"].clone()
    };
    let embedded = answer(&[]);
    assert_eq!(embedded[0]["matches"].as_array().map(Vec::len), Some(25));
    assert_eq!(embedded, answer(&["--milvus", &server.url]));
}

//! The ground station as an operator drives it: the `orbhash-ground` binary itself, ingest then query
//! (table and JSON), stats, and clear errors for bad input.

use std::process::{Command, Output};

use orbhash_ground::bench::synthetic_stream;

fn ground(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orbhash-ground"))
        .args(args)
        .output()
        .expect("orbhash-ground runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn ingest_query_and_stats_through_the_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pass = dir.path().join("pass.bin");
    std::fs::write(&pass, synthetic_stream(500, 7, 1, None).expect("stream")).expect("writes");
    let archive = dir.path().join("archive");
    let archive = archive.to_str().expect("utf-8 path");
    let pass = pass.to_str().expect("utf-8 path");

    let ingest = ground(&["ingest", "--archive", archive, pass, "--json"]);
    assert!(ingest.status.success(), "{ingest:?}");
    let reports: serde_json::Value = serde_json::from_str(&stdout(&ingest)).expect("JSON");
    assert_eq!(reports[0]["records_stored"], 500, "{reports}");

    // The same file again adds nothing.
    let again = ground(&["ingest", "--archive", archive, pass, "--json"]);
    let reports: serde_json::Value = serde_json::from_str(&stdout(&again)).expect("JSON");
    assert_eq!(reports[0]["records_stored"], 0, "{reports}");

    // Query by an archived tile: it finds itself first, at distance 0.
    let query = ground(&[
        "query",
        "--archive",
        archive,
        "--tile",
        "3",
        "-k",
        "5",
        "--json",
    ]);
    assert!(query.status.success(), "{query:?}");
    let result: serde_json::Value = serde_json::from_str(&stdout(&query)).expect("JSON");
    let matches = result["answers"][0]["matches"].as_array().expect("matches");
    assert_eq!(matches.len(), 5);
    assert_eq!(matches[0]["distance"], 0);
    let code = result["answers"][0]["code"]
        .as_str()
        .expect("code")
        .to_string();

    // By hex code, as a table.
    let table = ground(&["query", "--archive", archive, "--code", &code, "-k", "3"]);
    assert!(table.status.success(), "{table:?}");
    assert!(stdout(&table).contains("rank"), "{}", stdout(&table));

    let stats = ground(&["stats", "--archive", archive]);
    assert!(stats.status.success(), "{stats:?}");
    assert!(stdout(&stats).contains("500"), "{}", stdout(&stats));

    // Bad input: a code of the wrong length and a missing archive are named, not panics.
    let bad = ground(&["query", "--archive", archive, "--code", "abcd"]);
    assert!(!bad.status.success());
    let message = String::from_utf8_lossy(&bad.stderr);
    assert!(
        message.contains("error") && !message.contains("panicked"),
        "{message}"
    );
    let missing = dir.path().join("nowhere");
    let missing = ground(&["stats", "--archive", missing.to_str().expect("utf-8")]);
    assert!(!missing.status.success());
    assert!(!String::from_utf8_lossy(&missing.stderr).contains("panicked"));
}

#[test]
fn model_card_refuses_a_file_that_is_not_a_whole_card() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pass = dir.path().join("pass.bin");
    std::fs::write(&pass, synthetic_stream(200, 7, 1, None).expect("stream")).expect("writes");
    let archive = dir.path().join("archive");
    let archive = archive.to_str().expect("utf-8 path");
    let ingest = ground(&[
        "ingest",
        "--archive",
        archive,
        pass.to_str().expect("utf-8"),
    ]);
    assert!(ingest.status.success(), "{ingest:?}");
    // What used to pass for a card: class names and a code length, nothing else.
    let partial = dir.path().join("partial.json");
    std::fs::write(
        &partial,
        r#"{"classes": ["water", "forest"], "code_bits": 64}"#,
    )
    .expect("writes");
    let model = "62656e63686d726b"; // b"benchmrk"
    let refused = ground(&[
        "model-card",
        "--archive",
        archive,
        model,
        partial.to_str().expect("utf-8"),
    ]);
    assert!(!refused.status.success(), "{refused:?}");
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("partial.json") && message.contains("`format`"),
        "{message}"
    );
    let stats = ground(&["stats", "--archive", archive]);
    assert!(stdout(&stats).contains("no card"), "{}", stdout(&stats));
}

//! Ground station ingest: idempotency, loss/corruption/duplicate accounting, crash safety
//! (a real `kill -9`), the TCP listener, authentication.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use orbhash_ground::archive::Archive;
use orbhash_ground::bench::synthetic_stream;
use orbhash_ground::ingest::{
    ingest_files, ingest_reader, listen, Committer, IngestOptions, ListenOptions,
};
use orbhash_ground::matrix::CodeMatrix;
use orbhash_wire::{decode_stream, Decoder, MacKey, OwnedEvent};
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// Splits a byte stream into its frames (each ends with its 0x00).
fn frames(stream: &[u8]) -> Vec<Vec<u8>> {
    stream
        .split_inclusive(|byte| *byte == 0)
        .map(<[u8]>::to_vec)
        .collect()
}

/// (scene, tile, code) of every record in these frames.
fn records_of(frames: &[Vec<u8>]) -> BTreeSet<(u32, u32, u64)> {
    let (events, _) = decode_stream(&frames.concat(), Decoder::new());
    events
        .into_iter()
        .flat_map(|event| match event {
            OwnedEvent::Packet { records, .. } => records,
            OwnedEvent::Rejected(_) => Vec::new(),
        })
        .map(|record| {
            let mut le = [0u8; 8];
            le.copy_from_slice(record.code.as_bytes());
            (
                record.position.scene_id,
                record.tile_id,
                u64::from_le_bytes(le),
            )
        })
        .collect()
}

/// (scene, tile, code) of every record in the archive, and how many rows there are.
fn archived(dir: &Path) -> (BTreeSet<(u32, u32, u64)>, usize) {
    let archive = Archive::open(dir).expect("archive opens");
    let mut all = BTreeSet::new();
    let mut rows = 0;
    for model in archive.models().expect("models") {
        let (matrix, _) = CodeMatrix::open_or_build(&archive, &model).expect("matrix");
        rows += matrix.len();
        for row in 0..matrix.len() {
            all.insert((matrix.scenes[row], matrix.tiles[row], matrix.code(row)[0]));
        }
    }
    (all, rows)
}

fn options(batch_records: usize) -> IngestOptions {
    IngestOptions {
        batch_records,
        ..IngestOptions::default()
    }
}

#[test]
fn ingesting_the_same_file_twice_adds_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("pass.bin");
    std::fs::write(&file, synthetic_stream(2_345, 3, 1, None).expect("stream")).expect("write");
    let archive_dir = dir.path().join("archive");
    let first = ingest_files(
        &archive_dir,
        std::slice::from_ref(&file),
        options(1000),
        None,
    )
    .expect("ingest");
    assert_eq!(first[0].records_stored, 2_345);
    assert_eq!(first[0].packets_stored, 24);
    let second = ingest_files(&archive_dir, &[file], options(1000), None).expect("again");
    assert_eq!(second[0].records_stored, 0);
    assert_eq!(second[0].packets_duplicate, 24);
    assert_eq!(second[0].records_duplicate, 2_345);
    let (_, rows) = archived(&archive_dir);
    assert_eq!(rows, 2_345);
    let archive = Archive::open(&archive_dir).expect("open");
    let passes = archive.passes().expect("passes");
    assert_eq!(passes.len(), 1);
    assert_eq!((passes[0].apid, passes[0].epoch), (3, 1));
    assert_eq!(passes[0].packets_stored, 24);
    assert_eq!(passes[0].packets_received, 48);
    assert_eq!(passes[0].duplicates, 24);
    assert_eq!(passes[0].missing, 0);
    let sessions = archive.sessions().expect("sessions");
    assert_eq!(sessions.len(), 2);
    assert!(sessions.iter().all(|s| s.finished));
}

#[test]
fn corrupt_lost_duplicated_and_reordered_packets_are_accounted_for() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    // 600 packets on one APID. Counts crossing 2^14 are the decoder's to unwrap, and tested there
    // (orbhash-wire's `sequence_counts_wrap_at_2_pow_14`).
    let sent = frames(&synthetic_stream(60_000, 5, 2, None).expect("stream"));
    let mut delivered: Vec<Vec<u8>> = Vec::new();
    let mut intact: Vec<Vec<u8>> = Vec::new();
    let (mut corrupt, mut lost, mut duplicated) = (0u64, 0u64, 0u64);
    let last = sent.len() - 1;
    let mut late_copies: Vec<(usize, Vec<u8>)> = Vec::new();
    for (index, frame) in sent.iter().enumerate() {
        let roll = rng.next_u32() % 100;
        let edge = index == 0 || index == last;
        if !edge && roll == 0 {
            let mut damaged = frame.clone();
            let at = 10 + (rng.next_u32() as usize % (damaged.len() - 20));
            damaged[at] ^= 0x10;
            if damaged[at] == 0 {
                damaged[at] = 0x55;
            }
            delivered.push(damaged);
            corrupt += 1;
        } else if !edge && roll == 1 {
            lost += 1;
        } else {
            delivered.push(frame.clone());
            intact.push(frame.clone());
            if !edge && roll == 2 {
                late_copies.push((delivered.len() + 3, frame.clone()));
                duplicated += 1;
            }
        }
        while late_copies
            .first()
            .is_some_and(|(due, _)| *due <= delivered.len())
        {
            let (_, copy) = late_copies.remove(0);
            delivered.push(copy);
        }
    }
    for (_, copy) in late_copies.drain(..) {
        delivered.push(copy);
    }
    // Reorder: swap some neighbours (never the first frame, which starts the tracking).
    for at in 1..delivered.len() - 2 {
        if rng.next_u32() % 100 < 3 {
            delivered.swap(at, at + 1);
        }
    }
    assert!(corrupt > 0 && lost > 0 && duplicated > 0);
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = Archive::open(dir.path()).expect("archive");
    let mut committer = Committer::new(archive, options(5_000));
    ingest_reader(&mut committer, 0, delivered.concat().as_slice(), "faulty").expect("ingest");
    let reports = committer.finish().expect("finish");
    let report = &reports[0];
    assert_eq!(report.corrupt, corrupt, "{report:#?}");
    assert_eq!(report.missing, lost + corrupt, "{report:#?}");
    assert_eq!(report.packets_duplicate, duplicated, "{report:#?}");
    assert_eq!(report.passes.len(), 1);
    assert_eq!(report.passes[0].missing, lost + corrupt);
    assert_eq!(report.passes[0].duplicates, duplicated);
    let (stored, rows) = archived(dir.path());
    let expected = records_of(&intact);
    assert_eq!(
        rows,
        expected.len(),
        "every intact record stored exactly once"
    );
    assert_eq!(stored, expected);
    let passes = Archive::open(dir.path())
        .expect("open")
        .passes()
        .expect("passes");
    assert_eq!(passes[0].missing, lost + corrupt);
}

/// The child of `kill_9_during_ingest_loses_nothing_acknowledged`, not a test of its own (so
/// ignored): ingests slowly, printing `ACK <records>` after every durable commit.
#[test]
#[ignore = "the child process of kill_9_during_ingest_loses_nothing_acknowledged"]
fn kill_child_entry() {
    let dir = std::env::var("ORBHASH_GROUND_KILL_CHILD")
        .expect("run by kill_9_during_ingest_loses_nothing_acknowledged, which sets this");
    let dir = Path::new(&dir);
    let stream = std::fs::read(dir.join("stream.bin")).expect("stream");
    let archive = Archive::open(&dir.join("archive")).expect("archive");
    let mut committer = Committer::new(archive, options(1_000));
    committer.on_commit(|note| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ACK {}", note.records_stored);
        let _ = out.flush();
    });
    // Slow reader: many commits, so the kill lands mid-stream.
    struct Slow<'a>(&'a [u8]);
    impl std::io::Read for Slow<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            std::thread::sleep(Duration::from_millis(2));
            let n = buf.len().min(self.0.len()).min(3_000);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    ingest_reader(&mut committer, 0, Slow(&stream), "child").expect("ingest");
    committer.finish().expect("finish");
    println!("DONE");
}

#[test]
fn kill_9_during_ingest_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stream = synthetic_stream(200_000, 9, 4, None).expect("stream");
    std::fs::write(dir.path().join("stream.bin"), &stream).expect("write");
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "kill_child_entry",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ORBHASH_GROUND_KILL_CHILD", dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("child starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut acknowledged = 0u64;
    let mut acks = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if let Some(count) = line.strip_prefix("ACK ") {
            acknowledged = count.trim().parse().expect("count");
            acks += 1;
            if acks == 8 {
                break;
            }
        }
        assert_ne!(line, "DONE", "the child finished before it could be killed");
    }
    child.kill().expect("kill -9"); // SIGKILL on Unix
    let _ = child.wait();
    assert!(acknowledged > 0);
    let archive_dir = dir.path().join("archive");
    // Nothing acknowledged lost, nothing half-written: every stored packet has all its records.
    let connection = rusqlite::Connection::open(archive_dir.join("archive.sqlite")).expect("db");
    let records: i64 = connection
        .query_row("SELECT COUNT(*) FROM records", [], |row| row.get(0))
        .expect("count");
    assert!(
        records as u64 >= acknowledged,
        "{records} < {acknowledged} acknowledged"
    );
    let partial: i64 = connection
        .query_row(
            "SELECT COUNT(*) FROM packets p WHERE p.record_count !=
               (SELECT COUNT(*) FROM records r WHERE r.packet_id = p.id)",
            [],
            |row| row.get(0),
        )
        .expect("partial");
    assert_eq!(partial, 0);
    drop(connection);
    let (_, rows) = archived(&archive_dir);
    assert_eq!(
        rows as i64, records,
        "matrix matches the archive after the crash"
    );
    // Restart: ingest the whole stream again; every record exactly once.
    let reports = ingest_files(
        &archive_dir,
        &[dir.path().join("stream.bin")],
        options(50_000),
        None,
    )
    .expect("restart");
    assert_eq!(reports[0].records_stored as i64 + records, 200_000);
    let (stored, rows) = archived(&archive_dir);
    assert_eq!(rows, 200_000);
    assert_eq!(stored, records_of(&frames(&stream)));
    let sessions = Archive::open(&archive_dir)
        .expect("open")
        .sessions()
        .expect("s");
    assert!(
        !sessions[0].finished,
        "the killed session shows as interrupted"
    );
    assert!(sessions[1].finished);
}

fn send(addr: std::net::SocketAddr, bytes: &[u8]) {
    let mut socket = TcpStream::connect(addr).expect("connect");
    // Chunks of odd sizes: frames split across reads.
    for chunk in bytes.chunks(777) {
        socket.write_all(chunk).expect("send");
    }
}

fn run_listener(
    dir: &Path,
    key: Option<MacKey>,
    streams: Vec<Vec<u8>>,
) -> Vec<orbhash_ground::archive::SessionReport> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let archive_dir = dir.to_path_buf();
    let connections = streams.len();
    let server = std::thread::spawn(move || {
        listen(
            &archive_dir,
            ListenOptions {
                addr: "127.0.0.1:0".parse().expect("addr"),
                ingest: IngestOptions {
                    key,
                    batch_records: 5_000,
                    batch_interval: Duration::from_millis(50),
                },
                max_connections: Some(connections),
            },
            Some(ready_tx),
            None,
        )
    });
    let addr = ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("listener ready");
    assert!(addr.ip().is_loopback());
    let clients: Vec<_> = streams
        .into_iter()
        .map(|bytes| std::thread::spawn(move || send(addr, &bytes)))
        .collect();
    for client in clients {
        client.join().expect("client");
    }
    server.join().expect("server thread").expect("listen")
}

#[test]
fn tcp_listener_ingests_several_satellites_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let streams = vec![
        synthetic_stream(3_000, 1, 1, None).expect("a"),
        synthetic_stream(2_000, 2, 1, None).expect("b"),
        [
            synthetic_stream(1_000, 3, 1, None).expect("c1"),
            synthetic_stream(1_500, 3, 2, None).expect("c2"),
        ]
        .concat(),
    ];
    let reports = run_listener(dir.path(), None, streams);
    assert_eq!(reports.len(), 3);
    let stored: u64 = reports.iter().map(|r| r.records_stored).sum();
    assert_eq!(stored, 7_500);
    assert!(reports.iter().all(|r| r.peer.is_some() && r.finished));
    let passes = Archive::open(dir.path())
        .expect("open")
        .passes()
        .expect("passes");
    let keys: Vec<(u16, u32)> = passes.iter().map(|p| (p.apid, p.epoch)).collect();
    assert_eq!(keys, vec![(1, 1), (2, 1), (3, 1), (3, 2)]);
    assert!(passes.iter().all(|p| p.missing == 0));
}

#[test]
fn authenticated_listener_stores_only_genuine_packets_and_names_the_peer() {
    let key = MacKey::new([7; 32]);
    let dir = tempfile::tempdir().expect("temp dir");
    let genuine = synthetic_stream(1_000, 1, 1, Some(key.clone())).expect("genuine");
    let unsigned = synthetic_stream(500, 2, 1, None).expect("unsigned");
    let forged = synthetic_stream(700, 3, 1, Some(MacKey::new([8; 32]))).expect("forged");
    let reports = run_listener(dir.path(), Some(key), vec![genuine, unsigned, forged]);
    let stored: u64 = reports.iter().map(|r| r.records_stored).sum();
    assert_eq!(stored, 1_000);
    let failures: u64 = reports.iter().map(|r| r.auth_failures).sum();
    assert_eq!(failures, 5 + 7);
    for report in &reports {
        assert!(report.authenticated);
        assert!(report
            .peer
            .as_deref()
            .is_some_and(|p| p.starts_with("127.0.0.1:")));
        assert!(report.records_stored == 0 || report.auth_failures == 0);
    }
    // The reports, peers included, are in the archive.
    let sessions = Archive::open(dir.path())
        .expect("open")
        .sessions()
        .expect("s");
    assert_eq!(sessions.iter().map(|s| s.auth_failures).sum::<u64>(), 12);
    assert!(sessions.iter().all(|s| s.peer.is_some()));
}

#[test]
fn a_session_and_its_pass_report_the_decoder_figures() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sent = frames(&synthetic_stream(1_000, 5, 1, None).expect("stream"));
    // 5, 7, 6 (late, fills the gap), 3 (late, before anything tracked: no gap to fill), 8, 9.
    let order = [5usize, 7, 6, 3, 8, 9];
    let delivered: Vec<u8> = order.iter().flat_map(|&at| sent[at].clone()).collect();
    let file = dir.path().join("reordered.bin");
    std::fs::write(&file, &delivered).expect("write");
    let archive_dir = dir.path().join("archive");
    let reports = ingest_files(&archive_dir, &[file], options(1_000), None).expect("ingest");
    let report = &reports[0];
    assert_eq!((report.missing, report.late), (0, 2), "{report:#?}");
    let pass = &report.passes[0];
    assert_eq!(
        (pass.missing, pass.late),
        (report.missing, report.late),
        "{report:#?}"
    );
    let passes = Archive::open(&archive_dir)
        .expect("open")
        .passes()
        .expect("passes");
    assert_eq!(
        (passes[0].missing, passes[0].late),
        (report.missing, report.late),
        "{passes:#?}"
    );
}

#[test]
fn a_file_cut_before_its_last_delimiter_keeps_its_last_packet() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut stream = synthetic_stream(1_000, 6, 1, None).expect("stream");
    assert_eq!(stream.pop(), Some(0));
    let file = dir.path().join("cut.bin");
    std::fs::write(&file, &stream).expect("write");
    let reports =
        ingest_files(&dir.path().join("archive"), &[file], options(1_000), None).expect("ingest");
    assert_eq!(reports[0].records_stored, 1_000, "{:#?}", reports[0]);
    assert_eq!(reports[0].corrupt, 0);
}

/// The stream of `synthetic_stream`'s model with codes of another length: a model the archive
/// already knows with 64-bit codes, which it must refuse to store.
fn stream_with_32_bit_codes() -> Vec<u8> {
    use orbhash_wire::{
        Code, ModelId, PacketContext, PacketWriter, Record, StdIo, TileGrid, TilePosition,
        WriterConfig,
    };
    let mut writer = PacketWriter::new(WriterConfig::new(PacketContext {
        apid: 9,
        model_id: ModelId(*b"benchmrk"),
        code_bits: 32,
        label_set: 1,
        epoch: 1,
        grid: TileGrid::default(),
    }))
    .expect("writer");
    let mut sink = StdIo(Vec::new());
    for tile_id in 0..10 {
        let record = Record {
            tile_id,
            capture_time_ms: 1_700_000_000_000,
            position: TilePosition {
                scene_id: 1,
                row_px: 0,
                col_px: 0,
                map: None,
            },
            label: 0,
            confidence: 200,
            code: Code::from_bytes(32, &tile_id.to_le_bytes()).expect("code"),
        };
        writer.push(&record, &mut sink).expect("push");
    }
    writer.flush(&mut sink).expect("flush");
    sink.0
}

#[test]
fn the_listener_stops_when_its_archive_writer_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let archive_dir = dir.path().to_path_buf();
    std::thread::spawn(move || {
        let result = listen(
            &archive_dir,
            ListenOptions {
                addr: "127.0.0.1:0".parse().expect("addr"),
                ingest: IngestOptions {
                    batch_interval: Duration::from_millis(20),
                    ..IngestOptions::default()
                },
                max_connections: None,
            },
            Some(ready_tx),
            None,
        );
        let _ = done_tx.send(result);
    });
    let addr = ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("listener ready");
    send(addr, &synthetic_stream(500, 1, 1, None).expect("stream"));
    // Same model id, other code length: storing it fails, and the writer with it.
    send(addr, &stream_with_32_bit_codes());
    let result = done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the listener stops instead of accepting into a dead writer");
    let error = result.expect_err("the writer's failure is the answer");
    let mut chain = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    // Whichever stream the writer stored first, the other one is the cause.
    assert!(
        chain.contains("archive writer failed")
            && chain.contains("32-bit")
            && chain.contains("64-bit"),
        "{chain}"
    );
    assert!(
        TcpStream::connect(addr).is_err(),
        "nothing listens any more"
    );
}

//! `orbhash ground bench`: search and ingest throughput on generated codes, with FAISS beside.
//!
//! Codes look like learned ones: `classes` random centres, each code a centre with every bit
//! flipped with probability 2^-`noise_and` (the AND of that many random words), so buckets crowd
//! and distances tie as they do for a trained model. `--uniform` runs uniform random codes too.
//! Queries come from the same distribution but are not in the archive.
//!
//! The FAISS peer (`scripts/bench-ground-faiss.py`) is benchmark-only Python: given a Python
//! with `faiss` (`--faiss-python /tmp/faiss-venv/bin/python`), it reads the same code and query
//! files and reports `IndexBinaryFlat` and `IndexBinaryMultiHash` times at each thread count; its
//! exact distances are checked against ours.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use orbhash_cli::{Align, Table};
use orbhash_wire::{
    Code, ModelId, PacketContext, PacketWriter, Record, TileGrid, TilePosition, WriterConfig,
};
use rand_chacha::rand_core::{RngCore, SeedableRng};

use crate::archive::Archive;
use crate::ingest::{ingest_reader, Committer, IngestOptions};
use crate::kernel::Kernel;
use crate::matrix::CodeMatrix;
use crate::mih::MultiIndex;
use crate::search::{scan, Filter, Hit, ScanOptions, SearchSpec};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Codes in the archive.
    #[arg(long, default_value_t = 10_000_000)]
    pub codes: usize,
    /// Queries, run as one batch.
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    /// Neighbours per query.
    #[arg(short, long, default_value_t = 10)]
    pub k: usize,
    /// Code length K.
    #[arg(long, default_value_t = 64)]
    pub bits: u16,
    /// Clusters (classes) of the generated codes.
    #[arg(long, default_value_t = 32)]
    pub classes: usize,
    /// Bit noise around the class centres: each bit flips with probability 2^-N.
    #[arg(long, default_value_t = 3)]
    pub noise_and: u32,
    /// Also benchmark uniform random codes.
    #[arg(long)]
    pub uniform: bool,
    /// Thread counts to run the scan, MIH and FAISS with.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub threads: Vec<usize>,
    /// Skip multi-index hashing.
    #[arg(long)]
    pub no_mih: bool,
    /// Substrings for multi-index hashing (default: K / log2(n), tables of at most 24 bits).
    #[arg(long)]
    pub mih_substrings: Option<usize>,
    /// Also time the portable and POPCNT kernels (single thread), to show what dispatch buys.
    #[arg(long)]
    pub all_kernels: bool,
    /// A Python with faiss installed, to run the FAISS peer on the same codes.
    #[arg(long)]
    pub faiss_python: Option<PathBuf>,
    /// The FAISS peer script.
    #[arg(long, default_value = "scripts/bench-ground-faiss.py")]
    pub faiss_script: PathBuf,
    /// Work directory for the code files and the ingest archive.
    #[arg(long, default_value = "/tmp/orbhash-ground-bench")]
    pub out: PathBuf,
    /// Records for the ingest benchmark (0: skip).
    #[arg(long, default_value_t = 1_000_000)]
    pub ingest_records: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Also time a Milvus deployment on the same codes (its collection `orbhash_benchmrk` is
    /// replaced): latency at concurrency 1, 4 and 16, filters of 1 %, 10 % and 100 %
    /// selectivity, load time and time until searchable; hits checked against the scan.
    #[arg(long, value_name = "URL")]
    pub milvus: Option<String>,
}

/// Generated codes: `n` codes around `classes` centres (drawn from `centre_seed`), noise from
/// `seed`; labels are the classes. `noise_and == 0` gives uniform random codes.
pub fn clustered_matrix(
    n: usize,
    bits: u16,
    classes: usize,
    noise_and: u32,
    centre_seed: u64,
    seed: u64,
) -> CodeMatrix {
    let mut matrix = CodeMatrix::new(ModelId(*b"benchmrk"), bits);
    let words = matrix.words;
    matrix.codes.reserve(n * words);
    let classes = classes.max(1);
    let mut centre_rng = rand_chacha::ChaCha8Rng::seed_from_u64(centre_seed);
    let centres: Vec<u64> = (0..classes * words)
        .map(|_| centre_rng.next_u64())
        .collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mask = last_word_mask(bits);
    for row in 0..n {
        let class = (rng.next_u64() % classes as u64) as usize;
        for w in 0..words {
            let noise = if noise_and == 0 {
                rng.next_u64()
            } else {
                (0..noise_and).fold(u64::MAX, |acc, _| acc & rng.next_u64())
            };
            let centre = if noise_and == 0 {
                0
            } else {
                centres.get(class * words + w).copied().unwrap_or(0)
            };
            let word_mask = if w + 1 == words { mask } else { u64::MAX };
            matrix.codes.push((centre ^ noise) & word_mask);
        }
        matrix.ids.push(row as i64 + 1);
        matrix.labels.push(class as u16);
        matrix.scenes.push((row / 10_000) as u32);
        matrix.tiles.push((row % 10_000) as u32);
        matrix.times.push(row as u64);
    }
    matrix.max_record_id = n as i64;
    matrix
}

fn last_word_mask(bits: u16) -> u64 {
    match bits % 64 {
        0 => u64::MAX,
        rest => (1u64 << rest) - 1,
    }
}

fn write_codes(path: &Path, codes: &[u64], words: usize, bits: u16) -> anyhow::Result<()> {
    let bytes_per_code = usize::from(bits / 8);
    let mut out = Vec::with_capacity(codes.len() / words.max(1) * bytes_per_code);
    for code in codes.chunks_exact(words.max(1)) {
        let le: Vec<u8> = code.iter().flat_map(|w| w.to_le_bytes()).collect();
        out.extend_from_slice(le.get(..bytes_per_code).unwrap_or(&[]));
    }
    std::fs::write(path, out).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Bytes per second of a plain single-threaded read (sum) of `codes`: the memory-bandwidth bound
/// of one core for a scan, best of `rounds`.
pub fn read_bandwidth(codes: &[u64], rounds: usize) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..rounds.max(1) {
        let started = Instant::now();
        let sum = codes.iter().fold(0u64, |acc, w| acc.wrapping_add(*w));
        black_box(sum);
        best = best.min(started.elapsed().as_secs_f64());
    }
    (codes.len() * 8) as f64 / best
}

fn time<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let started = Instant::now();
    let out = f();
    (out, started.elapsed().as_secs_f64())
}

struct Row {
    name: String,
    ms_per_query: f64,
    note: String,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let kinds: Vec<(&str, u32)> = if args.uniform {
        vec![("clustered", args.noise_and), ("uniform", 0)]
    } else {
        vec![("clustered", args.noise_and)]
    };
    for (kind, noise) in kinds {
        bench_search(args, kind, noise)?;
    }
    if args.ingest_records > 0 {
        bench_ingest(args)?;
    }
    Ok(())
}

fn bench_search(args: &BenchArgs, kind: &str, noise: u32) -> anyhow::Result<()> {
    let bits = args.bits;
    let classes = if noise == 0 { 1 } else { args.classes };
    println!(
        "\n== search: {} {kind} {bits}-bit codes ({}), {} batched queries, k = {} ==",
        args.codes,
        if noise == 0 {
            "uniform random".to_string()
        } else {
            format!("{classes} classes, bit flip p = 2^-{noise}")
        },
        args.queries,
        args.k
    );
    let (matrix, generate_s) =
        time(|| clustered_matrix(args.codes, bits, classes, noise, args.seed, args.seed + 1));
    // Queries: the same centres, other noise; not in the archive.
    let query_matrix =
        clustered_matrix(args.queries, bits, classes, noise, args.seed, args.seed + 2);
    let queries: Vec<Vec<u64>> = (0..query_matrix.len())
        .map(|row| query_matrix.code(row).to_vec())
        .collect();
    println!("generated in {generate_s:.1} s");
    let spec = SearchSpec::top_k(args.k);
    let filter = Filter::default();
    let q = queries.len().max(1) as f64;
    let n = matrix.len() as f64;
    let bandwidth = read_bandwidth(&matrix.codes, 5);
    let bound_ms = (matrix.codes.len() * 8) as f64 / bandwidth * 1e3;
    let mut rows = vec![Row {
        name: "memory bound: plain read of the matrix, 1 thread".to_string(),
        ms_per_query: bound_ms,
        note: format!(
            "{:.2} GB/s, {:.2} G codes/s",
            bandwidth / 1e9,
            bandwidth / 8.0 / matrix.words as f64 / 1e9
        ),
    }];
    // One query at a time (no batching): bounded by memory.
    let single = queries.len().min(20);
    let kernel = Kernel::detect();
    let (_, single_s) = time(|| {
        for query in queries.iter().take(single) {
            black_box(scan(
                &matrix,
                std::slice::from_ref(query),
                spec,
                &filter,
                &ScanOptions {
                    threads: 1,
                    kernel,
                    ..ScanOptions::default()
                },
            ));
        }
    });
    rows.push(Row {
        name: format!("scan {}, 1 thread, one query at a time", kernel.name()),
        ms_per_query: single_s * 1e3 / single.max(1) as f64,
        note: String::new(),
    });
    let mut reference: Option<Vec<Vec<Hit>>> = None;
    let mut scan_ms = std::collections::BTreeMap::new();
    let mut kernels = vec![kernel];
    if args.all_kernels {
        kernels = Kernel::available();
        kernels.reverse();
    }
    for kernel in kernels {
        let thread_counts: Vec<usize> = if kernel == Kernel::detect() {
            args.threads.clone()
        } else {
            vec![1]
        };
        for &threads in &thread_counts {
            let options = ScanOptions {
                threads,
                kernel,
                ..ScanOptions::default()
            };
            let (hits, seconds) = time(|| scan(&matrix, &queries, spec, &filter, &options));
            let ms = seconds * 1e3 / q;
            if kernel == Kernel::detect() {
                scan_ms.insert(threads, ms);
            }
            let agrees = reference.as_ref().is_none_or(|r| *r == hits);
            rows.push(Row {
                name: format!("scan {}, {threads} thread(s), batched", kernel.name()),
                ms_per_query: ms,
                note: format!(
                    "{:.2} G codes/s{}{}",
                    n * q / seconds / 1e9,
                    if threads == 1 {
                        format!(", {:.2}× the memory bound", ms / bound_ms)
                    } else {
                        String::new()
                    },
                    if agrees { "" } else { ", DIFFERENT RESULTS" }
                ),
            });
            reference.get_or_insert(hits);
        }
    }
    let reference = reference.unwrap_or_default();
    let mut mih_ms = std::collections::BTreeMap::new();
    if !args.no_mih {
        let (index, build_s) = time(|| MultiIndex::build(&matrix, args.mih_substrings));
        println!(
            "multi-index: {} substrings, built in {:.1} s, {:.0} MB",
            index.substrings(),
            build_s,
            index.memory_bytes() as f64 / 1e6
        );
        for &threads in &args.threads {
            let ((hits, stats), seconds) =
                time(|| index.search_batch_with_stats(&matrix, &queries, spec, &filter, threads));
            if threads == args.threads.first().copied().unwrap_or(1) {
                println!(
                    "multi-index per query: {:.0} buckets probed, {:.0} candidates checked, \
                     substring radius up to {}, {} of {} queries handed to the scan",
                    stats.probes as f64 / q,
                    stats.candidates as f64 / q,
                    stats.max_radius,
                    stats.fell_back,
                    stats.queries
                );
            }
            let ms = seconds * 1e3 / q;
            mih_ms.insert(threads, ms);
            let exact = hits == reference;
            let versus = scan_ms.get(&threads).map_or(String::new(), |scan| {
                format!(", {:.1}× faster than the scan", scan / ms)
            });
            rows.push(Row {
                name: format!("multi-index hashing, {threads} thread(s)"),
                ms_per_query: ms,
                note: format!(
                    "{}{versus}",
                    if exact {
                        "exact: same results as the scan"
                    } else {
                        "NOT EQUAL TO THE SCAN"
                    }
                ),
            });
        }
    }
    if let Some(python) = &args.faiss_python {
        match run_faiss(args, python, kind, &matrix, &queries, &reference) {
            Ok(faiss_rows) => {
                for (name, ms, note) in faiss_rows {
                    let threads = name
                        .rsplit(' ')
                        .next()
                        .and_then(|t| t.trim_end_matches("t").parse::<usize>().ok());
                    // Flat is compared with our scan, MultiHash with our multi-index.
                    let (ours, what) = if name.contains("MultiHash") {
                        (&mih_ms, "multi-index")
                    } else {
                        (&scan_ms, "scan")
                    };
                    let ratio = threads
                        .and_then(|t| ours.get(&t))
                        .map_or(String::new(), |our| {
                            format!(", our {what} is {:.1}× faster", ms / our)
                        });
                    rows.push(Row {
                        name,
                        ms_per_query: ms,
                        note: format!("{note}{ratio}"),
                    });
                }
            }
            Err(error) => println!("FAISS peer not run: {error:#}"),
        }
    }
    if let Some(url) = &args.milvus {
        let single_ms = single_s * 1e3 / single.max(1) as f64;
        match bench_milvus(url, &matrix, &queries, spec, &reference, single_ms) {
            Ok(milvus_rows) => rows.extend(milvus_rows),
            Err(error) => println!("Milvus not benchmarked: {error:#}"),
        }
    }
    let mut table = Table::new(["method", "ms/query", "notes"]).align(&[
        Align::Left,
        Align::Right,
        Align::Left,
    ]);
    for row in &rows {
        table.row([
            row.name.clone(),
            if row.ms_per_query.is_nan() {
                "-".to_string()
            } else {
                format!("{:.3}", row.ms_per_query)
            },
            row.note.clone(),
        ]);
    }
    print!("{table}");
    Ok(())
}

/// The p-th percentile (0..=100) of `values` (sorted here).
fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let at = ((values.len().saturating_sub(1)) as f64 * p / 100.0).round() as usize;
    values.get(at).copied().unwrap_or(f64::NAN)
}

/// Milvus on the same codes: load, time until searchable, then per-query latency (one query per
/// call, as an operator's console sends them) at several concurrencies and filter
/// selectivities, each checked against the scan's hits where there is no filter.
fn bench_milvus(
    url: &str,
    matrix: &CodeMatrix,
    queries: &[Vec<u64>],
    spec: SearchSpec,
    reference: &[Vec<Hit>],
    single_scan_ms: f64,
) -> anyhow::Result<Vec<Row>> {
    use crate::archive::ModelInfo;
    use crate::milvus::{Milvus, MilvusConfig};
    let config = MilvusConfig::new(url);
    let model = ModelInfo {
        model_ref: 0,
        model_id: matrix.model_id,
        code_bits: matrix.bits,
        label_set: None,
        record_count: matrix.len() as u64,
        max_record_id: matrix.max_record_id,
        class_names: None,
    };
    let milvus = Milvus::connect(&config)?;
    let load_s = milvus.load_matrix(&model, matrix)?;
    let bytes = usize::from(matrix.bits) / 8;
    let to_code = |words: &[u64]| -> anyhow::Result<Code> {
        let bytes: Vec<u8> = words
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .take(bytes)
            .collect();
        Code::from_bytes(matrix.bits, &bytes).map_err(|e| anyhow::anyhow!("{e}"))
    };
    // Searchable: the first code's own row found at distance 0.
    let probe = to_code(matrix.code(0))?;
    let started = Instant::now();
    loop {
        let hits = milvus.search(
            &model,
            std::slice::from_ref(&probe),
            SearchSpec::top_k(1),
            &Filter::default(),
        )?;
        if hits
            .first()
            .and_then(|h| h.first())
            .is_some_and(|h| h.distance == 0)
        {
            break;
        }
        anyhow::ensure!(
            started.elapsed().as_secs() < 600,
            "not searchable after 10 minutes"
        );
    }
    let searchable_s = started.elapsed().as_secs_f64();
    let codes: Vec<Code> = queries
        .iter()
        .map(|q| to_code(q))
        .collect::<anyhow::Result<_>>()?;
    // Exactness: Milvus's hits against the scan's (rows are ids - 1 in a generated matrix).
    let found = milvus.search(&model, &codes, spec, &Filter::default())?;
    let exact = found.iter().zip(reference).all(|(got, want)| {
        got.len() == want.len()
            && got.iter().zip(want).all(|(g, w)| {
                g.distance == w.distance && matrix.ids.get(w.row as usize) == Some(&g.id)
            })
    });
    let n = matrix.len();
    let filters = [
        ("100 %", Filter::default()),
        (
            "10 %",
            Filter {
                time_from: Some(0),
                time_to: Some((n / 10) as u64),
                ..Filter::default()
            },
        ),
        (
            "1 %",
            Filter {
                time_from: Some(0),
                time_to: Some((n / 100) as u64),
                ..Filter::default()
            },
        ),
    ];
    let mut rows = vec![Row {
        name: "Milvus: load (upsert) and until searchable".to_string(),
        ms_per_query: f64::NAN,
        note: format!(
            "{:.0} records/s loading, searchable {:.2} s after the last upsert; {}",
            n as f64 / load_s.max(1e-9),
            searchable_s,
            if exact {
                "exact: same hits as the scan"
            } else {
                "NOT EQUAL TO THE SCAN"
            }
        ),
    }];
    let per_client = (codes.len() / 4).max(1);
    for (selectivity, filter) in &filters {
        for concurrency in [1usize, 4, 16] {
            let latencies = std::sync::Mutex::new(Vec::new());
            let failure = std::sync::Mutex::new(None::<String>);
            let started = Instant::now();
            std::thread::scope(|scope| {
                for client in 0..concurrency {
                    let (codes, config, model, latencies, failure) =
                        (&codes, &config, &model, &latencies, &failure);
                    scope.spawn(move || {
                        let run = || -> crate::Result<Vec<f64>> {
                            let milvus = Milvus::connect(config)?;
                            let mut own = Vec::new();
                            for code in codes.iter().cycle().skip(client).take(per_client) {
                                let started = Instant::now();
                                milvus.search(model, std::slice::from_ref(code), spec, filter)?;
                                own.push(started.elapsed().as_secs_f64() * 1e3);
                            }
                            Ok(own)
                        };
                        match run() {
                            Ok(own) => latencies
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .extend(own),
                            Err(error) => {
                                *failure
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                                    Some(error.to_string())
                            }
                        }
                    });
                }
            });
            let wall = started.elapsed().as_secs_f64();
            if let Some(error) = failure
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
            {
                anyhow::bail!("{error}");
            }
            let mut latencies = latencies
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let count = latencies.len();
            let p50 = percentile(&mut latencies, 50.0);
            let p99 = percentile(&mut latencies, 99.0);
            let versus = format!(
                ", p50 {:.0}× the embedded scan's one-query time",
                p50 / single_scan_ms
            );
            rows.push(Row {
                name: format!("Milvus, filter {selectivity}, {concurrency} client(s)"),
                ms_per_query: p50,
                note: format!(
                    "p50 {p50:.2} ms, p99 {p99:.2} ms, {:.0} queries/s over {count}{versus}",
                    count as f64 / wall
                ),
            });
        }
    }
    Ok(rows)
}

/// Runs the FAISS script; returns (name ending in `<threads>t`, ms/query, note) rows.
fn run_faiss(
    args: &BenchArgs,
    python: &Path,
    kind: &str,
    matrix: &CodeMatrix,
    queries: &[Vec<u64>],
    reference: &[Vec<Hit>],
) -> anyhow::Result<Vec<(String, f64, String)>> {
    let codes_path = args.out.join(format!("{kind}-codes.bin"));
    let queries_path = args.out.join(format!("{kind}-queries.bin"));
    let result_path = args.out.join(format!("{kind}-faiss.json"));
    write_codes(&codes_path, &matrix.codes, matrix.words, matrix.bits)?;
    let flat: Vec<u64> = queries.iter().flatten().copied().collect();
    write_codes(&queries_path, &flat, matrix.words, matrix.bits)?;
    let threads: Vec<String> = args.threads.iter().map(usize::to_string).collect();
    let status = std::process::Command::new(python)
        .arg(&args.faiss_script)
        .arg("--codes")
        .arg(&codes_path)
        .arg("--queries")
        .arg(&queries_path)
        .arg("--bits")
        .arg(args.bits.to_string())
        .arg("--k")
        .arg(args.k.to_string())
        .arg("--threads")
        .arg(threads.join(","))
        .arg("--out")
        .arg(&result_path)
        .status()?;
    anyhow::ensure!(
        status.success(),
        "{} exited with {status}",
        args.faiss_script.display()
    );
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&result_path)?)?;
    // FAISS's exact distances must equal ours (ids may differ among ties).
    let ours: Vec<Vec<u64>> = reference
        .iter()
        .map(|hits| hits.iter().map(|h| u64::from(h.distance)).collect())
        .collect();
    let theirs: Vec<Vec<u64>> = json
        .get("flat_distances")
        .and_then(|v| v.as_array())
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    row.as_array()
                        .map(|d| d.iter().filter_map(serde_json::Value::as_u64).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    let agree = ours == theirs;
    let mut rows = Vec::new();
    for entry in json
        .get("runs")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        let name = entry.get("name").and_then(|v| v.as_str()).unwrap_or("?");
        let threads = entry.get("threads").and_then(|v| v.as_u64()).unwrap_or(0);
        let ms = entry
            .get("ms_per_query")
            .and_then(|v| v.as_f64())
            .unwrap_or(f64::NAN);
        let recall = entry.get("recall").and_then(|v| v.as_f64());
        let note = match recall {
            Some(recall) if recall < 1.0 => format!("approximate: recall@{} {:.3}", args.k, recall),
            Some(_) => "recall 1.000".to_string(),
            None if agree => "exact: distances equal ours".to_string(),
            None => "exact: DISTANCES DIFFER FROM OURS".to_string(),
        };
        rows.push((format!("FAISS {name}, {threads}t"), ms, note));
    }
    Ok(rows)
}

/// Ingest throughput: records from the shared PacketWriter into a fresh archive, durable commits.
fn bench_ingest(args: &BenchArgs) -> anyhow::Result<()> {
    let n = args.ingest_records;
    println!("\n== ingest: {n} records, 64-bit codes, 100 per packet, durable batched commits ==");
    let stream = synthetic_stream(n, 0, 7, None)?;
    let dir = args.out.join("ingest-archive");
    let _ = std::fs::remove_dir_all(&dir);
    let archive = Archive::open(&dir)?;
    let mut committer = Committer::new(archive, IngestOptions::default());
    let (result, seconds) = time(|| ingest_reader(&mut committer, 0, stream.as_slice(), "bench"));
    result?;
    let reports = committer.finish()?;
    let stored: u64 = reports.iter().map(|r| r.records_stored).sum();
    let (again, again_s) = time(|| -> anyhow::Result<u64> {
        let archive = Archive::open(&dir)?;
        let mut committer = Committer::new(archive, IngestOptions::default());
        ingest_reader(&mut committer, 0, stream.as_slice(), "bench again")?;
        Ok(committer.finish()?.iter().map(|r| r.records_stored).sum())
    });
    let (_, rebuild_s) = time(|| -> anyhow::Result<()> {
        let archive = Archive::open(&dir)?;
        let model = archive
            .models()?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("no model"))?;
        CodeMatrix::open_or_build(&archive, &model)?;
        Ok(())
    });
    let mut table = Table::new(["step", "seconds", "records/s", "notes"]).align(&[
        Align::Left,
        Align::Right,
        Align::Right,
        Align::Left,
    ]);
    for row in [
        vec![
            "ingest".to_string(),
            format!("{seconds:.2}"),
            format!("{:.0}", stored as f64 / seconds),
            format!("{stored} stored, {} bytes of stream", stream.len()),
        ],
        vec![
            "ingest the same stream again".to_string(),
            format!("{again_s:.2}"),
            format!("{:.0}", n as f64 / again_s),
            format!("{} stored (idempotent)", again?),
        ],
        vec![
            "build the code matrix from SQLite".to_string(),
            format!("{rebuild_s:.2}"),
            format!("{:.0}", n as f64 / rebuild_s),
            String::new(),
        ],
    ] {
        table.row(row);
    }
    print!("{table}");
    Ok(())
}

/// A COBS-framed stream of `n` records (64-bit codes, 100 per packet, one APID and epoch),
/// as the satellite writes it.
pub fn synthetic_stream(
    n: usize,
    apid: u16,
    epoch: u32,
    key: Option<orbhash_wire::MacKey>,
) -> anyhow::Result<Vec<u8>> {
    synthetic_stream_of(
        &SyntheticStream {
            records: n,
            bits: 64,
            tiles_per_scene: 1_000_000,
            model_id: ModelId(*b"benchmrk"),
            apid,
            epoch,
        },
        key,
    )
}

/// What [`synthetic_stream_of`] generates.
#[derive(Debug, Clone, Copy)]
pub struct SyntheticStream {
    pub records: usize,
    pub bits: u16,
    /// Record `i` is tile `i % tiles_per_scene` of scene `i / tiles_per_scene`, captured a minute
    /// after the scene before.
    pub tiles_per_scene: usize,
    pub model_id: ModelId,
    pub apid: u16,
    pub epoch: u32,
}

/// A COBS-framed stream of uniformly random codes with random labels (0..10), as the satellite
/// writes it.
pub fn synthetic_stream_of(
    spec: &SyntheticStream,
    key: Option<orbhash_wire::MacKey>,
) -> anyhow::Result<Vec<u8>> {
    let mut rng =
        rand_chacha::ChaCha8Rng::seed_from_u64(u64::from(spec.epoch) << 16 | u64::from(spec.apid));
    let mut writer = PacketWriter::new(WriterConfig {
        context: PacketContext {
            apid: spec.apid,
            model_id: spec.model_id,
            code_bits: spec.bits,
            label_set: 1,
            epoch: spec.epoch,
            grid: TileGrid {
                tiles_per_row: 1000,
                tile_size_px: 64,
                stride_px: 64,
            },
        },
        max_records: 100,
        max_packet_len: orbhash_wire::packet::MAX_PACKET_LEN,
        key,
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let per_scene = spec.tiles_per_scene.max(1);
    let mut sink = orbhash_wire::StdIo(Vec::with_capacity(spec.records * 11));
    let mut bytes = vec![0u8; usize::from(spec.bits) / 8];
    for i in 0..spec.records {
        let tile_id = (i % per_scene) as u32;
        let scene_id = (i / per_scene) as u32;
        rng.fill_bytes(&mut bytes);
        let code = Code::from_bytes(spec.bits, &bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
        let record = Record {
            tile_id,
            capture_time_ms: 1_700_000_000_000 + u64::from(scene_id) * 60_000,
            position: TilePosition {
                scene_id,
                row_px: (tile_id / 1000) * 64,
                col_px: (tile_id % 1000) * 64,
                map: None,
            },
            label: (rng.next_u32() % 10) as u16,
            confidence: 200,
            code,
        };
        writer
            .push(&record, &mut sink)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    writer
        .flush(&mut sink)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(sink.0)
}

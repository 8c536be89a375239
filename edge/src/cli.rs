//! `orbhash-edge` on the command line: the binary is a thin wrapper around [`main`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::bench::{bench, profile, profile_table, table, BenchOptions, ProfileOptions};
use crate::contact::ContactOptions;
use crate::link::{LinkTarget, Simulation};
use crate::run::{run as run_pipeline, Downlink, RunOptions, RunSummary};
use crate::screen::{ScreeningOptions, DEFAULT_MIN_CONFIDENCE, LOG_FILE};
use anyhow::Context;
use clap::{Parser, Subcommand};
use orbhash_cli::parse_duration;
use orbhash_contract::card::{CalibrationMethod, ModelCard, CARD_FORMAT};
use orbhash_infer::{Hasher, OnnxModel};
use orbhash_link::{Endpoint, LinkOptions};
use orbhash_wire::MacKey;
use orbhash_wire::RetentionPolicy;

/// orbhash on board: hash image tiles with the exported DHCNN model and downlink their codes.
#[derive(Debug, Parser)]
#[command(name = "orbhash-edge", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load an ONNX model as the board would and print its input, outputs and model card, so a
    /// model can be checked before it is uplinked.
    Inspect {
        /// The ONNX file to inspect.
        model: PathBuf,
        /// Batch size to prepare the model for (tract optimises for a fixed batch).
        #[arg(long, default_value_t = 1)]
        batch: usize,
    },
    /// Hash tiles and downlink their records: a directory of tiles or a whole scene cut on the
    /// model's grid, through the disk queue, to the link.
    Run(Box<RunArgs>),
    /// Measure tiles/s and ms/tile of one or more models on real tiles.
    Bench {
        /// ONNX models to compare (e.g. the f32 and the int8 export).
        #[arg(long = "model", required = true)]
        models: Vec<PathBuf>,
        /// Tiles: a directory of tiles or a scene.
        #[arg(long)]
        tiles: PathBuf,
        /// Batch sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,8")]
        batch: Vec<usize>,
        /// Thread counts, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        threads: Vec<usize>,
        /// Tiles per measurement.
        #[arg(long, default_value_t = 64)]
        tiles_per_run: usize,
        /// Print JSON rows instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Time every node of a model's optimised tract plan on real tiles: where inference time
    /// goes, by operator kind and by node.
    #[command(after_long_help = "\
Example:
  orbhash-edge profile --model models/s2-brandenburg-dhcnn64-f32.onnx --tiles scene.tif --runs 50

Times are those of tract's nodes alone (no preprocessing), averaged over the runs after one
untimed run; their sum is close to `orbhash-edge bench`'s ms/tile times the batch size.")]
    Profile {
        /// The ONNX model.
        #[arg(long)]
        model: PathBuf,
        /// Tiles: a directory of tiles or a scene; the first batch of them is run.
        #[arg(long)]
        tiles: PathBuf,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Threads of tract's matrix-multiply executor.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Timed runs.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// How many of the slowest nodes to list.
        #[arg(long, default_value_t = 15)]
        top: usize,
        /// Print the whole profile as JSON instead of the tables.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Examples:
  orbhash-edge run --model models/s2-dhcnn64-int8.onnx --tiles scene.tif --downlink file:down.bin
  orbhash-edge run --model M --tiles tiles/ --downlink tcp:ground.example:7000 --queue /data/queue
  orbhash-edge run --model M --tiles scene.tif --downlink file:down.bin --link-up 2s --link-down 3s \\
      --corrupt 0.01 --drop 0.01 --seed 7      (a simulated intermittent link)
  orbhash-edge run --model clouds.onnx --tiles scene.tif --downlink serial:/dev/ttyS1 \\
      --drop-label cloud --drop-label shadow --min-confidence 0.7      (on-board screening)

Frames wait in the queue directory until the link takes them; a killed or crashed run loses no
queued record, and a rerun skips the tiles already queued and continues the sequence count.

Screening (--drop-label): a tile the model labels with one of the given classes, at or above
--min-confidence, is not downlinked at all; it sends nothing. The summary counts dropped tiles
per label, lists them, and gives the downlink bytes with and without screening; the queue
directory's screened.log keeps every decision, so a rerun skips the tiles already dropped. On the
ground a screened tile is a missing tile id with no sequence gap (a lost frame is a gap).")]
struct RunArgs {
    /// The exported ONNX model (its card says how to cut and normalise tiles).
    #[arg(long)]
    model: PathBuf,
    /// A directory of tile images, or one scene image to cut on the model's tile grid.
    #[arg(long)]
    tiles: PathBuf,
    /// A one-way downlink: file:PATH, tcp:HOST:PORT, serial:DEVICE or stdout. A frame is done
    /// once written.
    #[arg(long, required_unless_present = "link", conflicts_with = "link")]
    downlink: Option<LinkTarget>,
    /// A two-way link to the ground station: tcp:HOST:PORT, listen:HOST:PORT, pipe:OUT,IN or
    /// serial:DEVICE. Records and tasked tiles go down with acknowledged delivery (CFDP class 2:
    /// a frame is done only once the ground has committed it); telecommands come up.
    #[arg(long, value_name = "ENDPOINT")]
    link: Option<Endpoint>,
    /// Two-way link: queued frame bytes per records transfer.
    #[arg(long, default_value_t = 16 * 1024, requires = "link")]
    bundle_bytes: u64,
    /// Two-way link: once everything is delivered, keep listening for telecommands until the
    /// link has been quiet this long (e.g. 5s).
    #[arg(long, value_parser = parse_duration, default_value = "0s", requires = "link")]
    linger: Duration,
    /// Two-way link: after the last tile is hashed, give up when the ground has not been heard
    /// for this long; what is left stays queued for the next run.
    #[arg(long, value_parser = parse_duration, default_value = "60s", requires = "link")]
    quiet_limit: Duration,
    #[command(flatten)]
    delivery: orbhash_link::args::DeliveryArgs,
    /// The store-and-forward queue directory.
    #[arg(long, default_value = "edge-queue")]
    queue: PathBuf,
    /// Most unsent bytes the queue keeps; past it the oldest segment is dropped.
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    queue_max_bytes: u64,
    /// Tiles per inference call. 1 is fastest with tract 0.23 on the default model (x86-64:
    /// 12.8 ms/tile at batch 1, 20 ms/tile at batch 8; see docs/results.md).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// tract matrix-multiply threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// CCSDS application process id of this payload.
    #[arg(long, default_value_t = 0x42)]
    apid: u16,
    /// Label-set id carried in the packets.
    #[arg(long, default_value_t = 0)]
    label_set: u16,
    /// Mission key: 64 hex digits; packets then carry a truncated HMAC-SHA-256.
    #[arg(long, env = "ORBHASH_MISSION_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Records per packet at most.
    #[arg(long, default_value_t = 32)]
    records_per_packet: u16,
    #[command(flatten)]
    simulation: orbhash_link::args::SimulationArgs,
    /// Stop after hashing this many new tiles.
    #[arg(long)]
    max_tiles: Option<u32>,
    /// Do not downlink tiles the model labels NAME (a class of the model's card: see
    /// `orbhash-edge inspect`); repeat for several. An unknown name stops the run before any tile
    /// is hashed.
    #[arg(long = "drop-label", value_name = "NAME")]
    drop_labels: Vec<String>,
    /// Drop a tile only when its label's probability is at least P: a weaker guess is downlinked
    /// with its label. The default keeps every tile the model is not at least even odds on;
    /// for a two-class model every predicted label has 0.5 or more.
    #[arg(long, value_name = "P", default_value_t = DEFAULT_MIN_CONFIDENCE,
          value_parser = parse_confidence, requires = "drop_labels")]
    min_confidence: f32,
    /// Keep the hashed scene (the --tiles file or directory) in this on-board store, so that its
    /// full tiles can be tasked later; the oldest scenes are evicted first, and each eviction
    /// is logged and listed in the summary.
    #[arg(long, value_name = "DIR")]
    scene_store: Option<PathBuf>,
    /// The scene store's capacity in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 8 << 30, requires = "scene_store")]
    store_capacity: u64,
    /// Evict stored scenes older than this many seconds (0: only capacity evicts).
    #[arg(long, value_name = "S", default_value_t = 0, requires = "scene_store")]
    store_max_age: u32,
    /// Print the run summary as JSON on stdout at the end.
    #[arg(long)]
    json: bool,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

fn parse_confidence(text: &str) -> Result<f32, String> {
    orbhash_cli::parse_probability(text).map(|p| p as f32)
}

/// The two-way link for people: one line in all, one per pass.
fn link_lines(link: &crate::contact::ContactSummary) -> Vec<String> {
    let t = &link.total;
    let c = &link.commands;
    let mut lines = vec![format!(
        "link {}: {} frames acknowledged ({} left queued); tiles sent {}, no longer on board {}, \
         {} waiting; {} transfers ({} refused by the ground, {} restarted); telecommands {} \
         accepted, {} rejected",
        link.endpoint,
        link.records_frames_acknowledged,
        link.frames_left,
        link.tiles_sent.len(),
        link.tiles_absent.len(),
        link.tasks_left,
        t.transactions_started,
        t.transactions_refused,
        t.transactions_restarted,
        c.gate.accepted,
        c.rejected(),
    )];
    for pass in &link.passes {
        let a = &pass.account;
        lines.push(format!(
            "  pass {}: down {} B (records {}, reports {}, tiles {}, resent {}, protocol {}), \
             up {} B, {} round trips; the channel lost {} and damaged {} of {} frames",
            pass.pass,
            a.bytes_sent(),
            a.record_bytes,
            a.report_bytes,
            a.tile_bytes,
            a.retransmitted_bytes,
            a.overhead_bytes,
            a.bytes_received,
            a.round_trips,
            pass.channel.lost,
            pass.channel.corrupted,
            pass.channel.frames,
        ));
    }
    lines
}

/// What screening did, for people: "dropped 312 of 945 tiles labelled cloud (33 %) at confidence
/// ≥ 0.50: downlink 6.6 kB instead of 9.9 kB; 2556.9 kB of raw tiles not sent". `None` without
/// `--drop-label`.
pub fn screening_line(summary: &RunSummary) -> Option<String> {
    let screening = summary.screening.as_ref()?;
    let hashed = summary.tiles_hashed;
    let percent = |n: u64| 100.0 * n as f64 / hashed.max(1) as f64;
    // Bytes as they are below 10 kB: a screened scene's records can be a few hundred bytes.
    let size = |bytes: u64| match bytes {
        0..10_000 => format!("{bytes} B"),
        _ => format!("{:.1} kB", bytes as f64 / 1000.0),
    };
    let dropped: u64 = screening.tiles_dropped.values().sum();
    let which = match screening.tiles_dropped.iter().collect::<Vec<_>>()[..] {
        [(label, _)] => format!("labelled {label} ({:.0} %)", percent(dropped)),
        ref labels => {
            let parts: Vec<String> = labels
                .iter()
                .map(|(label, &n)| format!("{n} labelled {label} ({:.0} %)", percent(n)))
                .collect();
            format!("({:.0} %): {}", percent(dropped), parts.join(", "))
        }
    };
    let earlier: u64 = screening.tiles_already_dropped.values().sum();
    let mut line = format!(
        "dropped {dropped} of {hashed} tiles {which} at confidence ≥ {:.2}: downlink {} instead \
         of {}; {} of raw tiles not sent",
        screening.min_confidence,
        size(screening.record_bytes_queued),
        size(screening.record_bytes_unscreened),
        size(screening.raw_tile_bytes_not_sent),
    );
    if earlier > 0 {
        line.push_str(&format!(
            "; {earlier} tiles dropped by earlier runs skipped (ids in the queue's {LOG_FILE})"
        ));
    }
    Some(line)
}

/// A model card for people: what `orbhash-edge inspect` prints, one field a line.
pub fn describe_card(card: &ModelCard) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let sha = |sha: &Option<String>| sha.clone().unwrap_or_else(|| "none".into());
    // Writing to a String cannot fail.
    let _ = (|| -> std::fmt::Result {
        writeln!(out, "card format: {CARD_FORMAT}")?;
        writeln!(out, "model id: {}", card.model_id)?;
        writeln!(out, "code: {} bits", card.bits)?;
        writeln!(out, "classes: {}", card.classes.join(", "))?;
        let used: Vec<&str> = card
            .input
            .bands
            .iter()
            .filter_map(|&band| card.band_names.get(band).map(String::as_str))
            .collect();
        writeln!(
            out,
            "input: {} px, channels {} of stored bands {}",
            card.input.size,
            used.join("/"),
            card.band_names.join("/")
        )?;
        writeln!(
            out,
            "tiles: {} px every {} px",
            card.tile.size, card.tile.stride
        )?;
        writeln!(
            out,
            "dataset: {} (manifest sha256 {})",
            card.dataset,
            sha(&card.dataset_manifest_sha256)
        )?;
        match &card.training.pretrained_sha256 {
            Some(sha) => writeln!(out, "pretrained weights: sha256 {sha}")?,
            None => writeln!(out, "pretrained weights: none (trained from scratch)")?,
        }
        writeln!(
            out,
            "training: {}",
            serde_json::Value::Object(card.training.config.clone())
        )?;
        writeln!(out, "precision: {}", card.precision.name())?;
        if let Some(quantisation) = &card.quantisation {
            let keep: Vec<String> = quantisation.keep_f32.iter().map(json_name).collect();
            writeln!(out, "int8 weights: {}", json_name(&quantisation.weights))?;
            writeln!(
                out,
                "kept in f32 (--keep-f32): {}",
                if keep.is_empty() {
                    "none".to_string()
                } else {
                    keep.join(", ")
                }
            )?;
            let calibration = &quantisation.calibration;
            let method = match calibration.method {
                CalibrationMethod::MinMax => "min/max".to_string(),
                CalibrationMethod::Percentile(p) => format!("percentile {p}"),
            };
            writeln!(
                out,
                "calibration: {method} over {} tiles of {} ({} split, manifest sha256 {})",
                calibration.tiles,
                calibration.dataset,
                calibration.split,
                sha(&calibration.dataset_manifest_sha256)
            )?;
            writeln!(
                out,
                "bias correction: {}",
                if quantisation.bias_correction {
                    "on (on the calibration tiles)"
                } else {
                    "off"
                }
            )?;
        }
        writeln!(out, "exporter: {}", card.exporter)
    })();
    out
}

/// The JSON name of a card enum value (`per-channel`, `depthwise`), as the card writes it.
fn json_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn parse_key(text: &str) -> anyhow::Result<MacKey> {
    MacKey::from_hex(text).ok_or_else(|| anyhow::anyhow!("the mission key must be 64 hex digits"))
}

/// The whole `orbhash-edge` command line; the binary is this one call.
pub fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("orbhash-edge: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect { model, batch } => {
            let loaded = OnnxModel::open(&model, batch)?;
            println!("model: {}", model.display());
            println!("input shape: {:?}", loaded.input_shape());
            println!("outputs: {}", loaded.output_names().join(", "));
            println!("graph id: {}", loaded.graph_id());
            let card = ModelCard::from_props(loaded.metadata())
                .with_context(|| format!("{}: unusable model card", model.display()))?;
            print!("{}", describe_card(&card));
            // The board's own checks of the card against the graph (ids, shapes, output widths).
            Hasher::open(&model, batch)?;
            println!("card: agrees with the graph");
            Ok(())
        }
        Command::Run(args) => {
            let key = args.key.as_deref().map(parse_key).transpose()?;
            let scene_store = args.scene_store.map(|dir| {
                (
                    dir,
                    RetentionPolicy {
                        capacity_bytes: args.store_capacity,
                        max_age_s: args.store_max_age,
                    },
                )
            });
            let downlink = match (args.link, args.downlink) {
                (Some(endpoint), _) => Downlink::TwoWay(Box::new(ContactOptions {
                    link: LinkOptions {
                        endpoint,
                        impairment: args.simulation.impairment(),
                        contact: args.simulation.contact(),
                    },
                    key: key.clone(),
                    delivery: args.delivery.config(),
                    bundle_bytes: args.bundle_bytes,
                    linger: args.linger,
                    quiet_limit: args.quiet_limit,
                    scene_store: scene_store.clone(),
                })),
                (None, Some(target)) => {
                    let simulation = &args.simulation;
                    // The one-way link's simulator knows windows, loss and corruption only.
                    if simulation.duplicate > 0.0
                        || simulation.latency > Duration::ZERO
                        || simulation.rate > 0
                    {
                        anyhow::bail!(
                            "--duplicate, --latency and --rate simulate the two-way link: give \
                             --link, or leave them out"
                        );
                    }
                    Downlink::OneWay {
                        target,
                        simulation: simulation.contact().map(|plan| Simulation {
                            up: plan.up,
                            down: plan.down,
                            corrupt: simulation.corrupt,
                            drop: simulation.drop,
                            seed: simulation.seed,
                        }),
                    }
                }
                (None, None) => anyhow::bail!("give --downlink (one-way) or --link (two-way)"),
            };
            orbhash_infer::threads::use_threads(args.threads)?;
            let options = RunOptions {
                model: args.model,
                tiles: args.tiles,
                downlink,
                queue: args.queue,
                queue_max_bytes: args.queue_max_bytes,
                batch: args.batch,
                apid: args.apid,
                label_set: args.label_set,
                key,
                max_records_per_packet: args.records_per_packet,
                capture_time_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                progress: !args.quiet,
                max_tiles: args.max_tiles,
                screening: ScreeningOptions {
                    drop_labels: args.drop_labels,
                    min_confidence: args.min_confidence,
                },
                scene_store,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let summary = runtime.block_on(run_pipeline(options))?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                eprintln!(
                    "orbhash-edge: {} tiles hashed ({} already done, {} failed) in {:.1} s: \
                     {:.1} tiles/s, {:.1} ms/tile inference; {} frames sent, {} left queued; \
                     {} B downlinked for {} B of raw tiles",
                    summary.tiles_hashed,
                    summary.tiles_already_done,
                    summary.tiles_failed,
                    summary.seconds,
                    summary.tiles_per_second,
                    summary.ms_per_tile,
                    summary.queue.frames_sent,
                    summary.frames_left_in_queue,
                    summary.downlinked_bytes,
                    summary.raw_tile_bytes
                );
                if let Some(line) = screening_line(&summary) {
                    eprintln!("orbhash-edge: {line}");
                }
                if let Some(link) = &summary.link {
                    for line in link_lines(link) {
                        eprintln!("orbhash-edge: {line}");
                    }
                }
                for (tile, reason) in &summary.problems {
                    eprintln!("orbhash-edge: tile {tile}: {reason}");
                }
            }
            Ok(())
        }
        Command::Bench {
            models,
            tiles,
            batch,
            threads,
            tiles_per_run,
            json,
        } => {
            let rows = bench(&BenchOptions {
                models,
                tiles,
                batches: batch,
                threads,
                tiles_per_run,
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", table(&rows));
            }
            Ok(())
        }
        Command::Profile {
            model,
            tiles,
            batch,
            threads,
            runs,
            top,
            json,
        } => {
            let profile = profile(&ProfileOptions {
                model,
                tiles,
                batch,
                threads,
                runs,
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&profile)?);
            } else {
                print!("{}", profile_table(&profile, top));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orbhash_contract::card::{
        Calibration, ConvKind, Precision, Quantisation, Training, WeightScaling,
    };

    #[test]
    fn inspect_says_how_a_file_was_quantised() {
        let card = ModelCard {
            precision: Precision::Int8,
            training: Training {
                pretrained_sha256: Some("ab".repeat(32)),
                config: Default::default(),
            },
            quantisation: Some(Quantisation {
                weights: WeightScaling::PerChannel,
                keep_f32: vec![ConvKind::Stem, ConvKind::Depthwise],
                calibration: Calibration {
                    method: CalibrationMethod::MinMax,
                    tiles: 159,
                    dataset: "s2-brandenburg".into(),
                    dataset_manifest_sha256: None,
                    split: "database".into(),
                },
                bias_correction: false,
            }),
            ..crate::source::tests::s2_card()
        };
        let text = describe_card(&card);
        for line in [
            "input: 128 px, channels B04/B03/B02 of stored bands B04/B03/B02/B08",
            &format!("pretrained weights: sha256 {}", "ab".repeat(32)),
            "int8 weights: per-channel",
            "kept in f32 (--keep-f32): stem, depthwise",
            "calibration: min/max over 159 tiles of s2-brandenburg (database split, manifest \
             sha256 none)",
            "bias correction: off",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
    }
}

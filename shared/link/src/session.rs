//! One side's link: a transport, the channel model for what this side sends, the contact plan,
//! and the accounting per pass.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::channel::{Channel, ChannelStats, ContactPlan, Impairment};
use crate::delivery::Account;
use crate::transport::{Duplex, Endpoint};

/// How one side opens its link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkOptions {
    pub endpoint: Endpoint,
    /// Damage to what this side sends (simulation; [`Impairment::NONE`] on a real link).
    pub impairment: Impairment,
    /// Contact windows; `None`: always in contact.
    pub contact: Option<ContactPlan>,
}

/// What crossed the link in one pass, as one side saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PassAccount {
    /// The pass number (the contact window's index; 0 without contact windows).
    pub pass: u64,
    #[serde(flatten)]
    pub account: Account,
    /// What the channel model did to this side's frames.
    pub channel: ChannelStats,
    /// Frames that arrived outside a contact window (dropped).
    pub frames_outside_contact: u64,
}

pub struct LinkSession {
    duplex: Duplex,
    channel: Channel,
    contact: Option<ContactPlan>,
    /// Frames on their way (latency), with the time they arrive at the peer's end.
    in_flight: VecDeque<(Instant, Vec<u8>)>,
    passes: BTreeMap<u64, PassAccount>,
    last_channel: ChannelStats,
    /// When the transmitter is free again (data rate).
    transmitter_free: Instant,
    /// The last round inside a contact window; `None` after a gap, so a gap is not contact time.
    last_round: Option<Instant>,
}

/// One round of a side's loop inside a contact window.
pub struct Round {
    /// What arrived.
    pub frames: Vec<Vec<u8>>,
    /// Contact time since the last round (zero for the first round of a window).
    pub contact: Duration,
}

impl LinkSession {
    pub fn open(options: &LinkOptions) -> std::io::Result<Self> {
        Ok(Self {
            duplex: Duplex::open(options.endpoint.clone())?,
            channel: Channel::new(options.impairment),
            contact: options.contact,
            in_flight: VecDeque::new(),
            passes: BTreeMap::new(),
            last_channel: ChannelStats::default(),
            transmitter_free: Instant::now(),
            last_round: None,
        })
    }

    pub fn duplex(&self) -> &Duplex {
        &self.duplex
    }

    /// How long until the link is up; zero when it is.
    pub fn wait_for_contact(&self) -> Duration {
        self.contact
            .map_or(Duration::ZERO, |plan| plan.wait(SystemTime::now()))
    }

    pub fn in_contact(&self) -> bool {
        self.wait_for_contact().is_zero()
    }

    /// The current pass number.
    pub fn pass(&self) -> u64 {
        self.contact.map_or(0, |plan| plan.pass(SystemTime::now()))
    }

    fn current_pass(&mut self) -> &mut PassAccount {
        let pass = self.pass();
        self.passes.entry(pass).or_insert_with(|| PassAccount {
            pass,
            ..PassAccount::default()
        })
    }

    /// Sends frames through the channel model: each leaves once the transmitter is free (data
    /// rate) and arrives after the latency.
    pub fn send(&mut self, frames: Vec<Vec<u8>>) {
        let Impairment { latency, rate, .. } = *self.channel.impairment();
        for frame in frames {
            let start = self.transmitter_free.max(Instant::now());
            let on_air = if rate == 0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(crate::delivery::wire_len(frame.len()) as f64 / rate as f64)
            };
            self.transmitter_free = start + on_air;
            for copy in self.channel.carry(&frame) {
                self.in_flight.push_back((start + on_air + latency, copy));
            }
        }
        let stats = self.channel.stats;
        let last = std::mem::replace(&mut self.last_channel, stats);
        let pass = self.current_pass();
        pass.channel.frames += stats.frames - last.frames;
        pass.channel.lost += stats.lost - last.lost;
        pass.channel.corrupted += stats.corrupted - last.corrupted;
        pass.channel.duplicated += stats.duplicated - last.duplicated;
        self.flush();
    }

    fn flush(&mut self) {
        let now = Instant::now();
        while self.in_flight.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, frame)) = self.in_flight.pop_front() {
                // Not connected: the frame is lost on the way, as on a radio nobody listens to.
                self.duplex.send(&frame);
            }
        }
    }

    /// Frames received within `timeout` (all that are waiting once the first arrives). Frames
    /// arriving outside a contact window are dropped.
    pub fn receive(&mut self, timeout: Duration) -> Vec<Vec<u8>> {
        self.flush();
        let wait = match self.in_flight.front() {
            Some((due, _)) => timeout.min(due.saturating_duration_since(Instant::now())),
            None => timeout,
        };
        let mut frames: Vec<Vec<u8>> = self.duplex.recv(wait).into_iter().collect();
        frames.extend(self.duplex.drain());
        self.flush();
        if !frames.is_empty() && !self.in_contact() {
            let dropped = frames.len() as u64;
            self.current_pass().frames_outside_contact += dropped;
            return Vec::new();
        }
        frames
    }

    /// The next round of a side's loop: outside a contact window it waits (at most 100 ms, so the
    /// caller can check its own ends) and returns `None`; inside one, the frames received within
    /// a few milliseconds and the contact time since the last round.
    pub fn next_round(&mut self) -> Option<Round> {
        let wait = self.wait_for_contact();
        if !wait.is_zero() {
            self.last_round = None;
            std::thread::sleep(wait.min(Duration::from_millis(100)));
            return None;
        }
        let frames = self.receive(Duration::from_millis(5));
        let now = Instant::now();
        let contact = self.last_round.map_or(Duration::ZERO, |last| now - last);
        self.last_round = Some(now);
        Some(Round { frames, contact })
    }

    /// Adds what the protocol counted since the last call to the current pass.
    pub fn record(&mut self, delta: &Account) {
        self.current_pass().account.add(delta);
    }

    /// Every pass so far, oldest first.
    pub fn passes(&self) -> Vec<PassAccount> {
        self.passes.values().copied().collect()
    }

    /// Frames still on their way (latency).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

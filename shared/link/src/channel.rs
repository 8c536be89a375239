//! The simulated channel: contact windows, latency, loss, corruption and duplication, seeded.
//!
//! Each side damages what it sends with its own seed, so a run is repeatable frame for frame
//! given the same traffic. Contact windows follow the wall clock (`up` then `down`, repeating from
//! the Unix epoch), so the board and the ground, two processes, agree on when a pass is on without
//! talking to each other, as orbit prediction lets a real board and station agree.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// When the link is up: `up`, then `down`, repeating on the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactPlan {
    pub up: Duration,
    pub down: Duration,
}

impl ContactPlan {
    fn period_ms(&self) -> u128 {
        (self.up + self.down).as_millis().max(1)
    }

    fn since_epoch_ms(now: SystemTime) -> u128 {
        now.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
    }

    /// How long until the next window opens; zero inside one.
    pub fn wait(&self, now: SystemTime) -> Duration {
        if self.down.is_zero() {
            return Duration::ZERO;
        }
        let into = Self::since_epoch_ms(now) % self.period_ms();
        if into < self.up.as_millis() {
            Duration::ZERO
        } else {
            Duration::from_millis((self.period_ms() - into) as u64)
        }
    }

    /// The window `now` falls in (or the last one before it): the pass number.
    pub fn pass(&self, now: SystemTime) -> u64 {
        (Self::since_epoch_ms(now) / self.period_ms()) as u64
    }
}

/// What a simulated channel does to the frames one side sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// Probability that a frame is lost.
    pub loss: f64,
    /// Probability that a frame arrives with one bit flipped.
    pub corrupt: f64,
    /// Probability that a frame arrives twice.
    pub duplicate: f64,
    /// One-way delay of every frame.
    pub latency: Duration,
    /// The link's data rate in bytes per second; 0 is unlimited. Frames queue behind each other
    /// at this rate, so a contact window carries only so much.
    pub rate: u64,
    pub seed: u64,
}

impl Impairment {
    pub const NONE: Impairment = Impairment {
        loss: 0.0,
        corrupt: 0.0,
        duplicate: 0.0,
        latency: Duration::ZERO,
        rate: 0,
        seed: 0,
    };
}

/// What the channel did to the frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChannelStats {
    pub frames: u64,
    pub lost: u64,
    pub corrupted: u64,
    pub duplicated: u64,
}

/// SplitMix64: a seeded, dependency-free stream is all a channel model needs.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// `true` with `probability`.
    pub fn chance(&mut self, probability: f64) -> bool {
        let uniform = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        probability > 0.0 && uniform < probability
    }
}

/// A seeded damage model for one direction.
#[derive(Debug, Clone)]
pub struct Channel {
    impairment: Impairment,
    random: SplitMix64,
    pub stats: ChannelStats,
}

impl Channel {
    pub fn new(impairment: Impairment) -> Self {
        Self {
            impairment,
            random: SplitMix64::new(impairment.seed),
            stats: ChannelStats::default(),
        }
    }

    pub fn impairment(&self) -> &Impairment {
        &self.impairment
    }

    fn next_random(&mut self) -> u64 {
        self.random.next_u64()
    }

    fn chance(&mut self, probability: f64) -> bool {
        self.random.chance(probability)
    }

    /// The copies of `frame` that arrive: none, one (perhaps damaged) or two.
    pub fn carry(&mut self, frame: &[u8]) -> Vec<Vec<u8>> {
        self.stats.frames += 1;
        if self.chance(self.impairment.loss) {
            self.stats.lost += 1;
            return Vec::new();
        }
        let mut bytes = frame.to_vec();
        if !bytes.is_empty() && self.chance(self.impairment.corrupt) {
            let at = (self.next_random() % bytes.len() as u64) as usize;
            let bit = self.next_random() % 8;
            if let Some(byte) = bytes.get_mut(at) {
                *byte ^= 1 << bit;
                self.stats.corrupted += 1;
            }
        }
        if self.chance(self.impairment.duplicate) {
            self.stats.duplicated += 1;
            return vec![bytes.clone(), bytes];
        }
        vec![bytes]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_asked_share_of_frames_is_damaged_and_the_seed_repeats_it() {
        let impairment = Impairment {
            loss: 0.1,
            corrupt: 0.05,
            duplicate: 0.02,
            latency: Duration::ZERO,
            rate: 0,
            seed: 11,
        };
        let mut channel = Channel::new(impairment);
        let arrived: Vec<Vec<Vec<u8>>> = (0..10_000u32)
            .map(|n| channel.carry(&n.to_le_bytes()))
            .collect();
        let stats = channel.stats;
        assert!((800..1200).contains(&stats.lost), "{stats:?}");
        assert!((350..650).contains(&stats.corrupted), "{stats:?}");
        assert!((100..300).contains(&stats.duplicated), "{stats:?}");
        let copies: u64 = arrived.iter().map(|a| a.len() as u64).sum();
        assert_eq!(copies, 10_000 - stats.lost + stats.duplicated);
        let mut again = Channel::new(impairment);
        assert!((0..10_000u32).all(|n| again.carry(&n.to_le_bytes()) == arrived[n as usize]));
    }

    #[test]
    fn contact_windows_follow_the_wall_clock() {
        let plan = ContactPlan {
            up: Duration::from_secs(3),
            down: Duration::from_secs(2),
        };
        let at = |s: u64| UNIX_EPOCH + Duration::from_millis(s);
        assert_eq!(plan.wait(at(10_000)), Duration::ZERO);
        assert_eq!(plan.wait(at(12_999)), Duration::ZERO);
        assert_eq!(plan.wait(at(13_000)), Duration::from_secs(2));
        assert_eq!(plan.wait(at(14_500)), Duration::from_millis(500));
        assert_eq!(plan.pass(at(14_999)), 2);
        assert_eq!(plan.pass(at(15_000)), 3);
    }
}

//! Where downlink frames go: a file, a TCP peer, a serial device or stdout, optionally through a
//! simulated intermittent link (contact windows, random corruption and loss, seeded) for tests
//! and demonstrations on the ground.

use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// A `--downlink` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkTarget {
    /// Appended to, fsynced per frame: a recorder on the radio's output.
    File(PathBuf),
    /// `host:port`, reconnected when it drops.
    Tcp(String),
    /// A serial device, configured beforehand (`stty -F DEV 115200 raw`): written as a file.
    Serial(PathBuf),
    Stdout,
}

impl FromStr for LinkTarget {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "stdout" {
            return Ok(Self::Stdout);
        }
        match text.split_once(':') {
            Some(("file", path)) if !path.is_empty() => Ok(Self::File(path.into())),
            Some(("serial", path)) if !path.is_empty() => Ok(Self::Serial(path.into())),
            Some(("tcp", address)) if address.contains(':') => Ok(Self::Tcp(address.into())),
            _ => Err(format!(
                "{text:?}: use file:PATH, tcp:HOST:PORT, serial:DEVICE or stdout"
            )),
        }
    }
}

/// Contact windows and channel damage of a simulated link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Simulation {
    /// The link is up for `up`, then down for `down`, repeating from the start of the run.
    pub up: Duration,
    pub down: Duration,
    /// Probability that a frame has one byte flipped on the way.
    pub corrupt: f64,
    /// Probability that a frame is lost on the way.
    pub drop: f64,
    pub seed: u64,
}

/// What the channel did to the frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChannelStats {
    pub corrupted: u64,
    pub lost: u64,
}

pub struct Link {
    target: LinkTarget,
    writer: Option<Box<dyn Write + Send>>,
    simulation: Option<Simulation>,
    started: Instant,
    random: orbhash_link::SplitMix64,
    pub channel: ChannelStats,
}

impl Link {
    pub fn new(target: LinkTarget, simulation: Option<Simulation>) -> Self {
        let seed = simulation.map_or(0, |s| s.seed);
        Self {
            target,
            writer: None,
            simulation,
            started: Instant::now(),
            random: orbhash_link::SplitMix64::new(seed),
            channel: ChannelStats::default(),
        }
    }

    fn next_random(&mut self) -> u64 {
        self.random.next_u64()
    }

    fn chance(&mut self, probability: f64) -> bool {
        self.random.chance(probability)
    }

    /// How long until the link is up; zero when it is up now.
    pub fn wait_for_contact(&self) -> Duration {
        let Some(simulation) = self.simulation else {
            return Duration::ZERO;
        };
        let period = simulation.up + simulation.down;
        if period.is_zero() || simulation.down.is_zero() {
            return Duration::ZERO;
        }
        let elapsed = self.started.elapsed().as_nanos() % period.as_nanos();
        let up = simulation.up.as_nanos();
        if elapsed < up {
            Duration::ZERO
        } else {
            Duration::from_nanos((period.as_nanos() - elapsed) as u64)
        }
    }

    fn open(&self) -> std::io::Result<Box<dyn Write + Send>> {
        Ok(match &self.target {
            LinkTarget::File(path) | LinkTarget::Serial(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
            LinkTarget::Tcp(address) => {
                let stream = std::net::TcpStream::connect(address)?;
                stream.set_nodelay(true)?;
                Box::new(stream)
            }
            LinkTarget::Stdout => Box::new(std::io::stdout()),
        })
    }

    /// Writes one frame; on an error the connection is dropped and reopened on the next call, and
    /// the frame stays in the queue.
    pub fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        let mut bytes = frame.to_vec();
        if let Some(simulation) = self.simulation {
            if self.chance(simulation.drop) {
                self.channel.lost += 1;
                return Ok(());
            }
            if self.chance(simulation.corrupt) && !bytes.is_empty() {
                let at = (self.next_random() % bytes.len() as u64) as usize;
                // Never create or remove a frame delimiter: damage stays inside this frame, as
                // a bit error inside one radio frame would.
                let flipped = bytes[at] ^ (1 << (self.next_random() % 8));
                if bytes[at] != 0 && flipped != 0 {
                    bytes[at] = flipped;
                    self.channel.corrupted += 1;
                }
            }
        }
        if self.writer.is_none() {
            let mut writer = self.open()?;
            // A delimiter first: it ends any frame a crash cut short on this link, so the frame
            // sent again now is not glued onto that torn one.
            writer.write_all(&[0])?;
            self.writer = Some(writer);
        }
        let result = self.writer.as_mut().map_or(Ok(()), |writer| {
            writer.write_all(&bytes)?;
            writer.flush()
        });
        if result.is_ok() {
            if let LinkTarget::File(path) = &self.target {
                // A recorder file counts as "sent" only once it is on disk.
                std::fs::File::open(path)?.sync_data()?;
            }
        } else {
            self.writer = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_nonsense_is_refused() {
        assert_eq!(
            "file:/tmp/down.bin".parse(),
            Ok(LinkTarget::File("/tmp/down.bin".into()))
        );
        assert_eq!(
            "tcp:127.0.0.1:7000".parse(),
            Ok(LinkTarget::Tcp("127.0.0.1:7000".into()))
        );
        assert_eq!("stdout".parse(), Ok(LinkTarget::Stdout));
        assert!("tcp:nowhere".parse::<LinkTarget>().is_err());
        assert!("ftp:x".parse::<LinkTarget>().is_err());
    }

    #[test]
    fn a_simulated_channel_damages_the_asked_share_of_frames() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("down.bin");
        let simulation = Simulation {
            up: Duration::from_secs(3600),
            down: Duration::ZERO,
            corrupt: 0.1,
            drop: 0.1,
            seed: 7,
        };
        let mut link = Link::new(LinkTarget::File(path.clone()), Some(simulation));
        for _ in 0..1000 {
            link.send(&[1, 2, 3, 4, 0]).expect("sends");
        }
        assert!((50..150).contains(&link.channel.lost), "{:?}", link.channel);
        assert!(
            (50..150).contains(&link.channel.corrupted),
            "{:?}",
            link.channel
        );
        let written = std::fs::read(&path).expect("reads");
        assert_eq!(written.len() as u64, 1 + 5 * (1000 - link.channel.lost));
        assert_eq!(
            written.iter().filter(|&&b| b == 0).count() as u64,
            1 + 1000 - link.channel.lost
        );
    }
}

//! Framed two-way transports: a pair of files or pipes, TCP (connecting or listening), a serial
//! device. Frames are COBS-encoded and end in `0x00`, as on the one-way downlink.
//!
//! Every transport reconnects by itself: a TCP peer that goes away (a `kill -9`) is dialled again
//! or waited for, a pipe file that does not exist yet is waited for. A frame sent while nothing is
//! connected is not sent (`send` returns `false`): to the protocol above it is a frame lost on the
//! way, which it recovers from.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Where one side of the link is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `tcp:HOST:PORT`: dial the peer, and dial again whenever the connection drops.
    Connect(String),
    /// `listen:HOST:PORT`: wait for the peer; a new connection replaces the old one.
    Listen(String),
    /// `pipe:OUT,IN`: append frames to OUT, read frames from IN as it grows (files or FIFOs).
    Pipe { out: PathBuf, input: PathBuf },
    /// `serial:DEVICE`: read and write one device, configured beforehand (`stty raw`).
    Serial(PathBuf),
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wrong = || {
            format!("{text:?}: use tcp:HOST:PORT, listen:HOST:PORT, pipe:OUT,IN or serial:DEVICE")
        };
        match text.split_once(':') {
            Some(("tcp", address)) if address.contains(':') => Ok(Self::Connect(address.into())),
            Some(("listen", address)) if address.contains(':') => Ok(Self::Listen(address.into())),
            Some(("pipe", paths)) => match paths.split_once(',') {
                Some((out, input)) if !out.is_empty() && !input.is_empty() => Ok(Self::Pipe {
                    out: out.into(),
                    input: input.into(),
                }),
                _ => Err(wrong()),
            },
            Some(("serial", path)) if !path.is_empty() => Ok(Self::Serial(path.into())),
            _ => Err(wrong()),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Connect(address) => write!(f, "tcp:{address}"),
            Endpoint::Listen(address) => write!(f, "listen:{address}"),
            Endpoint::Pipe { out, input } => {
                write!(f, "pipe:{},{}", out.display(), input.display())
            }
            Endpoint::Serial(path) => write!(f, "serial:{}", path.display()),
        }
    }
}

type SharedWriter = Arc<Mutex<Option<Box<dyn Write + Send>>>>;

/// Counts of what the transport itself saw.
#[derive(Debug, Default)]
struct Counters {
    bytes_in: AtomicU64,
    undecodable: AtomicU64,
    connections: AtomicU64,
}

/// A running transport: frames in on a channel, frames out through [`Duplex::send`].
pub struct Duplex {
    endpoint: Endpoint,
    writer: SharedWriter,
    frames: Receiver<Vec<u8>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

/// Longest frame accepted: a runaway sender (or a stream with its delimiters lost) cannot make
/// the reader buffer without bound.
pub const MAX_LINK_FRAME: usize = 64 * 1024;

/// Splits a byte stream into COBS frames and decodes them.
struct Deframer {
    partial: Vec<u8>,
    overflowed: bool,
}

impl Deframer {
    fn new() -> Self {
        Self {
            partial: Vec::new(),
            overflowed: false,
        }
    }

    fn feed(&mut self, bytes: &[u8], counters: &Counters, out: &Sender<Vec<u8>>) -> bool {
        for &byte in bytes {
            if byte != 0 {
                if self.partial.len() < MAX_LINK_FRAME {
                    self.partial.push(byte);
                } else {
                    self.overflowed = true;
                }
                continue;
            }
            if self.partial.is_empty() {
                continue;
            }
            let decoded = (!self.overflowed)
                .then(|| cobs::decode_vec(&self.partial).ok())
                .flatten();
            self.partial.clear();
            self.overflowed = false;
            match decoded {
                Some(frame) if !frame.is_empty() => {
                    if out.send(frame).is_err() {
                        return false;
                    }
                }
                _ => {
                    counters.undecodable.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        true
    }
}

/// Reads `reader` into frames until it ends or fails; `false` when the receiving side is gone.
fn pump(
    mut reader: impl Read,
    counters: &Counters,
    out: &Sender<Vec<u8>>,
    stop: &AtomicBool,
) -> bool {
    let mut deframer = Deframer::new();
    let mut buffer = [0u8; 8192];
    while !stop.load(Ordering::Relaxed) {
        match reader.read(&mut buffer) {
            Ok(0) => return true,
            Ok(n) => {
                counters.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                if !deframer.feed(buffer.get(..n).unwrap_or(&[]), counters, out) {
                    return false;
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

const RETRY: Duration = Duration::from_millis(100);

impl Duplex {
    /// Starts the transport's reader (and, for TCP, its dialler or listener) in the background.
    pub fn open(endpoint: Endpoint) -> std::io::Result<Self> {
        let writer: SharedWriter = Arc::new(Mutex::new(None));
        let (tx, frames) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (w, c, s) = (
            Arc::clone(&writer),
            Arc::clone(&counters),
            Arc::clone(&stop),
        );
        match endpoint.clone() {
            Endpoint::Connect(address) => {
                thread::spawn(move || {
                    while !s.load(Ordering::Relaxed) {
                        let Ok(stream) = TcpStream::connect(&address) else {
                            thread::sleep(RETRY);
                            continue;
                        };
                        if attach_tcp(&stream, &w, &c).is_err() {
                            thread::sleep(RETRY);
                            continue;
                        }
                        if !pump(&stream, &c, &tx, &s) {
                            break;
                        }
                        detach(&w);
                        thread::sleep(RETRY);
                    }
                });
            }
            Endpoint::Listen(address) => {
                // Bound here, so a port in use is an error of `open`, not of a thread.
                let listener = TcpListener::bind(&address)?;
                thread::spawn(move || {
                    for stream in listener.incoming() {
                        if s.load(Ordering::Relaxed) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        if attach_tcp(&stream, &w, &c).is_err() {
                            continue;
                        }
                        let (c, s, tx) = (Arc::clone(&c), Arc::clone(&s), tx.clone());
                        thread::spawn(move || {
                            pump(&stream, &c, &tx, &s);
                        });
                    }
                });
            }
            Endpoint::Pipe { out, input } => {
                let file = OpenOptions::new().create(true).append(true).open(&out)?;
                *lock(&writer) = Some(Box::new(file));
                counters.connections.fetch_add(1, Ordering::Relaxed);
                thread::spawn(move || {
                    let file = loop {
                        match File::open(&input) {
                            Ok(file) => break file,
                            Err(_) if !s.load(Ordering::Relaxed) => thread::sleep(RETRY),
                            Err(_) => return,
                        }
                    };
                    // A file being appended to: at its end, wait and read on.
                    let mut deframer = Deframer::new();
                    let mut reader = file;
                    let mut buffer = [0u8; 8192];
                    while !s.load(Ordering::Relaxed) {
                        match reader.read(&mut buffer) {
                            Ok(0) => thread::sleep(Duration::from_millis(20)),
                            Ok(n) => {
                                c.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                                if !deframer.feed(buffer.get(..n).unwrap_or(&[]), &c, &tx) {
                                    return;
                                }
                            }
                            Err(_) => thread::sleep(RETRY),
                        }
                    }
                });
            }
            Endpoint::Serial(path) => {
                let device = OpenOptions::new().read(true).write(true).open(&path)?;
                let reader = device.try_clone()?;
                *lock(&writer) = Some(Box::new(device));
                counters.connections.fetch_add(1, Ordering::Relaxed);
                thread::spawn(move || {
                    pump(reader, &c, &tx, &s);
                });
            }
        }
        Ok(Self {
            endpoint,
            writer,
            frames,
            counters,
            stop,
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Whether a peer is attached (always, for pipes and serial devices).
    pub fn connected(&self) -> bool {
        lock(&self.writer).is_some()
    }

    /// Sends one frame (COBS-encoded here); `false` if nothing is connected or the write failed,
    /// in which case the connection is dropped and, for TCP, re-established in the background.
    pub fn send(&self, frame: &[u8]) -> bool {
        let mut encoded = cobs::encode_vec(frame);
        encoded.push(0);
        let mut writer = lock(&self.writer);
        let Some(sink) = writer.as_mut() else {
            return false;
        };
        if sink
            .write_all(&encoded)
            .and_then(|()| sink.flush())
            .is_err()
        {
            *writer = None;
            return false;
        }
        true
    }

    /// The next frame, waiting at most `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.frames.recv_timeout(timeout).ok()
    }

    /// Every frame already received, without waiting.
    pub fn drain(&self) -> Vec<Vec<u8>> {
        self.frames.try_iter().collect()
    }

    /// Frames that arrived but did not decode (damage across a delimiter, a torn stream).
    pub fn undecodable(&self) -> u64 {
        self.counters.undecodable.load(Ordering::Relaxed)
    }

    /// Times a peer was attached.
    pub fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::Relaxed)
    }

    /// Waits up to `timeout` for a peer; `true` once one is attached.
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.connected() {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

impl Drop for Duplex {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        detach(&self.writer);
    }
}

fn lock(writer: &SharedWriter) -> std::sync::MutexGuard<'_, Option<Box<dyn Write + Send>>> {
    // A writer poisoned by a panicking thread is still a writer: the bytes it holds are framed.
    writer
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn attach_tcp(
    stream: &TcpStream,
    writer: &SharedWriter,
    counters: &Counters,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut sink = stream.try_clone()?;
    // A delimiter first: it ends any frame a dropped connection cut short on the peer's side.
    sink.write_all(&[0])?;
    *lock(writer) = Some(Box::new(sink));
    counters.connections.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn detach(writer: &SharedWriter) {
    *lock(writer) = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_nonsense_is_refused() {
        assert_eq!(
            "tcp:127.0.0.1:7000".parse(),
            Ok(Endpoint::Connect("127.0.0.1:7000".into()))
        );
        assert_eq!(
            "pipe:/tmp/a,/tmp/b".parse(),
            Ok(Endpoint::Pipe {
                out: "/tmp/a".into(),
                input: "/tmp/b".into()
            })
        );
        for bad in [
            "tcp:nowhere",
            "pipe:/tmp/a",
            "pipe:,x",
            "ftp:x",
            "listen:7000",
            "",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn frames_cross_a_pipe_pair_both_ways() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let left = Duplex::open(Endpoint::Pipe {
            out: a.clone(),
            input: b.clone(),
        })
        .expect("opens");
        let right = Duplex::open(Endpoint::Pipe { out: b, input: a }).expect("opens");
        assert!(left.send(&[1, 0, 2]));
        assert!(right.send(&[]));
        assert!(right.send(&[9; 300]));
        assert_eq!(right.recv(Duration::from_secs(5)), Some(vec![1, 0, 2]));
        // An empty frame is only a delimiter: nothing arrives for it.
        assert_eq!(left.recv(Duration::from_secs(5)), Some(vec![9; 300]));
    }

    #[test]
    fn a_tcp_link_comes_back_after_the_listener_restarts() {
        let probe = TcpListener::bind("127.0.0.1:0").expect("binds");
        let address = probe.local_addr().expect("address").to_string();
        drop(probe);
        let ground = Duplex::open(Endpoint::Listen(address.clone())).expect("listens");
        let board = Duplex::open(Endpoint::Connect(address.clone())).expect("dials");
        assert!(board.wait_connected(Duration::from_secs(5)));
        assert!(board.send(b"one"));
        assert_eq!(ground.recv(Duration::from_secs(5)), Some(b"one".to_vec()));
        assert!(ground.send(b"ack"));
        assert_eq!(board.recv(Duration::from_secs(5)), Some(b"ack".to_vec()));
    }
}

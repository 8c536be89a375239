//! The delivery layer end to end in one process: board outbox and ground inbox over a channel
//! that loses, corrupts and duplicates frames both ways.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use orbhash_link::{
    Channel, Consignee, DeliveryConfig, Impairment, Inbox, Outbox, Outcome, Payload, Transfer,
};
use orbhash_wire::MacKey;

#[derive(Default)]
struct Shelf {
    delivered: BTreeMap<String, Vec<u8>>,
    /// What `arriving` handed on, per name, and how much of it before the file was whole.
    arrived: BTreeMap<String, Vec<u8>>,
    arrived_early: BTreeMap<String, usize>,
    abandoned: Vec<String>,
    announced: Vec<String>,
    refuse: bool,
}

impl Consignee for Shelf {
    fn announced(&mut self, name: &str, _size: u64) {
        self.announced.push(name.to_string());
    }
    fn arriving(&mut self, name: &str, bytes: &[u8]) {
        self.arrived
            .entry(name.to_string())
            .or_default()
            .extend_from_slice(bytes);
    }
    fn abandoned(&mut self, name: &str) {
        self.arrived.remove(name);
        self.abandoned.push(name.to_string());
    }
    fn deliver(&mut self, name: &str, path: &Path) -> Result<(), String> {
        let early = self.arrived.get(name).map_or(0, Vec::len);
        self.arrived_early.insert(name.to_string(), early);
        if self.refuse {
            return Err("no space left".into());
        }
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        self.delivered.insert(name.to_string(), bytes);
        Ok(())
    }
}

fn fast() -> DeliveryConfig {
    DeliveryConfig {
        ack_interval: Duration::from_millis(20),
        nak_interval: Duration::from_millis(20),
        inactivity: Duration::from_millis(400),
        ..DeliveryConfig::default()
    }
}

/// Runs transfers of `files` until each is delivered (or `rounds` run out); returns outcomes.
fn exchange(
    files: &[(String, Vec<u8>)],
    outbox: &mut Outbox,
    inbox: &mut Inbox<Shelf>,
    down: &mut Channel,
    up: &mut Channel,
    dir: &Path,
    rounds: usize,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let mut pending: Vec<Transfer> = files
        .iter()
        .map(|(name, bytes)| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).expect("writes");
            Transfer {
                name: name.clone(),
                path,
                payload: Payload::Records,
            }
        })
        .collect();
    pending.reverse();
    let (mut to_ground, mut to_board): (Vec<Vec<u8>>, Vec<Vec<u8>>) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        if outbox.active().is_none() {
            match pending.pop() {
                Some(next) => outbox.start(next).expect("starts"),
                None => break,
            }
        }
        std::thread::sleep(Duration::from_millis(2));
        let tick = Duration::from_millis(2);
        let (frames, outcome) = outbox.step(&std::mem::take(&mut to_board), tick);
        to_ground.extend(frames.iter().flat_map(|f| down.carry(f)));
        let answers = inbox.step(&std::mem::take(&mut to_ground), tick);
        to_board.extend(answers.iter().flat_map(|f| up.carry(f)));
        if let Some(outcome) = outcome {
            if let Outcome::Restarted(transfer, _) | Outcome::Refused(transfer, _) = &outcome {
                pending.push(transfer.clone());
            }
            outcomes.push(outcome);
        }
    }
    outcomes
}

fn payload(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

#[test]
fn files_arrive_whole_over_a_damaged_channel_in_both_directions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = MacKey::new([3; 32]);
    let shelf = Rc::new(RefCell::new(Shelf::default()));
    let mut outbox =
        Outbox::open(&dir.path().join("board"), Some(key.clone()), fast()).expect("opens");
    let mut inbox = Inbox::open(
        &dir.path().join("ground"),
        Rc::clone(&shelf),
        Some(key),
        fast(),
    )
    .expect("opens");
    let damage = |seed| Impairment {
        loss: 0.1,
        corrupt: 0.05,
        duplicate: 0.05,
        latency: Duration::ZERO,
        rate: 0,
        seed,
    };
    let (mut down, mut up) = (Channel::new(damage(1)), Channel::new(damage(2)));
    let files: Vec<(String, Vec<u8>)> = (0..6u8)
        .map(|n| {
            (
                format!("records-{n}.bin"),
                payload(n, 3000 + 997 * usize::from(n)),
            )
        })
        .collect();
    let outcomes = exchange(
        &files,
        &mut outbox,
        &mut inbox,
        &mut down,
        &mut up,
        dir.path(),
        20_000,
    );
    let delivered: Vec<&String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Delivered(t) => Some(&t.name),
            _ => None,
        })
        .collect();
    assert_eq!(delivered.len(), files.len(), "{outcomes:?}");
    let shelf = shelf.borrow();
    for (name, bytes) in &files {
        assert_eq!(shelf.delivered.get(name), Some(bytes), "{name}");
        // Handed on in order as it arrived, gaps filled first, exactly the file: the archive can
        // store records before the whole file is there.
        assert_eq!(shelf.arrived.get(name), Some(bytes), "{name} as it arrived");
    }
    let early: usize = shelf.arrived_early.values().sum();
    assert!(
        early > 0,
        "nothing handed on before its file was whole: {:?}",
        shelf.arrived_early
    );
    assert!(down.stats.lost > 0 && down.stats.corrupted > 0 && up.stats.lost > 0);
    let account = outbox.account;
    assert_eq!(
        account.record_bytes,
        files.iter().map(|(_, b)| b.len() as u64).sum::<u64>()
    );
    assert!(account.retransmitted_bytes > 0, "{account:?}");
    assert!(account.round_trips >= files.len() as u64, "{account:?}");
}

/// One file through a ground that cannot keep it: every transfer must end refused (never
/// delivered) and logged; after `free_space`, the next attempt must deliver it whole.
fn refused_until_space_is_freed(
    dir: &Path,
    shelf: &Rc<RefCell<Shelf>>,
    file: (&str, Vec<u8>),
    free_space: impl FnOnce(),
) {
    let mut outbox = Outbox::open(&dir.join("board"), None, fast()).expect("opens");
    let mut inbox =
        Inbox::open(&dir.join("ground"), Rc::clone(shelf), None, fast()).expect("opens");
    let (mut down, mut up) = (
        Channel::new(Impairment::NONE),
        Channel::new(Impairment::NONE),
    );
    let files = vec![(file.0.to_string(), file.1)];
    let mut run = |rounds| {
        exchange(
            &files,
            &mut outbox,
            &mut inbox,
            &mut down,
            &mut up,
            dir,
            rounds,
        )
    };
    let outcomes = run(200);
    assert!(!outcomes.is_empty(), "no transfer ended");
    assert!(
        outcomes.iter().all(|o| matches!(o, Outcome::Refused(..))),
        "a file the ground could not keep was not refused: {outcomes:?}"
    );
    assert!(shelf.borrow().delivered.is_empty());
    free_space();
    let outcomes = run(300);
    assert!(
        matches!(outcomes.first(), Some(Outcome::Delivered(_))),
        "{outcomes:?}"
    );
    assert!(
        !inbox.take_refusals().is_empty(),
        "the refusal is not logged"
    );
    assert_eq!(shelf.borrow().delivered.get(file.0), Some(&files[0].1));
}

#[test]
fn a_ground_that_cannot_commit_is_never_counted_as_delivered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shelf = Rc::new(RefCell::new(Shelf {
        refuse: true,
        ..Shelf::default()
    }));
    refused_until_space_is_freed(
        dir.path(),
        &shelf,
        ("records-1.bin", payload(1, 5000)),
        || {
            shelf.borrow_mut().refuse = false;
        },
    );
}

/// A full disk without a mount: the ground's file is a link to `/dev/full`, so every write of
/// its data fails with "no space left on device" (the file can still be created). cfdp-rs 0.3
/// cancels such a transaction and then, when the EOF arrives, repeats its Finished PDU as "no
/// error, complete"; the board must never count that file as delivered.
#[cfg(target_os = "linux")]
#[test]
fn a_file_the_ground_cannot_write_is_never_counted_as_delivered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shelf = Rc::new(RefCell::new(Shelf::default()));
    let ground = dir.path().join("ground");
    std::fs::create_dir_all(&ground).expect("creates");
    let unwritable = ground.join("records-7.bin");
    std::os::unix::fs::symlink("/dev/full", &unwritable).expect("links /dev/full");
    refused_until_space_is_freed(
        dir.path(),
        &shelf,
        ("records-7.bin", payload(7, 3000)),
        || {
            std::fs::remove_file(&unwritable).expect("unlinks");
        },
    );
}

#[test]
fn a_forged_or_unsafe_name_is_refused_by_the_ground() {
    assert_eq!(Payload::of_name("records-1.bin"), Some(Payload::Records));
    assert_eq!(
        Payload::of_name("tile-0000abcd-00000003.tif"),
        Some(Payload::Tile)
    );
    for bad in [
        "../records-1.bin",
        "/etc/passwd",
        ".records-1.bin",
        "records-1.exe",
        "x",
    ] {
        assert_eq!(Payload::of_name(bad), None, "{bad}");
    }
}

#[test]
fn a_ground_restarted_mid_transfer_never_confirms_a_file_it_does_not_hold() {
    for cut_after in [1usize, 2, 3, 4, 6, 8] {
        let dir = tempfile::tempdir().expect("tempdir");
        let shelf = Rc::new(RefCell::new(Shelf::default()));
        let mut outbox = Outbox::open(&dir.path().join("board"), None, fast()).expect("opens");
        let mut inbox = Inbox::open(&dir.path().join("ground"), Rc::clone(&shelf), None, fast())
            .expect("opens");
        let path = dir.path().join("tile.tif");
        std::fs::write(&path, payload(9, 5000)).expect("writes");
        outbox
            .start(Transfer {
                name: "tile-00000001-00000002.tif".into(),
                path,
                payload: Payload::Tile,
            })
            .expect("starts");
        let tick = Duration::from_millis(2);
        let (mut to_ground, mut to_board) = (Vec::new(), Vec::new());
        let mut sent = 0;
        let mut outcome = None;
        for _ in 0..3000 {
            std::thread::sleep(Duration::from_millis(1));
            let (frames, done) = outbox.step(&std::mem::take(&mut to_board), tick);
            to_ground.extend(frames);
            if done.is_some() {
                outcome = done;
                break;
            }
            sent += to_ground.len();
            let answers = inbox.step(&std::mem::take(&mut to_ground), tick);
            to_board.extend(answers);
            if sent >= cut_after && sent < cut_after + 100 {
                // The ground dies: a new process with an empty handler.
                inbox = Inbox::open(&dir.path().join("ground"), Rc::clone(&shelf), None, fast())
                    .expect("reopens");
                sent = cut_after + 100;
            }
        }
        let held = shelf
            .borrow()
            .delivered
            .contains_key("tile-00000001-00000002.tif");
        match outcome {
            Some(Outcome::Delivered(_)) => {
                assert!(held, "cut after {cut_after}: confirmed, not held")
            }
            other => assert!(other.is_some(), "cut after {cut_after}: no outcome"),
        }
    }
}

#[test]
fn a_file_whose_metadata_was_lost_is_refused_never_confirmed_unheld() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shelf = Rc::new(RefCell::new(Shelf::default()));
    let mut outbox = Outbox::open(&dir.path().join("board"), None, fast()).expect("opens");
    let mut inbox =
        Inbox::open(&dir.path().join("ground"), Rc::clone(&shelf), None, fast()).expect("opens");
    let path = dir.path().join("tile.tif");
    std::fs::write(&path, payload(9, 5000)).expect("writes");
    outbox
        .start(Transfer {
            name: "tile-00000001-00000002.tif".into(),
            path,
            payload: Payload::Tile,
        })
        .expect("starts");
    let tick = Duration::from_millis(2);
    let mut to_board = Vec::new();
    let mut first = true;
    let mut outcome = None;
    for _ in 0..3000 {
        std::thread::sleep(Duration::from_millis(1));
        let (mut frames, done) = outbox.step(&std::mem::take(&mut to_board), tick);
        if first && !frames.is_empty() {
            frames.remove(0); // the metadata PDU is lost
            first = false;
        }
        if done.is_some() {
            outcome = done;
            break;
        }
        to_board.extend(inbox.step(&frames, tick));
    }
    let held = shelf
        .borrow()
        .delivered
        .contains_key("tile-00000001-00000002.tif");
    // cfdp-rs 0.3 completes such a transaction without ever asking for the metadata again; the
    // ground cannot name the file, so it refuses it, and the board sends it again whole.
    match outcome {
        Some(Outcome::Delivered(_)) => assert!(held, "confirmed but not held"),
        Some(Outcome::Refused(..)) => assert!(!inbox.take_refusals().is_empty()),
        other => panic!("{other:?}"),
    }
}

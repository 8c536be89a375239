//! The uplink's telecommands: round trips, every rejection by name, and a hostile campaign of
//! 10,000 forged, replayed, truncated, garbled and foreign commands mixed with authentic ones.
//!
//! Checked: no panic; every hostile command rejected and counted under its cause; the gate's
//! last accepted position moves only on authentic fresh commands; every authentic one accepted.

mod common;

use common::SplitMix;
use orbhash_wire::command::{MAX_COMMAND_LEN, MAX_TILES_PER_REQUEST, MIN_COMMAND_LEN};
use orbhash_wire::{
    decode_command, encode_command, encode_packet, Command, CommandEncodeError, CommandError,
    CommandGate, CommandHeader, MacKey, RetentionPolicy, StreamPosition, TileList, TileRef,
};
use proptest::prelude::*;

const KEY: MacKey = MacKey::new([0x42; 32]);
const OTHER_KEY: MacKey = MacKey::new([0x24; 32]);

fn header(epoch: u32, counter: u32) -> CommandHeader {
    CommandHeader {
        apid: 0x042,
        sequence_count: counter as u16 & 0x3FFF,
        source: 7,
        position: StreamPosition { epoch, counter },
    }
}

fn encoded(header: &CommandHeader, command: &Command<'_>, key: &MacKey) -> Vec<u8> {
    let mut out = vec![0u8; MAX_COMMAND_LEN];
    let len = encode_command(header, command, key, &mut out).expect("encodes");
    out.truncate(len);
    out
}

fn tiles(n: usize) -> Vec<TileRef> {
    (0..n as u32)
        .map(|i| TileRef {
            scene: 17 + i / 40,
            tile: i * 3,
        })
        .collect()
}

#[test]
fn every_command_round_trips() {
    let requested = tiles(5);
    let commands = [
        Command::RequestTiles {
            request: 9,
            tiles: TileList::Slice(&requested),
        },
        Command::CancelRequest { request: 9 },
        Command::SetRetention(RetentionPolicy {
            capacity_bytes: 8 << 30,
            max_age_s: 86_400,
        }),
    ];
    for (counter, command) in commands.iter().enumerate() {
        let header = header(3, counter as u32);
        let bytes = encoded(&header, command, &KEY);
        let (read_header, read) = decode_command(&bytes, &KEY).expect("decodes");
        assert_eq!(read_header, header);
        assert_eq!(&read, command, "{}", command.name());
    }
}

#[test]
fn the_longest_request_fits_and_a_longer_one_is_refused() {
    let most = tiles(usize::from(MAX_TILES_PER_REQUEST));
    let worst: Vec<TileRef> = most
        .iter()
        .map(|_| TileRef {
            scene: u32::MAX,
            tile: u32::MAX,
        })
        .collect();
    let command = Command::RequestTiles {
        request: u32::MAX,
        tiles: TileList::Slice(&worst),
    };
    let bytes = encoded(&header(u32::MAX, u32::MAX), &command, &KEY);
    assert!(bytes.len() <= MAX_COMMAND_LEN);
    let (_, read) = decode_command(&bytes, &KEY).expect("decodes");
    assert_eq!(read, command);

    let too_many = tiles(usize::from(MAX_TILES_PER_REQUEST) + 1);
    let mut out = vec![0u8; MAX_COMMAND_LEN];
    for list in [&too_many[..], &[]] {
        let error = encode_command(
            &header(0, 0),
            &Command::RequestTiles {
                request: 1,
                tiles: TileList::Slice(list),
            },
            &KEY,
            &mut out,
        )
        .expect_err("refused");
        assert_eq!(error, CommandEncodeError::TileCount(list.len()));
    }
}

#[test]
fn each_layer_names_what_it_refused() {
    let command = Command::CancelRequest { request: 4 };
    let good = encoded(&header(1, 1), &command, &KEY);
    let reject = |bytes: &[u8]| decode_command(bytes, &KEY).expect_err("rejected");

    assert_eq!(
        reject(&good[..good.len() - 1]),
        CommandError::Length {
            found: good.len() - 1
        }
    );
    assert!(matches!(
        reject(&good[..MIN_COMMAND_LEN - 1]),
        CommandError::Length { .. }
    ));
    // Telemetry type bit.
    let mut telemetry = good.clone();
    telemetry[0] &= !0x10;
    assert_eq!(reject(&telemetry), CommandError::NotTelecommand);
    // PUS-A's version nibble.
    let mut pus_a = good.clone();
    pus_a[6] = (1 << 4) | (pus_a[6] & 0x0F);
    assert_eq!(reject(&pus_a), CommandError::PusVersion(1));
    // A flipped body bit breaks the CRC before anything else reads it.
    let mut flipped = good.clone();
    flipped[16] ^= 0x01;
    assert_eq!(reject(&flipped), CommandError::BadCrc);
    // Another key: the CRC holds, the MAC does not.
    let forged = encoded(&header(1, 1), &command, &OTHER_KEY);
    assert_eq!(reject(&forged), CommandError::BadMac);
    // A downlink packet is not a command.
    let mut downlink = vec![0u8; 4096];
    let context = common::context(0x042, 16);
    let record = common::regular_record(16, 0, &mut SplitMix(1));
    let len = encode_packet(&context, 0, &[record], Some(&KEY), &mut downlink).expect("packet");
    let mut padded = downlink[..len].to_vec();
    padded.resize(padded.len().max(MIN_COMMAND_LEN), 0);
    assert!(decode_command(&padded, &KEY).is_err());
}

#[test]
fn the_gate_refuses_replays_and_resumes_after_a_restart() {
    let command = Command::CancelRequest { request: 1 };
    let first = encoded(&header(2, 10), &command, &KEY);
    let second = encoded(&header(2, 11), &command, &KEY);
    let older_epoch = encoded(&header(1, 500), &command, &KEY);
    let new_epoch = encoded(&header(3, 0), &command, &KEY);

    let mut gate = CommandGate::new(KEY, None);
    gate.admit(&first).expect("fresh");
    assert_eq!(
        gate.admit(&first).expect_err("replay"),
        CommandError::Replayed {
            position: StreamPosition {
                epoch: 2,
                counter: 10
            },
            last: StreamPosition {
                epoch: 2,
                counter: 10
            },
        }
    );
    gate.admit(&second).expect("next");
    assert!(matches!(
        gate.admit(&older_epoch),
        Err(CommandError::Replayed { .. })
    ));
    // After a restart from the persisted position, the same rules hold.
    let mut restarted = CommandGate::new(KEY, gate.last_accepted());
    assert!(matches!(
        restarted.admit(&second),
        Err(CommandError::Replayed { .. })
    ));
    restarted
        .admit(&new_epoch)
        .expect("a new epoch resets the counter");
    assert_eq!(gate.stats().accepted, 2);
    assert_eq!(gate.stats().replayed, 2);
    assert_eq!(restarted.stats().replayed, 1);
}

/// What the campaign did to one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attack {
    Authentic,
    Replay,
    Forged,
    Truncated,
    BitFlip,
    Garbage,
    Spliced,
}

#[test]
fn ten_thousand_hostile_commands_change_nothing() {
    let mut rng = SplitMix(0x5eed);
    let mut gate = CommandGate::new(KEY, None);
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let mut counter = 0u32;
    let mut expected_accepted = 0u64;
    let mut hostile = 0u64;
    let requested = tiles(12);
    for _ in 0..10_000 {
        let attack = match rng.below(10) {
            0 | 1 => Attack::Authentic,
            2 => Attack::Replay,
            3 => Attack::Forged,
            4 => Attack::Truncated,
            5 | 6 => Attack::BitFlip,
            7 | 8 => Attack::Garbage,
            _ => Attack::Spliced,
        };
        let command = match rng.below(3) {
            0 => Command::RequestTiles {
                request: counter,
                tiles: TileList::Slice(&requested[..1 + rng.below(requested.len())]),
            },
            1 => Command::CancelRequest { request: counter },
            _ => Command::SetRetention(RetentionPolicy {
                capacity_bytes: rng.next_u64() >> 20,
                max_age_s: rng.next_u64() as u32,
            }),
        };
        let fresh = |counter: u32, key: &MacKey| encoded(&header(1, counter), &command, key);
        let before = gate.last_accepted();
        let bytes = match attack {
            Attack::Authentic => {
                counter += 1;
                fresh(counter, &KEY)
            }
            Attack::Replay if !sent.is_empty() => sent[rng.below(sent.len())].clone(),
            Attack::Replay | Attack::Forged => fresh(counter + 1, &OTHER_KEY),
            Attack::Truncated => {
                let whole = fresh(counter + 1, &KEY);
                whole[..rng.below(whole.len())].to_vec()
            }
            Attack::BitFlip => {
                let mut bytes = fresh(counter + 1, &KEY);
                // Distinct bytes, so that two flips never cancel out.
                let first = rng.below(bytes.len());
                for k in 0..1 + rng.below(4) {
                    let at = (first + k * 7) % bytes.len();
                    bytes[at] ^= 1 << rng.below(8);
                }
                bytes
            }
            Attack::Garbage => (0..rng.below(2 * MIN_COMMAND_LEN + 64))
                .map(|_| rng.byte())
                .collect(),
            // An authentic header and MAC over another command's body.
            Attack::Spliced => {
                let mut bytes = fresh(counter + 1, &KEY);
                let other = encoded(
                    &header(1, counter + 1),
                    &Command::CancelRequest { request: u32::MAX },
                    &KEY,
                );
                let keep = bytes.len().min(other.len()) - 18;
                bytes[..keep].copy_from_slice(&other[..keep]);
                bytes
            }
        };
        let outcome = gate.admit(&bytes).map(|(header, _)| header.position);
        if attack == Attack::Authentic {
            sent.push(bytes);
            expected_accepted += 1;
            assert_eq!(
                outcome,
                Ok(StreamPosition { epoch: 1, counter }),
                "authentic command {counter} refused"
            );
        } else {
            hostile += 1;
            assert!(outcome.is_err(), "{attack:?} accepted: {:02x?}", bytes);
            assert_eq!(gate.last_accepted(), before, "{attack:?} moved the gate");
        }
    }
    let stats = gate.stats();
    assert_eq!(stats.accepted, expected_accepted);
    assert_eq!(stats.rejected(), hostile);
    assert!(expected_accepted > 1_500 && hostile > 7_000, "{stats:?}");
    // Every cause was exercised.
    for (cause, count) in [
        ("malformed", stats.malformed),
        ("corrupted", stats.corrupted),
        ("forged", stats.forged),
        ("replayed", stats.replayed),
    ] {
        assert!(count > 100, "{cause}: {count} ({stats:?})");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Any bytes at all: an error or a command, never a panic; anything accepted re-encodes to
    /// the same bytes.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok((header, command)) = decode_command(&bytes, &KEY) {
            prop_assert_eq!(encoded(&header, &command, &KEY), bytes);
        }
    }

    #[test]
    fn any_request_round_trips(
        epoch in any::<u32>(),
        counter in any::<u32>(),
        request in any::<u32>(),
        tiles in proptest::collection::vec((any::<u32>(), any::<u32>()), 1..=256usize),
    ) {
        let tiles: Vec<TileRef> = tiles.into_iter().map(|(scene, tile)| TileRef { scene, tile }).collect();
        let command = Command::RequestTiles { request, tiles: TileList::Slice(&tiles) };
        let bytes = encoded(&header(epoch, counter), &command, &KEY);
        let (read_header, read) = decode_command(&bytes, &KEY).expect("decodes");
        prop_assert_eq!(read_header.position, StreamPosition { epoch, counter });
        prop_assert_eq!(read, command);
    }
}

//! Loss accounting, duplicates, reordering, replay and authentication over whole streams.

mod common;

use common::*;
use orbhash_wire::packet::MAX_PACKET_LEN;
use orbhash_wire::{
    encode_frame, encode_packet, Continuity, Decoder, FrameError, MacKey, PacketError, Rejection,
    SequenceError, MAX_FRAME_LEN,
};

/// One framed packet of two records on `apid` with the given sequence count and epoch.
fn frame(apid: u16, sequence_count: u16, epoch: u32, key: Option<&MacKey>) -> Vec<u8> {
    let mut rng = SplitMix(u64::from(sequence_count) << 8 | u64::from(apid));
    let records = [
        regular_record(32, 0, &mut rng),
        regular_record(32, 1, &mut rng),
    ];
    let mut context = context(apid, 32);
    context.epoch = epoch;
    let mut packet = [0u8; MAX_PACKET_LEN];
    let len = encode_packet(&context, sequence_count, &records, key, &mut packet).expect("fits");
    let mut out = vec![0u8; MAX_FRAME_LEN];
    let framed = encode_frame(&packet[..len], &mut out).expect("fits");
    out.truncate(framed);
    out
}

fn run(decoder: &mut Decoder, frames: &[Vec<u8>]) -> Vec<Seen> {
    decode_chunked(decoder, &frames.concat(), &[usize::MAX])
}

fn continuity(seen: &Seen) -> Option<Continuity> {
    match seen {
        Seen::Packet { continuity, .. } => Some(*continuity),
        Seen::Rejected(_) => None,
    }
}

#[test]
fn gaps_late_packets_and_duplicates_are_told_apart() {
    let frames: Vec<_> = [0u16, 1, 4, 2, 2, 5]
        .iter()
        .map(|&seq| frame(1, seq, 1, None))
        .collect();
    let mut decoder = Decoder::new();
    let seen = run(&mut decoder, &frames);
    assert_eq!(continuity(&seen[0]), Some(Continuity::First));
    assert_eq!(continuity(&seen[1]), Some(Continuity::InOrder));
    assert_eq!(continuity(&seen[2]), Some(Continuity::Gap { missing: 2 }));
    assert_eq!(continuity(&seen[3]), Some(Continuity::Late));
    assert_eq!(
        seen[4],
        Seen::Rejected(Rejection::Sequence(SequenceError::Duplicate {
            apid: 1,
            sequence_count: 2
        }))
    );
    assert_eq!(continuity(&seen[5]), Some(Continuity::InOrder));
    let stats = decoder.stats();
    assert_eq!(
        (stats.missing, stats.late, stats.duplicates, stats.packets),
        (1, 1, 1, 5)
    );
}

#[test]
fn sequence_counts_wrap_at_2_pow_14() {
    let frames: Vec<_> = [16382u16, 16383, 0, 2]
        .iter()
        .map(|&seq| frame(7, seq, 1, None))
        .collect();
    let mut decoder = Decoder::new();
    let seen = run(&mut decoder, &frames);
    assert_eq!(continuity(&seen[1]), Some(Continuity::InOrder));
    assert_eq!(continuity(&seen[2]), Some(Continuity::InOrder));
    assert_eq!(continuity(&seen[3]), Some(Continuity::Gap { missing: 1 }));
}

#[test]
fn apids_are_tracked_separately() {
    let frames = [
        frame(1, 0, 1, None),
        frame(2, 50, 1, None),
        frame(1, 1, 1, None),
        frame(2, 51, 1, None),
    ];
    let mut decoder = Decoder::new();
    let seen = run(&mut decoder, &frames);
    let kinds: Vec<_> = seen.iter().map(continuity).collect();
    assert_eq!(
        kinds,
        [
            Continuity::First,
            Continuity::First,
            Continuity::InOrder,
            Continuity::InOrder
        ]
        .map(Some)
    );
    assert_eq!(decoder.stats().missing, 0);
}

#[test]
fn replays_are_refused_when_authenticating() {
    let key = MacKey::new([9; 32]);
    let genuine_old = frame(3, 10, 4, Some(&key));
    let frames = [
        genuine_old.clone(),
        frame(3, 11, 4, Some(&key)),
        frame(3, 0, 5, Some(&key)), // next pass
        genuine_old.clone(),        // replay from the earlier pass
        frame(3, 0, 5, Some(&key)), // replay within the pass
        frame(3, 1 + 300, 5, Some(&key)),
        frame(3, 1, 5, Some(&key)), // 300 behind: cannot tell late from replay
    ];
    let mut decoder = Decoder::authenticated(key.clone());
    let seen = run(&mut decoder, &frames);
    assert_eq!(continuity(&seen[2]), Some(Continuity::EpochChange));
    assert_eq!(
        seen[3],
        Seen::Rejected(Rejection::Sequence(SequenceError::StaleEpoch {
            apid: 3,
            epoch: 4,
            current: 5
        }))
    );
    assert_eq!(
        seen[4],
        Seen::Rejected(Rejection::Sequence(SequenceError::Duplicate {
            apid: 3,
            sequence_count: 0
        }))
    );
    assert_eq!(continuity(&seen[5]), Some(Continuity::Gap { missing: 300 }));
    assert_eq!(
        seen[6],
        Seen::Rejected(Rejection::Sequence(SequenceError::OutsideWindow {
            apid: 3,
            sequence_count: 1
        }))
    );
    assert!(seen.iter().all(|event| !matches!(
        event,
        Seen::Packet {
            authenticated: false,
            ..
        }
    )));

    // Without a key the same stream is read as resets, not attacks.
    let mut lenient = Decoder::new();
    let seen = run(&mut lenient, &frames);
    assert_eq!(continuity(&seen[3]), Some(Continuity::EpochChange));
    assert_eq!(continuity(&seen[6]), Some(Continuity::Resync));
}

#[test]
fn forged_and_unsigned_packets_are_counted_apart_from_corruption() {
    let key = MacKey::new([1; 32]);
    let forger = MacKey::new([2; 32]);
    let mut corrupted = frame(4, 2, 1, Some(&key));
    corrupted[20] ^= 0x10;
    let frames = [
        frame(4, 0, 1, Some(&forger)),
        frame(4, 1, 1, None),
        corrupted,
        frame(4, 3, 1, Some(&key)),
    ];
    let mut decoder = Decoder::authenticated(key);
    let seen = run(&mut decoder, &frames);
    assert_eq!(
        seen[0],
        Seen::Rejected(Rejection::Packet(PacketError::BadMac))
    );
    assert_eq!(
        seen[1],
        Seen::Rejected(Rejection::Packet(PacketError::MissingMac))
    );
    assert!(matches!(
        seen[2],
        Seen::Rejected(Rejection::Packet(
            PacketError::BadCrc | PacketError::Malformed(_)
        )) | Seen::Rejected(Rejection::Frame(_))
    ));
    assert!(matches!(
        seen[3],
        Seen::Packet {
            authenticated: true,
            ..
        }
    ));
    let stats = decoder.stats();
    assert_eq!(stats.authentication_failures(), 2);
    assert_eq!(stats.corrupted(), 1);
}

#[test]
fn garbage_and_oversized_runs_resynchronise_at_the_next_delimiter() {
    let mut stream = vec![0x11u8; MAX_FRAME_LEN + 10];
    stream.push(0);
    stream.extend(frame(1, 0, 1, None));
    stream.extend([0x03, 0x01, 0x02, 0x00]); // COBS-valid junk, too short for a packet
    stream.extend(frame(1, 1, 1, None));
    stream.extend([0x01, 0x02]); // unterminated tail
    for chunk in [1usize, 3, 64, 5000] {
        let mut decoder = Decoder::new();
        let seen = decode_chunked(&mut decoder, &stream, &[chunk]);
        assert_eq!(
            seen[0],
            Seen::Rejected(Rejection::Frame(FrameError::Oversized)),
            "chunk {chunk}"
        );
        assert_eq!(continuity(&seen[1]), Some(Continuity::First));
        assert!(matches!(
            seen[2],
            Seen::Rejected(Rejection::Packet(PacketError::Truncated { .. }))
        ));
        assert_eq!(continuity(&seen[3]), Some(Continuity::InOrder));
        assert_eq!(
            seen[4],
            Seen::Rejected(Rejection::Frame(FrameError::Unterminated))
        );
        assert_eq!(seen.len(), 5);
    }
}

#[test]
fn a_last_frame_without_its_delimiter_is_still_a_packet_when_intact() {
    // A recording cut right after the last packet, before its 0x00 was written.
    let mut stream = [frame(1, 0, 1, None), frame(1, 1, 1, None)].concat();
    assert_eq!(stream.pop(), Some(0));
    for chunk in [1usize, 7, 5000] {
        let mut decoder = Decoder::new();
        let seen = decode_chunked(&mut decoder, &stream, &[chunk]);
        let kinds: Vec<_> = seen.iter().map(continuity).collect();
        assert_eq!(
            kinds,
            [Some(Continuity::First), Some(Continuity::InOrder)],
            "chunk {chunk}"
        );
        let stats = decoder.stats();
        assert_eq!((stats.packets, stats.corrupted()), (2, 0), "{stats:?}");
    }
    // A tail that is not a whole packet is still reported as cut off.
    stream.truncate(stream.len() - 3);
    let mut decoder = Decoder::new();
    let seen = decode_chunked(&mut decoder, &stream, &[usize::MAX]);
    assert_eq!(decoder.stats().packets, 1);
    assert_eq!(
        seen.last(),
        Some(&Seen::Rejected(Rejection::Frame(FrameError::Unterminated)))
    );
}

#[test]
fn each_pass_is_accounted_for_and_the_totals_are_its_sums() {
    // APID 1 epoch 1: a gap of 2 (one filled late), a duplicate; then epoch 2 with a gap of 1;
    // then, without a key, back to epoch 1: a new run of that pass.
    let frames: Vec<_> = [
        (1u16, 0u16, 1u32),
        (1, 1, 1),
        (1, 4, 1),
        (1, 2, 1),
        (1, 2, 1),
        (1, 5, 1),
        (2, 7, 1),
        (1, 0, 2),
        (1, 2, 2),
        (1, 9, 1),
    ]
    .iter()
    .map(|&(apid, seq, epoch)| frame(apid, seq, epoch, None))
    .collect();
    let mut decoder = Decoder::new();
    let mut passes = Vec::new();
    let mut input: &[u8] = &frames.concat();
    while let Some(event) = decoder.feed(&mut input) {
        let apid = match event {
            orbhash_wire::Event::Packet { packet, .. } => packet.header.apid,
            orbhash_wire::Event::Rejected(Rejection::Sequence(SequenceError::Duplicate {
                apid,
                ..
            })) => apid,
            orbhash_wire::Event::Rejected(other) => panic!("{other}"),
        };
        let pass = *decoder.pass(apid).expect("tracked");
        // Keep the latest figures of each run.
        passes.retain(|p: &orbhash_wire::PassStats| p.run != pass.run);
        passes.push(pass);
    }
    passes.sort_by_key(|p| p.run);
    let figures: Vec<_> = passes
        .iter()
        .map(|p| {
            (
                p.apid,
                p.epoch,
                p.packets,
                p.missing,
                p.late,
                p.duplicates,
                p.gaps,
            )
        })
        .collect();
    assert_eq!(
        figures,
        [
            (1, 1, 5, 1, 1, 1, 1),
            (2, 1, 1, 0, 0, 0, 0),
            (1, 2, 2, 1, 0, 0, 1),
            (1, 1, 1, 0, 0, 0, 0),
        ]
    );
    let stats = decoder.stats();
    let sum = |f: fn(&orbhash_wire::PassStats) -> u64| passes.iter().map(f).sum::<u64>();
    assert_eq!(stats.missing, sum(|p| p.missing));
    assert_eq!(stats.late, sum(|p| p.late));
    assert_eq!(stats.duplicates, sum(|p| p.duplicates));
    assert_eq!(stats.packets, sum(|p| p.packets));
    assert_eq!(stats.records, sum(|p| p.records));
    assert_eq!(decoder.passes().count(), 2);
}

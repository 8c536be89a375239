//! Arbitrary bytes into every decoding entry point: the streaming decoder (with and without a key,
//! in fuzzer-chosen chunk sizes) and the bare packet decoder. Any panic is a bug.
//!
//! Random bytes almost never pass the CRC-32C, which would leave the data-field parser unexplored,
//! so the input is also tried as a packet with its length field and CRC repaired.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orbhash_wire::{decode_packet, hamming, Decoder, Event, MacKey};

fn drain(decoder: &mut Decoder, data: &[u8], chunk: usize) {
    for piece in data.chunks(chunk.max(1)) {
        let mut input = piece;
        while let Some(event) = decoder.feed(&mut input) {
            if let Event::Packet { packet, .. } = event {
                let mut previous = None;
                for record in packet.records() {
                    if let Some(previous) = &previous {
                        assert!(hamming(previous, &record.code).is_some());
                    }
                    previous = Some(record.code);
                }
            }
        }
    }
    let _ = decoder.finish();
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(selector & 0x3f) + 1;
    drain(&mut Decoder::new(), rest, chunk);
    drain(
        &mut Decoder::authenticated(MacKey::new([0x5a; 32])),
        rest,
        4096,
    );
    if let Ok(packet) = decode_packet(rest, None) {
        assert_eq!(
            packet.records().count(),
            usize::from(packet.header.record_count)
        );
    }

    if rest.len() >= 10 && rest.len() <= orbhash_wire::packet::MAX_PACKET_LEN {
        let mut repaired = rest.to_vec();
        let data_len = (repaired.len() - 7) as u16;
        repaired[4..6].copy_from_slice(&data_len.to_be_bytes());
        let crc_at = repaired.len() - 4;
        let crc = CRC32C.checksum(&repaired[..crc_at]);
        repaired[crc_at..].copy_from_slice(&crc.to_be_bytes());
        if let Ok(packet) = decode_packet(&repaired, None) {
            assert_eq!(
                packet.records().count(),
                usize::from(packet.header.record_count)
            );
        }
        let mut frame = vec![0u8; orbhash_wire::MAX_FRAME_LEN];
        if let Ok(len) = orbhash_wire::encode_frame(&repaired, &mut frame) {
            drain(&mut Decoder::new(), &frame[..len], chunk);
        }
    }
});

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

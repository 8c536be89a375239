//! Round trips: every type, every packet shape, whole streams in any chunking.

mod common;

use common::*;
use orbhash_wire::packet::MAX_PACKET_LEN;
use orbhash_wire::{
    decode_packet, encode_packet, Continuity, Decoder, MacKey, PacketWriter, Record, WriterConfig,
};
use proptest::prelude::*;

const BITS: [u16; 6] = [16, 32, 48, 64, 128, 256];

fn bits() -> impl Strategy<Value = u16> {
    proptest::sample::select(BITS.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn any_records_survive_one_packet(
        (bits, records) in bits().prop_flat_map(|bits| {
            (Just(bits), proptest::collection::vec(any_record(bits, 77), 1..12))
        }),
        sequence_count in 0u16..16384,
        signed in any::<bool>(),
    ) {
        let key = MacKey::new([0x33; 32]);
        let key = signed.then_some(&key);
        let context = context(0x123, bits);
        let mut out = [0u8; MAX_PACKET_LEN];
        let len = encode_packet(&context, sequence_count, &records, key, &mut out).expect("fits");
        let view = decode_packet(&out[..len], key).expect("decodes");
        prop_assert_eq!(view.header.sequence_count, sequence_count);
        prop_assert_eq!(view.header.apid, 0x123);
        prop_assert_eq!(view.header.code_bits, bits);
        prop_assert_eq!(view.header.model_id, context.model_id);
        prop_assert_eq!(view.authenticated, signed);
        prop_assert_eq!(view.records().collect::<Vec<_>>(), records);
    }

    #[test]
    fn streams_survive_any_chunking(
        (bits, records) in bits().prop_flat_map(|bits| (Just(bits), realistic_records(bits, 300))),
        max_records in 1u16..120,
        max_packet_len in 300usize..=MAX_PACKET_LEN,
        chunk_sizes in proptest::collection::vec(1usize..700, 1..8),
        signed in any::<bool>(),
    ) {
        let key = MacKey::new([0x44; 32]);
        let mut config = WriterConfig::new(context(9, bits));
        config.max_records = max_records;
        config.max_packet_len = max_packet_len;
        config.key = signed.then(|| key.clone());
        let mut writer = PacketWriter::new(config).expect("valid config");
        let mut stream = Vec::new();
        for record in &records {
            writer.push(record, &mut stream).expect("encodes");
        }
        writer.flush(&mut stream).expect("flushes");

        let mut decoder = if signed { Decoder::authenticated(key) } else { Decoder::new() };
        let seen = decode_chunked(&mut decoder, &stream, &chunk_sizes);
        let decoded: Vec<Record> = seen.iter().flat_map(|event| event.records().to_vec()).collect();
        prop_assert_eq!(&decoded, &records);
        for (index, event) in seen.iter().enumerate() {
            match event {
                Seen::Packet { continuity, header, .. } => {
                    let expected = if index == 0 { Continuity::First } else { Continuity::InOrder };
                    prop_assert_eq!(*continuity, expected);
                    prop_assert!(header.record_count <= max_records);
                }
                Seen::Rejected(why) => prop_assert!(false, "rejected {why}"),
            }
        }
        prop_assert_eq!(decoder.stats().missing, 0);
    }
}

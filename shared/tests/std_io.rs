//! The `std` extras: std::io adapters and owned events (`required-features = ["std"]`).

mod common;

use common::*;
use orbhash_wire::{Decoder, OwnedEvent, PacketWriter, StdIo, StreamDecoder, WriterConfig};

#[test]
fn a_file_written_through_std_io_reads_back_event_for_event() {
    let mut rng = SplitMix(11);
    let records: Vec<_> = (0..250)
        .map(|tile| regular_record(64, tile, &mut rng))
        .collect();
    let mut writer = PacketWriter::new(WriterConfig::new(context(5, 64))).expect("valid");
    let mut file = StdIo(Vec::new());
    for record in &records {
        writer.push(record, &mut file).expect("writes");
    }
    writer.flush(&mut file).expect("writes");
    let bytes = file.0;

    let owned = Decoder::new().decode_all(&bytes);
    let mut streamed = Vec::new();
    let mut reader = StreamDecoder::new(StdIo(std::io::Cursor::new(&bytes)), Decoder::new());
    while let Some(event) = reader.next_event().expect("reads") {
        streamed.push(OwnedEvent::from(event));
    }
    assert_eq!(owned, streamed);
    let decoded: Vec<_> = owned
        .iter()
        .flat_map(|event| match event {
            OwnedEvent::Packet { records, .. } => records.clone(),
            OwnedEvent::Rejected(why) => panic!("{why}"),
        })
        .collect();
    assert_eq!(decoded, records);
}

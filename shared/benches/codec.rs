//! Encode and decode throughput (records/s) and bytes per tile on the wire, all framing included.
//!
//! `cargo bench -p orbhash-wire` (short measurements; add `-- --measurement-time 10` for more).
//! Bytes per tile are printed once per K before its measurements.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use orbhash_wire::{
    Code, Decoder, Event, MacKey, ModelId, PacketContext, PacketWriter, Record, TileGrid,
    TilePosition, WriterConfig,
};

const TILES: u32 = 10_000;
const GRID: TileGrid = TileGrid {
    tiles_per_row: 100,
    tile_size_px: 256,
    stride_px: 256,
};

/// A scene cut row-major into tiles at one capture time: what the edge sends in orbit.
fn records(bits: u16) -> Vec<Record> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..TILES)
        .map(|tile_id| {
            let bytes: Vec<u8> = (0..bits / 8)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let (row_px, col_px) = GRID.predict(tile_id);
            Record {
                tile_id,
                capture_time_ms: 1_700_000_000_000,
                position: TilePosition {
                    scene_id: 1,
                    row_px,
                    col_px,
                    map: None,
                },
                label: (state % 10) as u16,
                confidence: (state >> 8) as u8,
                code: Code::from_bytes(bits, &bytes).expect("right length"),
            }
        })
        .collect()
}

fn config(bits: u16, key: Option<MacKey>) -> WriterConfig {
    let mut config = WriterConfig::new(PacketContext {
        apid: 0x10,
        model_id: ModelId([1; 8]),
        code_bits: bits,
        label_set: 1,
        epoch: 1,
        grid: GRID,
    });
    config.max_records = 100;
    config.key = key;
    config
}

fn encode(records: &[Record], config: &WriterConfig) -> Vec<u8> {
    let mut writer = PacketWriter::new(config.clone()).expect("valid");
    let mut stream = Vec::with_capacity(records.len() * 40);
    for record in records {
        writer.push(record, &mut stream).expect("encodes");
    }
    writer.flush(&mut stream).expect("flushes");
    stream
}

fn decode(stream: &[u8], decoder: &mut Decoder) -> u64 {
    let mut input = stream;
    let mut checksum = 0u64;
    while let Some(event) = decoder.feed(&mut input) {
        if let Event::Packet { packet, .. } = event {
            for record in packet.records() {
                checksum = checksum.wrapping_add(u64::from(record.tile_id));
            }
        }
    }
    checksum
}

fn codec(c: &mut Criterion) {
    let key = MacKey::new([7; 32]);
    for bits in [16u16, 32, 64, 128] {
        let records = records(bits);
        for (label, key) in [("crc", None), ("crc+mac", Some(key.clone()))] {
            let config = config(bits, key.clone());
            let stream = encode(&records, &config);
            println!(
                "K={bits:3} {label:7}: {:.2} bytes/tile at 100 records/packet ({} bytes, {} tiles)",
                stream.len() as f64 / f64::from(TILES),
                stream.len(),
                TILES
            );
            let mut group = c.benchmark_group(format!("K{bits}-{label}"));
            group.throughput(Throughput::Elements(u64::from(TILES)));
            group.bench_function(BenchmarkId::new("encode", TILES), |b| {
                b.iter(|| encode(black_box(&records), &config))
            });
            group.bench_function(BenchmarkId::new("decode", TILES), |b| {
                b.iter(|| {
                    let mut decoder = match &key {
                        Some(key) => Decoder::authenticated(key.clone()),
                        None => Decoder::new(),
                    };
                    decode(black_box(&stream), &mut decoder)
                })
            });
            group.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = codec
}
criterion_main!(benches);

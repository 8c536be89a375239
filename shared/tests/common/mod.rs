//! Shared generators for the integration tests.
#![allow(dead_code)]

use orbhash_wire::{Code, MapCoordinates, ModelId, PacketContext, Record, TileGrid, TilePosition};
use proptest::prelude::*;

pub const GRID: TileGrid = TileGrid {
    tiles_per_row: 40,
    tile_size_px: 256,
    stride_px: 256,
};

pub fn context(apid: u16, code_bits: u16) -> PacketContext {
    PacketContext {
        apid,
        model_id: ModelId([0x5a, 0x11, 0x7e, 0x00, 0x42, 0x99, 0x00, 0x01]),
        code_bits,
        label_set: 2,
        epoch: 1,
        grid: GRID,
    }
}

pub fn code(bits: u16) -> impl Strategy<Value = Code> {
    proptest::collection::vec(any::<u8>(), usize::from(bits / 8))
        .prop_map(move |bytes| Code::from_bytes(bits, &bytes).expect("right length"))
}

fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![-1.0e7..1.0e7f64, Just(0.0), Just(-0.0)]
}

pub fn map() -> impl Strategy<Value = Option<MapCoordinates>> {
    prop_oneof![
        4 => Just(None),
        1 => (any::<u32>(), finite(), finite())
            .prop_map(|(epsg, easting, northing)| Some(MapCoordinates { epsg, easting, northing })),
    ]
}

/// Any record at all: every field arbitrary, so every exception path is taken.
pub fn any_record(bits: u16, scene_id: u32) -> impl Strategy<Value = Record> {
    (
        any::<u32>(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        map(),
        any::<u16>(),
        any::<u8>(),
        code(bits),
    )
        .prop_map(
            move |(tile_id, capture_time_ms, row_px, col_px, map, label, confidence, code)| {
                Record {
                    tile_id,
                    capture_time_ms,
                    position: TilePosition {
                        scene_id,
                        row_px,
                        col_px,
                        map,
                    },
                    label,
                    confidence,
                    code,
                }
            },
        )
}

/// Records as a camera produces them: mostly consecutive tiles on the grid at one time, with
/// occasional skips, time steps, off-grid positions, map coordinates and scene changes.
pub fn realistic_records(bits: u16, max_len: usize) -> impl Strategy<Value = Vec<Record>> {
    let step = (
        prop_oneof![8 => Just(1u32), 1 => 0u32..1000, 1 => any::<u32>()],
        prop_oneof![8 => Just(0u64), 2 => 0u64..5000, 1 => any::<u64>()],
        prop_oneof![12 => Just(false), 1 => Just(true)],
        map(),
        prop_oneof![30 => Just(false), 1 => Just(true)],
        0u16..300,
        any::<u8>(),
        code(bits),
    );
    proptest::collection::vec(step, 0..max_len).prop_map(|steps| {
        let (mut tile_id, mut time, mut scene) = (0u32, 1_700_000_000_000u64, 7u32);
        steps
            .into_iter()
            .map(
                |(tile_step, time_step, off_grid, map, new_scene, label, confidence, code)| {
                    if new_scene {
                        scene = scene.wrapping_add(1);
                        tile_id = 0;
                    }
                    tile_id = tile_id.wrapping_add(tile_step);
                    time = time.wrapping_add(time_step);
                    let (mut row_px, mut col_px) = GRID.predict(tile_id);
                    if off_grid {
                        row_px = row_px.wrapping_add(3);
                        col_px ^= 0x55;
                    }
                    Record {
                        tile_id,
                        capture_time_ms: time,
                        position: TilePosition {
                            scene_id: scene,
                            row_px,
                            col_px,
                            map,
                        },
                        label,
                        confidence,
                        code,
                    }
                },
            )
            .collect()
    })
}

/// Deterministic, dependency-free pseudo-random numbers (SplitMix64).
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
}

/// A grid-regular record: the kind that should cost label + confidence + code only.
pub fn regular_record(bits: u16, tile_id: u32, rng: &mut SplitMix) -> Record {
    let bytes: Vec<u8> = (0..bits / 8).map(|_| rng.byte()).collect();
    let (row_px, col_px) = GRID.predict(tile_id);
    Record {
        tile_id,
        capture_time_ms: 1_700_000_000_000,
        position: TilePosition {
            scene_id: 3,
            row_px,
            col_px,
            map: None,
        },
        label: (rng.below(10)) as u16,
        confidence: rng.byte(),
        code: Code::from_bytes(bits, &bytes).expect("right length"),
    }
}

/// A decoder event with its records copied out.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Packet {
        header: orbhash_wire::PacketHeader,
        continuity: orbhash_wire::Continuity,
        authenticated: bool,
        records: Vec<Record>,
    },
    Rejected(orbhash_wire::Rejection),
}

impl Seen {
    pub fn records(&self) -> &[Record] {
        match self {
            Seen::Packet { records, .. } => records,
            Seen::Rejected(_) => &[],
        }
    }
}

/// Feeds `bytes` in chunks of the given sizes (cycled) and collects every event.
pub fn decode_chunked(
    decoder: &mut orbhash_wire::Decoder,
    bytes: &[u8],
    chunk_sizes: &[usize],
) -> Vec<Seen> {
    let mut seen = Vec::new();
    let mut rest = bytes;
    let mut sizes = chunk_sizes.iter().copied().cycle();
    while !rest.is_empty() {
        let size = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let mut input = chunk;
        while let Some(event) = decoder.feed(&mut input) {
            seen.push(to_seen(event));
        }
    }
    seen.extend(decoder.finish().map(to_seen));
    seen
}

pub fn to_seen(event: orbhash_wire::Event<'_>) -> Seen {
    match event {
        orbhash_wire::Event::Packet { packet, continuity } => Seen::Packet {
            header: packet.header,
            continuity,
            authenticated: packet.authenticated,
            records: packet.records().collect(),
        },
        orbhash_wire::Event::Rejected(rejection) => Seen::Rejected(rejection),
    }
}

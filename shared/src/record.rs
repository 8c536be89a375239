//! What is downlinked for one tile, and the per-packet context that lets most of it cost nothing.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::code::Code;

/// Identifies the exported model that produced a code: the first 8 bytes of the SHA-256 of the
/// exported model file. The ground never compares codes whose model ids differ, because two
/// models hash the same tile to unrelated codes.
///
/// 64 bits keep accidental collisions out of reach for any realistic number of models
/// (birthday bound ~2^32 models) while costing 8 bytes per packet, not per tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ModelId(pub [u8; 8]);

impl ModelId {
    /// The id of an exported model, from the model file's bytes.
    pub fn of_model(model_file: &[u8]) -> Self {
        let digest = Sha256::digest(model_file);
        let mut id = [0u8; 8];
        for (slot, byte) in id.iter_mut().zip(digest.iter()) {
            *slot = *byte;
        }
        Self(id)
    }

    /// Parses the 16 hex digits that [`Display`](core::fmt::Display) writes; `None` for anything
    /// else.
    pub fn from_hex(text: &str) -> Option<Self> {
        crate::hex::decode_array(text).map(Self)
    }
}

impl core::fmt::Display for ModelId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        crate::hex::write(f, &self.0)
    }
}

/// Where a tile sits on the map, when the flight software knows it.
///
/// Coordinates are in the projected coordinate reference system `epsg` (e.g. 32631 for UTM 31N).
/// They cost 8 + 8 bytes plus the EPSG varint per record that carries them, so send them only when
/// the ground cannot derive them from the scene's own georeferencing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MapCoordinates {
    pub epsg: u32,
    pub easting: f64,
    pub northing: f64,
}

/// Where a tile was cut from: its scene (capture) and the pixel offset of its top-left corner.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TilePosition {
    pub scene_id: u32,
    pub row_px: u32,
    pub col_px: u32,
    pub map: Option<MapCoordinates>,
}

/// The scene id of a named scene (a capture's file name without extension, a tile directory's
/// name): the first four bytes of SHA-256 of the name, big-endian. Flight and ground both derive
/// it, so an operator can ask for a scene by name.
pub fn scene_id_of(name: &str) -> u32 {
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 4];
    for (slot, byte) in first.iter_mut().zip(digest.iter()) {
        *slot = *byte;
    }
    u32::from_be_bytes(first)
}

/// How a scene is cut into tiles, so a tile's pixel position follows from its id.
///
/// Tile `t` is at row `(t / tiles_per_row) * stride_px`, column `(t % tiles_per_row) * stride_px`
/// (u32 wrapping arithmetic). `tiles_per_row == 0` means no grid: position is then predicted as
/// (0, 0) and every other position is sent explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct TileGrid {
    /// Scene width in tiles.
    pub tiles_per_row: u32,
    /// Tile edge in pixels. Not needed to predict positions; carried so the ground knows a
    /// tile's extent.
    pub tile_size_px: u32,
    /// Pixels between the origins of neighbouring tiles (equal to `tile_size_px` without overlap).
    pub stride_px: u32,
}

impl TileGrid {
    /// No grid: every tile's position travels explicitly.
    pub const NONE: TileGrid = TileGrid {
        tiles_per_row: 0,
        tile_size_px: 0,
        stride_px: 0,
    };

    /// The (row, col) pixel offset the grid predicts for a tile id.
    pub fn predict(&self, tile_id: u32) -> (u32, u32) {
        match (
            tile_id.checked_div(self.tiles_per_row),
            tile_id.checked_rem(self.tiles_per_row),
        ) {
            (Some(row), Some(col)) => (
                row.wrapping_mul(self.stride_px),
                col.wrapping_mul(self.stride_px),
            ),
            _ => (0, 0),
        }
    }
}

/// What is downlinked for one tile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The tile's index within its scene, in the order the edge cuts tiles (row-major on the grid).
    pub tile_id: u32,
    /// Capture time of the tile, milliseconds since the Unix epoch (UTC).
    pub capture_time_ms: u64,
    pub position: TilePosition,
    /// Index of the predicted class in the label set named by the packet's label-set id.
    pub label: u16,
    /// Classifier confidence quantised to 0..=255; see [`quantise_confidence`].
    pub confidence: u8,
    pub code: Code,
}

/// A probability in [0, 1] as the u8 the wire carries: `round(p * 255)`, clamped; NaN gives 0.
pub fn quantise_confidence(probability: f32) -> u8 {
    // `as` saturates and maps NaN to 0, which is exactly the clamping wanted.
    (probability * 255.0 + 0.5) as u8
}

/// The probability a quantised confidence stands for (within 1/510).
pub fn confidence_probability(quantised: u8) -> f32 {
    f32::from(quantised) / 255.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_predicts_row_major_positions() {
        let grid = TileGrid {
            tiles_per_row: 10,
            tile_size_px: 64,
            stride_px: 64,
        };
        assert_eq!(grid.predict(0), (0, 0));
        assert_eq!(grid.predict(9), (0, 576));
        assert_eq!(grid.predict(23), (128, 192));
        assert_eq!(TileGrid::NONE.predict(23), (0, 0));
    }

    #[test]
    fn confidence_quantisation_clamps_and_rounds() {
        assert_eq!(quantise_confidence(0.0), 0);
        assert_eq!(quantise_confidence(1.0), 255);
        assert_eq!(quantise_confidence(2.0), 255);
        assert_eq!(quantise_confidence(-1.0), 0);
        assert_eq!(quantise_confidence(f32::NAN), 0);
        assert_eq!(quantise_confidence(0.5), 128);
        assert!((confidence_probability(128) - 0.5).abs() < 1.0 / 255.0);
    }

    #[test]
    fn model_id_is_a_prefix_of_sha256() {
        // SHA-256("abc") = ba7816bf 8f01cfea ...
        assert_eq!(
            ModelId::of_model(b"abc").0,
            [0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea]
        );
        assert_eq!(
            ModelId::of_model(b"abc").to_string_for_test(),
            "ba7816bf8f01cfea"
        );
        assert_eq!(
            ModelId::from_hex("ba7816bf8f01cfea"),
            Some(ModelId::of_model(b"abc"))
        );
        assert_eq!(ModelId::from_hex("ba7816bf8f01cfe"), None);
        assert_eq!(ModelId::from_hex("ba7816bf8f01cfeg"), None);
    }

    impl ModelId {
        fn to_string_for_test(self) -> heapless::String<16> {
            use core::fmt::Write;
            let mut text = heapless::String::new();
            let _ = write!(text, "{self}");
            text
        }
    }
}

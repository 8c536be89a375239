//! Training-time augmentation. The input definition itself lives in `orbhash_contract::input`, so
//! the board preprocesses exactly as training did; it is re-exported here.

use rand_chacha::rand_core::RngCore;
use serde::{Deserialize, Serialize};

pub use orbhash_contract::input::{
    BandScale, InputError, InputSpec, EXTRA_BAND_MEAN, EXTRA_BAND_STD, IMAGENET_MEAN, IMAGENET_STD,
};

/// Training-time augmentation. Scenes seen from orbit have no "up", so the eight rotations and
/// reflections of the square (the dihedral group) all give plausible images. Off by default, as
/// in the paper.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Augment {
    /// Horizontal and vertical flips.
    pub flips: bool,
    /// Rotations by 90°, 180°, 270°.
    pub rot90: bool,
}

impl Augment {
    pub fn is_identity(&self) -> bool {
        !self.flips && !self.rot90
    }

    /// The elements of the dihedral group ([`dihedral`]'s `k`) this augmentation draws from,
    /// the identity first.
    pub fn orientations(&self) -> Vec<u8> {
        match (self.flips, self.rot90) {
            (false, false) => vec![0],
            // Rotations only: 0, 90, 180, 270 degrees.
            (false, true) => vec![0, 2, 4, 6],
            // Flips only: identity, horizontal flip, vertical flip (= 180° + horizontal flip),
            // both (= 180°).
            (true, false) => vec![0, 1, 5, 4],
            (true, true) => (0..8).collect(),
        }
    }

    /// A random transform of a square CHW image (`channels` × `size` × `size`).
    pub fn apply(
        &self,
        chw: &[f32],
        channels: usize,
        size: usize,
        rng: &mut impl RngCore,
    ) -> Vec<f32> {
        let orientations = self.orientations();
        let k = orientations[rng.next_u32() as usize % orientations.len()];
        dihedral(chw, channels, size, k)
    }
}

/// Element `k` (0..8) of the dihedral group on a square CHW image: rotate clockwise by
/// `(k >> 1) × 90°`, then flip horizontally when `k & 1`.
pub fn dihedral(chw: &[f32], channels: usize, size: usize, k: u8) -> Vec<f32> {
    if k == 0 {
        return chw.to_vec();
    }
    let n = size;
    let mut out = vec![0.0; chw.len()];
    for c in 0..channels {
        let plane = &chw[c * n * n..(c + 1) * n * n];
        let dst = &mut out[c * n * n..(c + 1) * n * n];
        for r in 0..n {
            for col in 0..n {
                // Undo the flip, then the rotation, to find the source pixel.
                let col_f = if k & 1 == 1 { n - 1 - col } else { col };
                let (sr, sc) = match (k >> 1) & 3 {
                    0 => (r, col_f),
                    1 => (n - 1 - col_f, r),
                    2 => (n - 1 - r, n - 1 - col_f),
                    _ => (col_f, n - 1 - r),
                };
                dst[r * n + col] = plane[sr * n + sc];
            }
        }
    }
    out
}

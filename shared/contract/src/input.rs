//! How raw pixels become model input — defined once, here, so training, evaluation (host) and
//! the board (edge) normalise identically. A model card carries its [`InputSpec`].
//!
//! For each model channel `k`: take stored band `bands[k]`, map its raw values to [0, 1] with
//! `scale[k]` (clamped), resize to `size`×`size` (bilinear), then subtract `mean[k]` and divide by
//! `std[k]`. Output is CHW `f32`.

use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, vec};

use image::imageops::FilterType;
use image::{ImageBuffer, Luma};
use serde::{Deserialize, Serialize};

/// An input definition that cannot work, or an image that does not fit one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError(pub String);

impl core::fmt::Display for InputError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// ImageNet channel statistics (RGB, on [0, 1] values), used by every torchvision-style backbone.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// Bands beyond RGB (NIR, SWIR) have no ImageNet statistics: they get the mean of the three.
pub const EXTRA_BAND_MEAN: f32 = 0.449;
pub const EXTRA_BAND_STD: f32 = 0.226;

/// Maps a band's raw values linearly to [0, 1]: `low` → 0, `high` → 1, clamped outside.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BandScale {
    pub low: f32,
    pub high: f32,
}

impl BandScale {
    /// 8-bit photographs (JPEG, PNG): 0..255.
    pub const U8: BandScale = BandScale {
        low: 0.0,
        high: 255.0,
    };
    /// 16-bit images without better knowledge: 0..65535.
    pub const U16: BandScale = BandScale {
        low: 0.0,
        high: 65535.0,
    };

    pub fn apply(&self, raw: f32) -> f32 {
        ((raw - self.low) / (self.high - self.low)).clamp(0.0, 1.0)
    }

    /// The `lo` and `hi` percentiles (0..100) of the finite values, which make a robust
    /// per-scene stretch: haze and the odd saturated roof do not set the range. `None` when
    /// there is no finite value.
    pub fn from_percentiles(values: &[f32], lo: f64, hi: f64) -> Option<BandScale> {
        let mut finite: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if finite.is_empty() {
            return None;
        }
        finite.sort_by(f32::total_cmp);
        let at = |p: f64| {
            let idx = ((p / 100.0) * (finite.len() - 1) as f64).round() as usize;
            finite[idx.min(finite.len() - 1)]
        };
        let (low, mut high) = (at(lo), at(hi));
        if high <= low {
            high = low + 1.0; // a constant band: avoid a division by zero
        }
        Some(BandScale { low, high })
    }
}

/// The model's input definition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Edge of the square model input in pixels.
    pub size: u32,
    /// Indices of the stored bands feeding the model's channels, in channel order.
    pub bands: Vec<usize>,
    /// Per channel: raw value → [0, 1].
    pub scale: Vec<BandScale>,
    /// Per channel, applied after `scale`.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl InputSpec {
    /// RGB photographs with ImageNet normalisation: the paper's input (at `size` 224).
    pub fn imagenet_rgb(size: u32) -> Self {
        Self {
            size,
            bands: vec![0, 1, 2],
            scale: vec![BandScale::U8; 3],
            mean: IMAGENET_MEAN.to_vec(),
            std: IMAGENET_STD.to_vec(),
        }
    }

    /// `bands` of a multispectral set with their scalings; the first three channels get the
    /// ImageNet statistics (they should be red, green, blue), any further ones
    /// [`EXTRA_BAND_MEAN`]/[`EXTRA_BAND_STD`].
    pub fn multispectral(size: u32, bands: Vec<usize>, scale: Vec<BandScale>) -> Self {
        let stat =
            |k: usize, imagenet: &[f32; 3], extra: f32| imagenet.get(k).copied().unwrap_or(extra);
        let n = bands.len();
        Self {
            size,
            bands,
            scale,
            mean: (0..n)
                .map(|k| stat(k, &IMAGENET_MEAN, EXTRA_BAND_MEAN))
                .collect(),
            std: (0..n)
                .map(|k| stat(k, &IMAGENET_STD, EXTRA_BAND_STD))
                .collect(),
        }
    }

    pub fn channels(&self) -> usize {
        self.bands.len()
    }

    /// Length of one preprocessed image: channels × size × size.
    pub fn len(&self) -> usize {
        self.channels() * self.size as usize * self.size as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn validate(&self) -> Result<(), InputError> {
        let n = self.bands.len();
        if n == 0 || self.size == 0 {
            return Err(InputError(
                "input needs a size and at least one band".into(),
            ));
        }
        if self.scale.len() != n || self.mean.len() != n || self.std.len() != n {
            return Err(InputError(format!(
                "input spec: {n} bands but {} scales, {} means, {} stds",
                self.scale.len(),
                self.mean.len(),
                self.std.len()
            )));
        }
        if self.std.iter().any(|s| *s <= 0.0) || self.scale.iter().any(|s| s.high <= s.low) {
            return Err(InputError(
                "input spec: std must be > 0 and scale high > low".into(),
            ));
        }
        Ok(())
    }

    /// One raw value of channel `k` → model input.
    pub fn normalise(&self, k: usize, raw: f32) -> f32 {
        (self.scale[k].apply(raw) - self.mean[k]) / self.std[k]
    }

    /// Interleaved raw samples (`bands_in` per pixel, `width`×`height`) → CHW model input.
    /// Fails when the image lacks a band the spec asks for.
    pub fn to_chw(
        &self,
        width: u32,
        height: u32,
        bands_in: usize,
        interleaved: &[f32],
    ) -> Result<Vec<f32>, InputError> {
        if let Some(&b) = self.bands.iter().find(|&&b| b >= bands_in) {
            return Err(InputError(format!(
                "image has {bands_in} band(s); the input needs band index {b}"
            )));
        }
        let size = self.size;
        let plane = (size * size) as usize;
        let mut out = Vec::with_capacity(self.len());
        for (k, &band) in self.bands.iter().enumerate() {
            // Scale to [0, 1] before resizing: the `image` crate treats f32 pixels as [0, 1]
            // values and clamps its resampled output to that range.
            let unit: Vec<f32> = interleaved
                .iter()
                .skip(band)
                .step_by(bands_in)
                .map(|&v| self.scale[k].apply(v))
                .collect();
            let resized = if (width, height) == (size, size) {
                unit
            } else {
                let buffer: ImageBuffer<Luma<f32>, Vec<f32>> =
                    ImageBuffer::from_raw(width, height, unit).ok_or_else(|| {
                        InputError("image buffer smaller than its size".to_string())
                    })?;
                // Bilinear: positive weights, so values stay in [0, 1].
                image::imageops::resize(&buffer, size, size, FilterType::Triangle).into_raw()
            };
            if resized.len() != plane {
                return Err(InputError("resized plane has the wrong size".into()));
            }
            out.extend(
                resized
                    .into_iter()
                    .map(|v| (v - self.mean[k]) / self.std[k]),
            );
        }
        Ok(out)
    }
}

//! Reading image files as raw samples, the same way on the ground (training data) and on board
//! (tiles and scenes), so a tile is decoded identically wherever it is hashed.
//!
//! TIFFs go through the `tiff` crate, which reads any band count (multispectral patches and
//! scenes) and their GeoTIFF georeferencing; other formats through the `image` crate as RGB
//! (8-bit values 0..255, 16-bit 0..65535). Samples are `f32`, interleaved.

use std::format;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::string::{String, ToString};
use std::vec::Vec;

use serde::{Deserialize, Serialize};
use tiff::decoder::{Decoder, DecodingResult};
use tiff::tags::Tag;

/// Why an image file could not be read.
#[derive(Debug)]
pub enum RasterError {
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    Tiff {
        path: PathBuf,
        source: tiff::TiffError,
    },
    Image {
        path: PathBuf,
        source: image::ImageError,
    },
    /// Readable, but not an image this code can use (empty, odd sample type, torn).
    Format { path: PathBuf, reason: String },
}

impl core::fmt::Display for RasterError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Self::Tiff { path, source } => write!(f, "{}: TIFF: {source}", path.display()),
            Self::Image { path, source } => write!(f, "{}: image: {source}", path.display()),
            Self::Format { path, reason } => write!(f, "{}: {reason}", path.display()),
        }
    }
}

impl std::error::Error for RasterError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Tiff { source, .. } => Some(source),
            Self::Image { source, .. } => Some(source),
            Self::Format { .. } => None,
        }
    }
}

impl RasterError {
    fn format(path: &Path, reason: impl Into<String>) -> Self {
        Self::Format {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// A north-up affine grid: pixel (col, row) has its upper-left corner at
/// `(origin_x + col * pixel_width, origin_y - row * pixel_height)` in map units (metres here).
/// GDAL's geotransform with no rotation terms.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeoTransform {
    pub origin_x: f64,
    pub origin_y: f64,
    pub pixel_width: f64,
    pub pixel_height: f64,
}

impl GeoTransform {
    /// Map coordinates of a pixel-space point (`col`, `row` may be fractional; integers are
    /// pixel corners).
    pub fn pixel_to_map(&self, col: f64, row: f64) -> (f64, f64) {
        (
            self.origin_x + col * self.pixel_width,
            self.origin_y - row * self.pixel_height,
        )
    }

    /// Pixel-space coordinates (fractional column, row) of a map point.
    pub fn map_to_pixel(&self, x: f64, y: f64) -> (f64, f64) {
        (
            (x - self.origin_x) / self.pixel_width,
            (self.origin_y - y) / self.pixel_height,
        )
    }

    /// Whether two grids coincide to a hundredth of a pixel.
    pub fn same_grid(&self, other: &GeoTransform) -> bool {
        let tol = 0.01 * self.pixel_width.abs().min(self.pixel_height.abs());
        (self.origin_x - other.origin_x).abs() < tol
            && (self.origin_y - other.origin_y).abs() < tol
            && (self.pixel_width - other.pixel_width).abs() < tol
            && (self.pixel_height - other.pixel_height).abs() < tol
    }
}

/// Where a GeoTIFF sits on Earth: its grid and coordinate reference system.
#[derive(Clone, Debug, PartialEq)]
pub struct Georeference {
    pub geo: GeoTransform,
    /// `EPSG:n` when the file names an EPSG code, otherwise the file's own description of it.
    pub crs: String,
}

// GeoKey ids (GeoTIFF 1.0 spec, section 6.2).
const GT_RASTER_TYPE: u16 = 1025;
const PROJECTED_CS_TYPE: u16 = 3072;
const GEOGRAPHIC_TYPE: u16 = 2048;
const GT_CITATION: u16 = 1026;
const PCS_CITATION: u16 = 3073;
const RASTER_PIXEL_IS_POINT: u16 = 2;
const USER_DEFINED: u16 = 32767;
/// GeoTIFF's GeoAsciiParamsTag.
pub const GEO_ASCII_PARAMS: u16 = 34737;

/// The GeoTIFF georeferencing of an open TIFF: `Ok(None)` when it has no ModelPixelScale and
/// ModelTiepoint tags (a plain TIFF).
pub fn read_georeference<R: Read + Seek>(
    decoder: &mut Decoder<R>,
    path: &Path,
) -> Result<Option<Georeference>, RasterError> {
    let tiff_err = |source| RasterError::Tiff {
        path: path.to_path_buf(),
        source,
    };
    let scale = decoder
        .find_tag(Tag::ModelPixelScaleTag)
        .map_err(tiff_err)?
        .map(|v| v.into_f64_vec())
        .transpose()
        .map_err(tiff_err)?;
    let tie = decoder
        .find_tag(Tag::ModelTiepointTag)
        .map_err(tiff_err)?
        .map(|v| v.into_f64_vec())
        .transpose()
        .map_err(tiff_err)?;
    let (Some(scale), Some(tie)) = (scale, tie) else {
        return Ok(None);
    };
    if scale.len() < 2 || tie.len() < 6 {
        return Err(RasterError::format(
            path,
            "short ModelPixelScale/ModelTiepoint",
        ));
    }
    let keys = decoder
        .find_tag(Tag::GeoKeyDirectoryTag)
        .map_err(tiff_err)?
        .map(|v| v.into_u16_vec())
        .transpose()
        .map_err(tiff_err)?
        .unwrap_or_default();
    let ascii = decoder
        .find_tag(Tag::Unknown(GEO_ASCII_PARAMS))
        .map_err(tiff_err)?
        .and_then(|v| v.into_string().ok())
        .unwrap_or_default();
    // Directory header is 4 shorts, then 4 shorts per key: id, location, count, value/offset.
    let key = |id: u16| -> Option<(u16, u16, u16)> {
        keys.get(4..)?
            .chunks_exact(4)
            .find(|k| k[0] == id)
            .map(|k| (k[1], k[2], k[3]))
    };
    let short_key = |id: u16| key(id).filter(|k| k.0 == 0).map(|k| k.2);
    let ascii_key = |id: u16| {
        key(id)
            .filter(|k| k.0 == GEO_ASCII_PARAMS)
            .and_then(|(_, count, offset)| {
                ascii
                    .get(offset as usize..(offset as usize + count as usize))
                    .map(|s| s.trim_end_matches(['|', '\0']).to_string())
            })
    };

    let (mut col0, mut row0) = (tie[0], tie[1]);
    // PixelIsPoint tiepoints refer to pixel centres; the grid's corner is half a pixel off.
    if short_key(GT_RASTER_TYPE) == Some(RASTER_PIXEL_IS_POINT) {
        col0 -= 0.5;
        row0 -= 0.5;
    }
    let geo = GeoTransform {
        origin_x: tie[3] - col0 * scale[0],
        origin_y: tie[4] + row0 * scale[1],
        pixel_width: scale[0],
        pixel_height: scale[1],
    };
    let crs = match short_key(PROJECTED_CS_TYPE).or_else(|| short_key(GEOGRAPHIC_TYPE)) {
        Some(code) if code != USER_DEFINED => format!("EPSG:{code}"),
        _ => ascii_key(PCS_CITATION)
            .or_else(|| ascii_key(GT_CITATION))
            .unwrap_or_else(|| "user-defined".to_string()),
    };
    Ok(Some(Georeference { geo, crs }))
}

/// An image as raw samples: `bands` per pixel, interleaved, row-major.
#[derive(Clone, Debug)]
pub struct RawImage {
    pub width: u32,
    pub height: u32,
    pub bands: usize,
    pub samples: Vec<f32>,
    /// Present for a GeoTIFF.
    pub georeference: Option<Georeference>,
}

impl RawImage {
    /// The `width`×`height` window at (`col`, `row`), all bands; `None` when it leaves the image.
    pub fn window(&self, col: u32, row: u32, width: u32, height: u32) -> Option<Vec<f32>> {
        if col.checked_add(width)? > self.width || row.checked_add(height)? > self.height {
            return None;
        }
        let bands = self.bands;
        let stride = self.width as usize * bands;
        let mut out = Vec::with_capacity(width as usize * height as usize * bands);
        for r in row..row + height {
            let start = r as usize * stride + col as usize * bands;
            out.extend_from_slice(&self.samples[start..start + width as usize * bands]);
        }
        Some(out)
    }
}

fn is_tiff(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| e.eq_ignore_ascii_case("tif") || e.eq_ignore_ascii_case("tiff"))
        .unwrap_or(false)
}

/// Reads an image file of any supported format (see the module docs).
pub fn read_image(path: &Path) -> Result<RawImage, RasterError> {
    let image = if is_tiff(path) {
        read_tiff(path)?
    } else {
        let image = image::open(path).map_err(|source| match source {
            image::ImageError::IoError(source) => RasterError::Io {
                path: path.to_path_buf(),
                source,
            },
            source => RasterError::Image {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let (width, height) = (image.width(), image.height());
        let samples: Vec<f32> = match image.color() {
            image::ColorType::L16
            | image::ColorType::La16
            | image::ColorType::Rgb16
            | image::ColorType::Rgba16 => image
                .into_rgb16()
                .into_raw()
                .into_iter()
                .map(f32::from)
                .collect(),
            _ => image
                .into_rgb8()
                .into_raw()
                .into_iter()
                .map(f32::from)
                .collect(),
        };
        RawImage {
            width,
            height,
            bands: 3,
            samples,
            georeference: None,
        }
    };
    if image.width == 0 || image.height == 0 {
        return Err(RasterError::format(path, "image is empty"));
    }
    Ok(image)
}

fn read_tiff(path: &Path) -> Result<RawImage, RasterError> {
    let file = File::open(path).map_err(|source| RasterError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let tiff_err = |source| RasterError::Tiff {
        path: path.to_path_buf(),
        source,
    };
    let mut decoder = Decoder::new(BufReader::new(file)).map_err(tiff_err)?;
    let (width, height) = decoder.dimensions().map_err(tiff_err)?;
    let bands = decoder.colortype().map_err(tiff_err)?.num_samples() as usize;
    let georeference = read_georeference(&mut decoder, path)?;
    let samples: Vec<f32> = match decoder.read_image().map_err(tiff_err)? {
        DecodingResult::U8(v) => v.into_iter().map(f32::from).collect(),
        DecodingResult::U16(v) => v.into_iter().map(f32::from).collect(),
        DecodingResult::I8(v) => v.into_iter().map(f32::from).collect(),
        DecodingResult::I16(v) => v.into_iter().map(f32::from).collect(),
        DecodingResult::F32(v) => v,
        _ => return Err(RasterError::format(path, "unsupported TIFF sample type")),
    };
    if samples.len() != width as usize * height as usize * bands {
        return Err(RasterError::format(
            path,
            "sample count does not match size",
        ));
    }
    Ok(RawImage {
        width,
        height,
        bands,
        samples,
        georeference,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    #[test]
    fn a_window_takes_all_bands_of_the_pixels_inside_it() {
        // 3x2 pixels, 2 bands: sample = 10 * pixel index + band.
        let samples = (0..6)
            .flat_map(|p| [10.0 * p as f32, 10.0 * p as f32 + 1.0])
            .collect();
        let image = RawImage {
            width: 3,
            height: 2,
            bands: 2,
            samples,
            georeference: None,
        };
        assert_eq!(
            image.window(1, 0, 2, 2),
            Some(vec![10.0, 11.0, 20.0, 21.0, 40.0, 41.0, 50.0, 51.0])
        );
        assert_eq!(image.window(2, 0, 2, 1), None);
        assert_eq!(image.window(u32::MAX, 0, 2, 1), None);
    }
}

//! Georeferenced single-band rasters: reading GeoTIFF (the `tiff` crate plus the GeoTIFF tags) and
//! JPEG 2000 (OpenJPEG through the `jpeg2k` crate plus the GeoJP2 or GMLJP2 boxes), and writing
//! multiband 16-bit TIFF patches.
//!
//! Values are held as `f32`: Sentinel-2 DNs (15-bit) and Landsat DNs (8-bit, stored as float or
//! int16 in the NC set) are exact in `f32`, and one sample type keeps the builders simple. No-data
//! pixels become NaN.

use std::fs::File;
use std::io::{BufReader, Cursor};
use std::path::Path;

use tiff::decoder::{Decoder, DecodingResult};
use tiff::tags::Tag;

use super::error::{DataError, Result};

use orbhash_contract::raster::read_georeference;
pub use orbhash_contract::raster::write_u16_tiff;
pub use orbhash_contract::raster::GeoTransform;

/// One band of a scene.
#[derive(Clone, Debug)]
pub struct Raster {
    pub width: usize,
    pub height: usize,
    /// Row-major samples; NaN where the file declares no data.
    pub data: Vec<f32>,
    pub geo: GeoTransform,
    /// The coordinate reference system as `EPSG:n` when the file names an EPSG code, otherwise the
    /// file's own description of it.
    pub crs: String,
}

impl Raster {
    /// A raster read from `path`; fails when the decoder gave other than `width × height` samples.
    fn new(
        path: &Path,
        width: usize,
        height: usize,
        data: Vec<f32>,
        geo: GeoTransform,
        crs: String,
    ) -> Result<Self> {
        if data.len() != width * height {
            return Err(DataError::format(path, "pixel count does not match size"));
        }
        Ok(Self {
            width,
            height,
            data,
            geo,
            crs,
        })
    }

    pub fn get(&self, col: usize, row: usize) -> f32 {
        self.data[row * self.width + col]
    }

    /// Fails unless `other` has the same size and grid, so bands and labels line up pixel for
    /// pixel.
    pub fn check_same_grid(&self, a: &Path, other: &Raster, b: &Path) -> Result<()> {
        let reason = if (self.width, self.height) != (other.width, other.height) {
            format!(
                "{}x{} vs {}x{} pixels",
                self.width, self.height, other.width, other.height
            )
        } else if !self.geo.same_grid(&other.geo) {
            format!("{:?} vs {:?}", self.geo, other.geo)
        } else {
            return Ok(());
        };
        Err(DataError::GridMismatch {
            a: a.to_path_buf(),
            b: b.to_path_buf(),
            reason,
        })
    }
}

const GDAL_NODATA: u16 = 42113;

/// Reads the first band of a GeoTIFF (any integer or float sample type).
pub fn read_geotiff(path: &Path) -> Result<Raster> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let tiff_err = |source| DataError::Tiff {
        path: path.to_path_buf(),
        source,
    };
    let mut decoder = Decoder::new(BufReader::new(file)).map_err(tiff_err)?;
    let (width, height) = decoder.dimensions().map_err(tiff_err)?;
    let (geo, crs) = read_geokeys(&mut decoder, path)?;
    let nodata = decoder
        .find_tag(Tag::Unknown(GDAL_NODATA))
        .map_err(tiff_err)?
        .and_then(|v| v.into_string().ok())
        .and_then(|s| s.trim_end_matches('\0').trim().parse::<f64>().ok());
    let samples = decoder.colortype().map_err(tiff_err)?.num_samples() as usize;
    let decoded = decoder.read_image().map_err(tiff_err)?;
    let all: Vec<f32> = match decoded {
        DecodingResult::U8(v) => v.into_iter().map(f32::from).collect(),
        DecodingResult::U16(v) => v.into_iter().map(f32::from).collect(),
        DecodingResult::I8(v) => v.into_iter().map(f32::from).collect(),
        DecodingResult::I16(v) => v.into_iter().map(f32::from).collect(),
        DecodingResult::U32(v) => v.into_iter().map(|x| x as f32).collect(),
        DecodingResult::I32(v) => v.into_iter().map(|x| x as f32).collect(),
        DecodingResult::F32(v) => v,
        DecodingResult::F64(v) => v.into_iter().map(|x| x as f32).collect(),
        _ => return Err(DataError::format(path, "unsupported TIFF sample type")),
    };
    // Keep only the first sample of each pixel: the NC set stores one band per file.
    let data: Vec<f32> = all
        .into_iter()
        .step_by(samples.max(1))
        .map(|v| match nodata {
            Some(nd) if (f64::from(v) - nd).abs() < 1e-6 => f32::NAN,
            _ => v,
        })
        .collect();
    Raster::new(path, width as usize, height as usize, data, geo, crs)
}

/// A GeoTIFF's grid and CRS; fails when the file has no georeferencing.
fn read_geokeys<R: std::io::Read + std::io::Seek>(
    decoder: &mut Decoder<R>,
    path: &Path,
) -> Result<(GeoTransform, String)> {
    let georeference = read_georeference(decoder, path)?.ok_or_else(|| {
        DataError::format(path, "no ModelPixelScale/ModelTiepoint tags: not a GeoTIFF")
    })?;
    Ok((georeference.geo, georeference.crs))
}

/// The UUID of the GeoJP2 box: a degenerate GeoTIFF carrying the georeferencing tags.
const GEOJP2_UUID: [u8; 16] = [
    0xb1, 0x4b, 0xf8, 0xbd, 0x08, 0x3d, 0x4b, 0x43, 0xa5, 0xae, 0x8c, 0xd7, 0xd5, 0xa6, 0xce, 0x03,
];

/// Reads a single-component JPEG 2000 file with its georeferencing (GeoJP2 box, else GMLJP2).
/// Sample values are the raw code values (for Sentinel-2 L1C: DN = 10000 × TOA reflectance).
pub fn read_jp2(path: &Path) -> Result<Raster> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let (geo, crs) = jp2_georef(&bytes).ok_or_else(|| {
        DataError::format(path, "no GeoJP2 or GMLJP2 georeferencing in the JP2 boxes")
    })?;
    let image = jpeg2k::Image::from_bytes(&bytes).map_err(|source| DataError::Jpeg2000 {
        path: path.to_path_buf(),
        source,
    })?;
    let component = image
        .components()
        .first()
        .ok_or_else(|| DataError::format(path, "JPEG 2000 image has no component"))?;
    // Raw code values, not `data_u16()`, which would rescale 15-bit data to the 16-bit range.
    let data: Vec<f32> = component.data().iter().map(|&v| v as f32).collect();
    let (width, height) = (component.width() as usize, component.height() as usize);
    Raster::new(path, width, height, data, geo, crs)
}

/// Walks the JP2 box tree for the GeoJP2 UUID box (parsed as a GeoTIFF) or the GMLJP2 XML.
pub fn jp2_georef(bytes: &[u8]) -> Option<(GeoTransform, String)> {
    let mut gml = None;
    let mut stack = vec![(0usize, bytes.len())];
    while let Some((mut off, end)) = stack.pop() {
        while off + 8 <= end {
            let len32 = u32::from_be_bytes(bytes[off..off + 4].try_into().ok()?) as usize;
            let kind = &bytes[off + 4..off + 8];
            let (len, header) = match len32 {
                0 => (end - off, 8),
                1 => (
                    u64::from_be_bytes(bytes.get(off + 8..off + 16)?.try_into().ok()?) as usize,
                    16,
                ),
                n => (n, 8),
            };
            if len < header || off + len > end {
                break;
            }
            let body = &bytes[off + header..off + len];
            match kind {
                b"uuid" if body.len() > 16 && body[..16] == GEOJP2_UUID => {
                    let mut decoder = Decoder::new(Cursor::new(&body[16..])).ok()?;
                    if let Ok(found) = read_geokeys(&mut decoder, Path::new("GeoJP2 box")) {
                        return Some(found);
                    }
                }
                b"asoc" | b"jp2h" => stack.push((off + header, off + len)),
                b"xml " => {
                    if let Ok(text) = std::str::from_utf8(body) {
                        gml = gml.or_else(|| parse_gml_grid(text));
                    }
                }
                _ => {}
            }
            off += len;
        }
    }
    gml
}

/// Reads a GMLJP2 `RectifiedGrid`. Its origin is the centre of the first pixel.
fn parse_gml_grid(xml: &str) -> Option<(GeoTransform, String)> {
    let after = |haystack: &'static str| -> Option<&str> {
        let start = xml.find(haystack)? + haystack.len();
        Some(&xml[start..])
    };
    let numbers = |s: &str| -> Option<Vec<f64>> {
        let inner = &s[s.find('>')? + 1..];
        let text = &inner[..inner.find('<')?];
        text.split_whitespace().map(|t| t.parse().ok()).collect()
    };
    let origin_section = after("<gml:origin>")?;
    let pos = numbers(&origin_section[origin_section.find("<gml:pos")?..])?;
    let mut vectors = xml
        .match_indices("<gml:offsetVector")
        .map(|(i, _)| numbers(&xml[i..]));
    let dx = vectors.next()??;
    let dy = vectors.next()??;
    if pos.len() < 2 || dx.len() < 2 || dy.len() < 2 || dx[1] != 0.0 || dy[0] != 0.0 {
        return None; // rotated grids are not supported
    }
    let crs = xml
        .find("EPSG::")
        .and_then(|i| {
            let code: String = xml[i + 6..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            (!code.is_empty()).then(|| format!("EPSG:{code}"))
        })
        .unwrap_or_else(|| "unknown".to_string());
    Some((
        GeoTransform {
            origin_x: pos[0] - 0.5 * dx[0],
            origin_y: pos[1] - 0.5 * dy[1],
            pixel_width: dx[0],
            pixel_height: -dy[1],
        },
        crs,
    ))
}

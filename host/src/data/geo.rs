//! Georeferenced single-band rasters: reading GeoTIFF (the `tiff` crate plus the GeoTIFF tags) and
//! JPEG 2000 (OpenJPEG through the `jpeg2k` crate plus the GeoJP2 or GMLJP2 boxes), and writing
//! multiband 16-bit TIFF patches.
//!
//! Values are held as `f32`: Sentinel-2 DNs (15-bit) and Landsat DNs (8-bit, stored as float or
//! int16 in the NC set) are exact in `f32`, and one sample type keeps the builders simple. No-data
//! pixels become NaN.

use std::fs::File;
use std::io::{BufReader, BufWriter, Cursor};
use std::path::Path;

use serde::{Deserialize, Serialize};
use tiff::decoder::{Decoder, DecodingResult};
use tiff::tags::Tag;

use super::error::{DataError, Result};

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

// GeoKey ids (GeoTIFF 1.0 spec, section 6.2).
const GT_RASTER_TYPE: u16 = 1025;
const PROJECTED_CS_TYPE: u16 = 3072;
const GEOGRAPHIC_TYPE: u16 = 2048;
const GT_CITATION: u16 = 1026;
const PCS_CITATION: u16 = 3073;
const RASTER_PIXEL_IS_POINT: u16 = 2;
const USER_DEFINED: u16 = 32767;
const GDAL_NODATA: u16 = 42113;
const GEO_ASCII_PARAMS: u16 = 34737;

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
    let (width, height) = (width as usize, height as usize);
    if data.len() != width * height {
        return Err(DataError::format(path, "pixel count does not match size"));
    }
    Ok(Raster {
        width,
        height,
        data,
        geo,
        crs,
    })
}

/// Reads ModelPixelScale, ModelTiepoint and the GeoKey directory. Only north-up grids (no
/// ModelTransformation) are accepted: every file orbhash reads is one.
fn read_geokeys<R: std::io::Read + std::io::Seek>(
    decoder: &mut Decoder<R>,
    path: &Path,
) -> Result<(GeoTransform, String)> {
    let tiff_err = |source| DataError::Tiff {
        path: path.to_path_buf(),
        source,
    };
    let missing = |what: &str| DataError::format(path, format!("no {what} tag: not a GeoTIFF"));
    let scale = decoder
        .find_tag(Tag::ModelPixelScaleTag)
        .map_err(tiff_err)?
        .ok_or_else(|| missing("ModelPixelScale"))?
        .into_f64_vec()
        .map_err(tiff_err)?;
    let tie = decoder
        .find_tag(Tag::ModelTiepointTag)
        .map_err(tiff_err)?
        .ok_or_else(|| missing("ModelTiepoint"))?
        .into_f64_vec()
        .map_err(tiff_err)?;
    if scale.len() < 2 || tie.len() < 6 {
        return Err(DataError::format(
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
    Ok((geo, crs))
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
    let (width, height) = (component.width() as usize, component.height() as usize);
    // Raw code values, not `data_u16()`, which would rescale 15-bit data to the 16-bit range.
    let data: Vec<f32> = component.data().iter().map(|&v| v as f32).collect();
    if data.len() != width * height {
        return Err(DataError::format(path, "pixel count does not match size"));
    }
    Ok(Raster {
        width,
        height,
        data,
        geo,
        crs,
    })
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

/// `BlackIsZero` with `N` unsigned 16-bit samples per pixel: how GDAL writes a multispectral
/// TIFF, readable by GDAL, rasterio and the `tiff` crate (as `Multiband`).
struct MultiU16<const N: usize>;

impl<const N: usize> tiff::encoder::colortype::ColorType for MultiU16<N> {
    type Inner = u16;
    const TIFF_VALUE: tiff::tags::PhotometricInterpretation =
        tiff::tags::PhotometricInterpretation::BlackIsZero;
    const BITS_PER_SAMPLE: &'static [u16] = &[16; N];
    const SAMPLE_FORMAT: &'static [tiff::tags::SampleFormat] = &[tiff::tags::SampleFormat::Uint; N];

    fn horizontal_predict(row: &[u16], result: &mut Vec<u16>) {
        // Only used with a predictor, which orbhash does not enable: copy through.
        result.extend_from_slice(row);
    }
}

/// Writes a `width`×`height` patch with `bands` interleaved u16 samples per pixel (band order
/// as given), deflate-compressed. 1 to 8 bands.
pub fn write_u16_tiff(
    path: &Path,
    width: u32,
    height: u32,
    bands: usize,
    interleaved: &[u16],
) -> Result<()> {
    let file = File::create(path).map_err(|e| DataError::io(path, e))?;
    let tiff_err = |source| DataError::Tiff {
        path: path.to_path_buf(),
        source,
    };
    let mut encoder = tiff::encoder::TiffEncoder::new(BufWriter::new(file))
        .map_err(tiff_err)?
        .with_compression(tiff::encoder::Compression::Deflate(
            tiff::encoder::DeflateLevel::Balanced,
        ));
    macro_rules! write_n {
        ($n:literal) => {{
            let mut image = encoder
                .new_image::<MultiU16<$n>>(width, height)
                .map_err(tiff_err)?;
            if $n > 1 {
                // The samples past the first are neither colour nor alpha: "unspecified" (0)
                // ExtraSamples, as GDAL writes them. Written as a plain tag because the
                // encoder's `extra_samples()` would add them on top of the N samples.
                image
                    .encoder()
                    .write_tag(Tag::ExtraSamples, &[0u16; $n - 1][..])
                    .map_err(tiff_err)?;
            }
            image.write_data(interleaved).map_err(tiff_err)
        }};
    }
    match bands {
        1 => write_n!(1),
        2 => write_n!(2),
        3 => write_n!(3),
        4 => write_n!(4),
        5 => write_n!(5),
        6 => write_n!(6),
        7 => write_n!(7),
        8 => write_n!(8),
        n => Err(DataError::InvalidOption(format!(
            "{n} bands: a patch TIFF holds 1 to 8"
        ))),
    }
}

/// Reads a TIFF of any band count as (width, height, bands, interleaved f32 samples). Used for
/// the builders' multispectral patches, which the `image` crate cannot open.
pub fn read_tiff_bands(path: &Path) -> Result<(u32, u32, usize, Vec<f32>)> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let tiff_err = |source| DataError::Tiff {
        path: path.to_path_buf(),
        source,
    };
    let mut decoder = Decoder::new(BufReader::new(file)).map_err(tiff_err)?;
    let (width, height) = decoder.dimensions().map_err(tiff_err)?;
    let bands = decoder.colortype().map_err(tiff_err)?.num_samples() as usize;
    let data: Vec<f32> = match decoder.read_image().map_err(tiff_err)? {
        DecodingResult::U8(v) => v.into_iter().map(f32::from).collect(),
        DecodingResult::U16(v) => v.into_iter().map(f32::from).collect(),
        DecodingResult::I16(v) => v.into_iter().map(f32::from).collect(),
        DecodingResult::F32(v) => v,
        _ => return Err(DataError::format(path, "unsupported TIFF sample type")),
    };
    if data.len() != width as usize * height as usize * bands {
        return Err(DataError::format(path, "sample count does not match size"));
    }
    Ok((width, height, bands, data))
}

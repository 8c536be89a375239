//! Reading image files as raw samples, the same way on the ground (training data) and on board
//! (tiles and scenes), so a tile is decoded identically wherever it is hashed.
//!
//! TIFFs go through the `tiff` crate, which reads any band count (multispectral patches and
//! scenes) and their GeoTIFF georeferencing; other formats through the `image` crate as RGB
//! (8-bit values 0..255, 16-bit 0..65535). Samples are `f32`, interleaved.
//!
//! A GeoTIFF may name its bands: GDAL writes each band's description as an `Item` of its
//! GDAL_METADATA tag (42112), `<Item name="DESCRIPTION" sample="0" role="description">B04</Item>`
//! (rasterio's `set_band_description`, `gdal_translate` of named bands). Those names are read
//! into [`RawImage::band_names`], so a scene can be checked against a model card by name. The
//! orbhash data builders write no names: their scenes and patches are checked by band count.
//!
//! Everything here parses untrusted bytes (files uplinked or downlinked), so it indexes nothing
//! unchecked and never panics.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

use std::format;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::string::{String, ToString};
use std::vec::Vec;

use serde::{Deserialize, Serialize};
use tiff::decoder::{Decoder, DecodingResult};
use tiff::tags::Tag;

/// Why an image file could not be read. Each variant names the file; the cause is its source.
#[derive(Debug, thiserror::Error)]
pub enum RasterError {
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: unreadable TIFF", path.display())]
    Tiff {
        path: PathBuf,
        #[source]
        source: tiff::TiffError,
    },
    #[error("{}: unreadable image", path.display())]
    Image {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    /// Readable, but not an image this code can use (empty, odd sample type, torn).
    #[error("{}: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
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
    let (Some(&[scale_x, scale_y]), Some(&[tie_col, tie_row, _, tie_x, tie_y])) =
        (scale.get(..2), tie.get(..5))
    else {
        return Err(RasterError::format(
            path,
            "short ModelPixelScale/ModelTiepoint",
        ));
    };
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
        keys.get(4..)?.chunks_exact(4).find_map(|k| match *k {
            [key, location, count, value] if key == id => Some((location, count, value)),
            _ => None,
        })
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

    let (mut col0, mut row0) = (tie_col, tie_row);
    // PixelIsPoint tiepoints refer to pixel centres; the grid's corner is half a pixel off.
    if short_key(GT_RASTER_TYPE) == Some(RASTER_PIXEL_IS_POINT) {
        col0 -= 0.5;
        row0 -= 0.5;
    }
    let geo = GeoTransform {
        origin_x: tie_x - col0 * scale_x,
        origin_y: tie_y + row0 * scale_y,
        pixel_width: scale_x,
        pixel_height: scale_y,
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
    /// Each band's name, in band order, when the file names every band (see the module docs).
    pub band_names: Option<Vec<String>>,
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
            out.extend_from_slice(self.samples.get(start..start + width as usize * bands)?);
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
            band_names: None,
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
    let band_names = decoder
        .find_tag(Tag::Unknown(GDAL_METADATA))
        .map_err(tiff_err)?
        .and_then(|value| value.into_string().ok())
        .and_then(|xml| gdal_band_names(&xml, bands));
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
        band_names,
    })
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

/// GeoTIFF keys of a north-up grid: ModelPixelScale, ModelTiepoint at pixel (0, 0), and a key
/// directory declaring a projected model, pixel-is-area and the EPSG code.
fn write_geokeys<W: std::io::Write + std::io::Seek, K: tiff::encoder::TiffKind>(
    encoder: &mut tiff::encoder::DirectoryEncoder<'_, W, K>,
    georeference: &Georeference,
) -> tiff::TiffResult<()> {
    const GT_MODEL_TYPE: u16 = 1024;
    const MODEL_TYPE_PROJECTED: u16 = 1;
    const GT_RASTER_TYPE: u16 = 1025;
    const RASTER_PIXEL_IS_AREA: u16 = 1;
    const PROJECTED_CS_TYPE: u16 = 3072;
    let geo = &georeference.geo;
    encoder.write_tag(
        Tag::ModelPixelScaleTag,
        &[geo.pixel_width, geo.pixel_height, 0.0][..],
    )?;
    encoder.write_tag(
        Tag::ModelTiepointTag,
        &[0.0, 0.0, 0.0, geo.origin_x, geo.origin_y, 0.0][..],
    )?;
    let mut keys = vec![
        GT_MODEL_TYPE,
        0,
        1,
        MODEL_TYPE_PROJECTED,
        GT_RASTER_TYPE,
        0,
        1,
        RASTER_PIXEL_IS_AREA,
    ];
    if let Some(code) = georeference
        .crs
        .strip_prefix("EPSG:")
        .and_then(|code| code.parse::<u16>().ok())
    {
        keys.extend([PROJECTED_CS_TYPE, 0, 1, code]);
    }
    // Header: version 1, revision 1.0, then the number of keys.
    let mut directory = vec![1, 1, 0, (keys.len() / 4) as u16];
    directory.extend(keys);
    encoder.write_tag(Tag::GeoKeyDirectoryTag, &directory[..])
}

/// Writes a `width`×`height` image with `bands` interleaved u16 samples per pixel (band order
/// as given), deflate-compressed. 1 to 8 bands. With a `georeference` it is a GeoTIFF (pixel is
/// area; the CRS as an EPSG code when it is one); with `band_names`, each band is named in a
/// GDAL_METADATA tag, as [`read_image`] reads them back.
pub fn write_u16_tiff(
    path: &Path,
    width: u32,
    height: u32,
    bands: usize,
    interleaved: &[u16],
    georeference: Option<&Georeference>,
    band_names: Option<&[String]>,
) -> Result<(), RasterError> {
    let file = std::fs::File::create(path).map_err(|source| RasterError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let tiff_err = |source| RasterError::Tiff {
        path: path.to_path_buf(),
        source,
    };
    let mut encoder = tiff::encoder::TiffEncoder::new(std::io::BufWriter::new(file))
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
            if let Some(georeference) = georeference {
                write_geokeys(image.encoder(), georeference).map_err(tiff_err)?;
            }
            if let Some(names) = band_names.filter(|names| names.len() == bands) {
                image
                    .encoder()
                    .write_tag(Tag::Unknown(GDAL_METADATA), gdal_metadata(names).as_str())
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
        n => Err(RasterError::format(
            path,
            format!("{n} bands: orbhash writes TIFFs of 1 to 8"),
        )),
    }
}

/// A GDAL_METADATA document naming each band, as GDAL writes band descriptions.
fn gdal_metadata(names: &[String]) -> String {
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut xml = String::from("<GDALMetadata>");
    for (sample, name) in names.iter().enumerate() {
        xml.push_str(&format!(
            "<Item name=\"DESCRIPTION\" sample=\"{sample}\" role=\"description\">{}</Item>",
            escape(name)
        ));
    }
    xml.push_str("</GDALMetadata>");
    xml
}

/// GDAL's metadata tag: an XML document of `<Item name=… sample=… role=…>value</Item>`.
pub const GDAL_METADATA: u16 = 42112;

/// The band descriptions of a GDAL_METADATA document, when all `bands` are named (a partly
/// named file is treated as unnamed: it is checked by count).
pub fn gdal_band_names(xml: &str, bands: usize) -> Option<Vec<String>> {
    let mut names: Vec<Option<String>> = vec![None; bands];
    let mut rest = xml;
    while let Some(start) = rest.find("<Item") {
        let after = rest.get(start + "<Item".len()..)?;
        let tag_end = after.find('>')?;
        let attributes = after.get(..tag_end)?;
        let body = after.get(tag_end + 1..)?;
        let close = body.find("</Item>")?;
        let value = body.get(..close)?;
        rest = body.get(close..)?;
        let is_description = attribute(attributes, "name") == Some("DESCRIPTION")
            && attribute(attributes, "role").is_none_or(|role| role == "description");
        let sample = attribute(attributes, "sample").and_then(|s| s.parse::<usize>().ok());
        if let (true, Some(sample)) = (is_description, sample) {
            let name = unescape(value.trim());
            if let Some(slot) = names.get_mut(sample).filter(|_| !name.is_empty()) {
                *slot = Some(name);
            }
        }
    }
    names.into_iter().collect()
}

/// The value of `name="…"` among XML attributes.
fn attribute<'a>(attributes: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = attributes;
    loop {
        let at = rest.find(name)?;
        let before_ok = at == 0
            || rest
                .get(..at)
                .and_then(|b| b.chars().last())
                .is_some_and(char::is_whitespace);
        let after = rest.get(at + name.len()..)?;
        let after_trimmed = after.trim_start();
        if before_ok && after_trimmed.starts_with('=') {
            let value = after_trimmed.get(1..)?.trim_start();
            let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
            let value = value.get(1..)?;
            return value.find(quote).and_then(|end| value.get(..end));
        }
        rest = after;
    }
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
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
            band_names: None,
        };
        assert_eq!(
            image.window(1, 0, 2, 2),
            Some(vec![10.0, 11.0, 20.0, 21.0, 40.0, 41.0, 50.0, 51.0])
        );
        assert_eq!(image.window(2, 0, 2, 1), None);
        assert_eq!(image.window(u32::MAX, 0, 2, 1), None);
    }

    use orbhash_cli::error_chain as chain;

    #[test]
    fn an_unreadable_file_names_its_cause_once() {
        let error = read_image(Path::new("/nonexistent/scene.tif")).expect_err("fails");
        let text = chain(&error);
        assert_eq!(text.matches("No such file").count(), 1, "{text}");
        assert!(text.contains("/nonexistent/scene.tif"), "{text}");
    }

    /// A 2×2 TIFF of `bands` u16 samples, with GDAL_METADATA `metadata` when given.
    fn write_tiff(path: &Path, bands: usize, metadata: Option<&str>) {
        use tiff::encoder::{colortype, TiffEncoder};
        let file = File::create(path).expect("creates");
        let mut encoder = TiffEncoder::new(file).expect("encoder");
        let samples = vec![7u16; 4 * bands];
        macro_rules! write {
            ($colour:ty) => {{
                let mut image = encoder.new_image::<$colour>(2, 2).expect("image");
                if let Some(xml) = metadata {
                    image
                        .encoder()
                        .write_tag(Tag::Unknown(GDAL_METADATA), xml)
                        .expect("tag");
                }
                image.write_data(&samples).expect("writes");
            }};
        }
        match bands {
            3 => write!(colortype::RGB16),
            4 => write!(colortype::RGBA16),
            _ => panic!("3 or 4 bands"),
        }
    }

    #[test]
    fn band_descriptions_in_gdal_metadata_name_the_bands() {
        let dir = tempfile::tempdir().expect("tempdir");
        let named = dir.path().join("named.tif");
        let xml = "<GDALMetadata>\n  <Item name=\"DESCRIPTION\" sample=\"0\" role=\"description\">B4</Item>\n  \
                   <Item name=\"DESCRIPTION\" sample=\"2\" role=\"description\">B2</Item>\n  \
                   <Item name=\"OFFSET\" sample=\"1\" role=\"offset\">0</Item>\n  \
                   <Item name=\"DESCRIPTION\" sample=\"1\" role=\"description\">B3 &amp; co</Item>\n\
                   </GDALMetadata>";
        write_tiff(&named, 3, Some(xml));
        let image = read_image(&named).expect("reads");
        assert_eq!(image.bands, 3);
        assert_eq!(
            image.band_names,
            Some(vec!["B4".to_string(), "B3 & co".into(), "B2".into()])
        );

        // A band left unnamed: the file counts as unnamed.
        let partly = dir.path().join("partly.tif");
        write_tiff(&partly, 4, Some(xml));
        assert_eq!(read_image(&partly).expect("reads").band_names, None);
        let plain = dir.path().join("plain.tif");
        write_tiff(&plain, 3, None);
        assert_eq!(read_image(&plain).expect("reads").band_names, None);
    }

    #[test]
    fn garbled_gdal_metadata_names_nothing_and_never_panics() {
        for xml in [
            "",
            "<Item",
            "<Item name=\"DESCRIPTION\" sample=\"0\">B4",
            "<Item name=\"DESCRIPTION\" sample=\"99\">B4</Item>",
            "<Item name=\"DESCRIPTION\" sample=\"-1\">B4</Item>",
            "<Item name=DESCRIPTION sample=0>B4</Item>",
            "<Item name=\"DESCRIPTION\" sample=\"0\"></Item>",
        ] {
            assert_eq!(gdal_band_names(xml, 1), None, "{xml:?}");
        }
        assert_eq!(
            gdal_band_names("<Item sample='0' name='DESCRIPTION'>é</Item>", 1),
            Some(vec!["é".to_string()])
        );
    }

    #[test]
    fn the_real_scene_reads_as_four_unnamed_georeferenced_bands() {
        let Some(path) = orbhash_test_support::asset(
            ".cache/data/s2-brandenburg/scenes/T33UUU_20170216T102101.tif",
        ) else {
            return;
        };
        let image = read_image(&path).expect("reads");
        assert_eq!((image.width, image.height, image.bands), (1536, 768, 4));
        // The data builder writes no band names: the scene is checked by count.
        assert_eq!(image.band_names, None);
        let georeference = image.georeference.expect("a GeoTIFF");
        assert_eq!(georeference.crs, "EPSG:32633");
        assert_eq!(georeference.geo.origin_x, 330000.0);
    }
}

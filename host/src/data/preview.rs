//! Pictures for people: a grid of sample patches per class (`samples.png`) and the scene with its
//! labels laid over it (`scene.png`), so that anyone can see what a data set holds and whether
//! labels and imagery line up. Text is drawn with a built-in 5×7 pixel font: no font files.

use std::path::Path;

use super::error::{DataError, Result};
use super::manifest::SplitName;
use super::preprocess::BandScale;

/// An RGB8 drawing surface.
#[derive(Clone, Debug)]
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

/// Class colours (tab10), indexed by class id − 1.
pub const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

const QUERY_BORDER: [u8; 3] = [255, 140, 0];
const DATABASE_BORDER: [u8; 3] = [70, 70, 70];

impl Canvas {
    pub fn new(width: usize, height: usize, background: [u8; 3]) -> Self {
        let rgb = background
            .iter()
            .copied()
            .cycle()
            .take(width * height * 3)
            .collect();
        Self { width, height, rgb }
    }

    pub fn put(&mut self, x: usize, y: usize, color: [u8; 3]) {
        if x < self.width && y < self.height {
            let i = (y * self.width + x) * 3;
            self.rgb[i..i + 3].copy_from_slice(&color);
        }
    }

    pub fn fill_rect(&mut self, x: usize, y: usize, w: usize, h: usize, color: [u8; 3]) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.put(xx, yy, color);
            }
        }
    }

    /// Copies an RGB8 image of `w`×`h`, enlarged `zoom` times (nearest neighbour).
    pub fn blit(&mut self, x: usize, y: usize, w: usize, h: usize, rgb: &[u8], zoom: usize) {
        for yy in 0..h * zoom {
            for xx in 0..w * zoom {
                let i = ((yy / zoom) * w + xx / zoom) * 3;
                self.put(x + xx, y + yy, [rgb[i], rgb[i + 1], rgb[i + 2]]);
            }
        }
    }

    /// Draws `text` with the 5×7 font, each font pixel `scale`×`scale`. Returns the width used.
    pub fn text(&mut self, x: usize, y: usize, text: &str, scale: usize, color: [u8; 3]) -> usize {
        let mut cx = x;
        for ch in text.chars() {
            let rows = glyph(ch);
            for (r, bits) in rows.iter().enumerate() {
                for c in 0..5 {
                    if bits & (0x10 >> c) != 0 {
                        self.fill_rect(cx + c * scale, y + r * scale, scale, scale, color);
                    }
                }
            }
            cx += 6 * scale;
        }
        cx - x
    }

    pub fn save_png(&self, path: &Path) -> Result<()> {
        image::save_buffer(
            path,
            &self.rgb,
            self.width as u32,
            self.height as u32,
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|source| DataError::Image {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// A contrast stretch for pictures only: maps one band's values to 0..255 so that a dim winter
/// scene or a hazy one is visible. It is chosen per data set from its pixels and is *not* the
/// manifest's `bands[].scale` (the sensor's fixed range, what the model reads): it is never stored
/// nor fed to a model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DisplayStretch {
    pub low: f32,
    pub high: f32,
}

impl DisplayStretch {
    /// The 2nd to the 98th percentile of the finite `values`: haze and the odd saturated roof do
    /// not set the range. `None` when no value is finite.
    pub fn percentiles(values: &[f32]) -> Option<Self> {
        BandScale::from_percentiles(values, 2.0, 98.0).map(|s| Self {
            low: s.low,
            high: s.high,
        })
    }

    /// A value on the 0..255 display scale (no data, NaN, is black).
    pub fn to_u8(&self, v: f32) -> u8 {
        if !v.is_finite() {
            return 0;
        }
        let x = ((v - self.low) / (self.high - self.low)).clamp(0.0, 1.0);
        (x * 255.0).round() as u8
    }
}

/// One sample patch for the grid: RGB8 pixels and its side of the split.
pub struct Thumb {
    pub size: usize,
    pub rgb: Vec<u8>,
    pub split: SplitName,
}

/// One row of the grid.
pub struct ClassRow {
    pub name: String,
    pub count: usize,
    pub thumbs: Vec<Thumb>,
}

/// Lays out one row per class: the class name and count, then its sample patches enlarged to
/// about 64 px, each framed grey (database) or orange (query).
pub fn sample_grid(title: &str, rows: &[ClassRow]) -> Canvas {
    let patch = rows
        .iter()
        .flat_map(|r| r.thumbs.first())
        .map(|t| t.size)
        .max()
        .unwrap_or(32)
        .max(1);
    let zoom = (64 / patch).max(1);
    let cell = patch * zoom + 6;
    let per_row = rows
        .iter()
        .map(|r| r.thumbs.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let label_w = rows
        .iter()
        .map(|r| format!("{} ({})", r.name, r.count).len())
        .max()
        .unwrap_or(8)
        * 12
        + 16;
    let header = 2 * 7 * 2 + 16;
    let width = (label_w + per_row * cell + 8).max(title.len() * 12 + 16);
    let height = header + rows.len() * cell + 8;
    let mut canvas = Canvas::new(width, height, [255, 255, 255]);
    canvas.text(8, 6, title, 2, [0, 0, 0]);
    let x = 8 + canvas.text(8, 6 + 18, "frame: ", 2, [0, 0, 0]);
    let x = x + canvas.text(x, 6 + 18, "database ", 2, DATABASE_BORDER);
    canvas.text(x, 6 + 18, "query", 2, QUERY_BORDER);
    for (i, row) in rows.iter().enumerate() {
        let y = header + i * cell;
        canvas.text(
            8,
            y + cell / 2 - 7,
            &format!("{} ({})", row.name, row.count),
            2,
            [0, 0, 0],
        );
        for (j, thumb) in row.thumbs.iter().enumerate() {
            let x = label_w + j * cell;
            let border = match thumb.split {
                SplitName::Query => QUERY_BORDER,
                SplitName::Database => DATABASE_BORDER,
            };
            let inner = thumb.size * zoom;
            canvas.fill_rect(x, y, inner + 4, inner + 4, border);
            canvas.blit(x + 2, y + 2, thumb.size, thumb.size, &thumb.rgb, zoom);
        }
    }
    canvas
}

/// The scene in RGB with each labelled pixel tinted by its class colour and a legend underneath;
/// kept patches are outlined in their class colour.
pub struct SceneOverlay<'a> {
    pub title: &'a str,
    pub width: usize,
    pub height: usize,
    /// RGB8, `width`×`height`.
    pub rgb: &'a [u8],
    /// Class id per pixel (0: none; k: `classes[k - 1]`).
    pub labels: &'a [u8],
    pub classes: &'a [String],
    /// (row, col, size, class id) of each kept patch.
    pub patches: &'a [(usize, usize, usize, u8)],
    /// Tint strength, 0..1.
    pub alpha: f32,
}

impl SceneOverlay<'_> {
    pub fn render(&self) -> Canvas {
        let SceneOverlay {
            title,
            width,
            height,
            rgb,
            labels,
            classes,
            patches,
            alpha,
        } = *self;
        let zoom = if width < 800 { 2 } else { 1 };
        let legend_h = 30 + 20 * classes.len().div_ceil(4);
        let mut canvas = Canvas::new(width * zoom, height * zoom + legend_h, [255, 255, 255]);
        let mut tinted = rgb.to_vec();
        for (i, &label) in labels.iter().enumerate() {
            if label == 0 {
                continue;
            }
            let color = PALETTE[(label as usize - 1) % PALETTE.len()];
            for c in 0..3 {
                let v = f32::from(tinted[i * 3 + c]) * (1.0 - alpha) + f32::from(color[c]) * alpha;
                tinted[i * 3 + c] = v.round() as u8;
            }
        }
        canvas.blit(0, 0, width, height, &tinted, zoom);
        for &(row, col, size, class) in patches {
            let color = PALETTE[(class as usize).saturating_sub(1) % PALETTE.len()];
            let (x, y, s) = (col * zoom, row * zoom, size * zoom);
            canvas.fill_rect(x, y, s, 1, color);
            canvas.fill_rect(x, y + s - 1, s, 1, color);
            canvas.fill_rect(x, y, 1, s, color);
            canvas.fill_rect(x + s - 1, y, 1, s, color);
        }
        let top = height * zoom + 6;
        canvas.text(6, top, title, 2, [0, 0, 0]);
        for (k, name) in classes.iter().enumerate() {
            let x = 6 + (k % 4) * (canvas.width / 4).max(1);
            let y = top + 20 + (k / 4) * 20;
            canvas.fill_rect(x, y, 14, 14, PALETTE[k % PALETTE.len()]);
            canvas.text(x + 20, y, name, 2, [0, 0, 0]);
        }
        canvas
    }
}

/// 5×7 glyphs, one byte per row, bit 4 leftmost. Lower case is drawn as upper case.
fn glyph(ch: char) -> [u8; 7] {
    match ch.to_ascii_uppercase() {
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        ' ' => [0; 7],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '/' => [0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ',' => [0, 0, 0, 0, 0x0C, 0x04, 0x08],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '=' => [0, 0, 0x1F, 0, 0x1F, 0, 0],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '+' => [0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0],
        _ => [0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F],
    }
}

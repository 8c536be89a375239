//! Burning polygons into a label grid.
//!
//! A pixel takes a polygon's label when the pixel's *centre* lies inside the polygon (even-odd
//! rule, so holes stay empty): GDAL's default rasterisation. `geo-rasterize` was the obvious crate
//! but it reproduces GDAL's `ALL_TOUCHED=TRUE` mode only, which widens every polygon by up to a
//! pixel on each side; for class fractions of 1–50 ha polygons on a 10 m grid that bias is
//! several per cent, so this small scanline fill is used instead.

use geo_types::MultiPolygon;

use super::geo::GeoTransform;

/// A class-id grid, row-major; 0 means "no label".
#[derive(Clone, Debug, PartialEq)]
pub struct LabelGrid {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl LabelGrid {
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: vec![0; width * height],
        }
    }

    pub fn get(&self, col: usize, row: usize) -> u8 {
        self.data[row * self.width + col]
    }

    /// Sets every pixel whose centre falls inside `shape` (map coordinates, mapped to pixels by
    /// `geo`) to `label`, overwriting what was there.
    pub fn burn(&mut self, shape: &MultiPolygon<f64>, geo: &GeoTransform, label: u8) {
        // All ring edges in pixel space; with the even-odd rule a hole is just more edges.
        let mut edges: Vec<((f64, f64), (f64, f64))> = Vec::new();
        for polygon in &shape.0 {
            for ring in std::iter::once(polygon.exterior()).chain(polygon.interiors()) {
                let points: Vec<(f64, f64)> =
                    ring.0.iter().map(|c| geo.map_to_pixel(c.x, c.y)).collect();
                for pair in points.windows(2) {
                    edges.push((pair[0], pair[1]));
                }
                // geo-types closes rings, but be safe with rings that are not closed.
                if let (Some(&first), Some(&last)) = (points.first(), points.last()) {
                    if first != last {
                        edges.push((last, first));
                    }
                }
            }
        }
        if edges.is_empty() {
            return;
        }
        let (ymin, ymax) = edges.iter().fold((f64::MAX, f64::MIN), |(lo, hi), e| {
            (lo.min(e.0 .1).min(e.1 .1), hi.max(e.0 .1).max(e.1 .1))
        });
        let row_start = (ymin - 0.5).ceil().max(0.0) as usize;
        let row_end = ((ymax - 0.5).floor() + 1.0).clamp(0.0, self.height as f64) as usize;
        let mut crossings = Vec::new();
        for row in row_start..row_end {
            let yc = row as f64 + 0.5;
            crossings.clear();
            for &((x0, y0), (x1, y1)) in &edges {
                // Half-open in y so a vertex exactly on the scanline is counted once.
                if (y0 <= yc && yc < y1) || (y1 <= yc && yc < y0) {
                    crossings.push(x0 + (yc - y0) * (x1 - x0) / (y1 - y0));
                }
            }
            crossings.sort_by(f64::total_cmp);
            for span in crossings.chunks_exact(2) {
                // Columns whose centre c + 0.5 lies in [span[0], span[1]).
                let c0 = (span[0] - 0.5).ceil().max(0.0);
                let c1 = (span[1] - 0.5).ceil().min(self.width as f64);
                if c1 <= c0 {
                    continue;
                }
                let base = row * self.width;
                self.data[base + c0 as usize..base + c1 as usize].fill(label);
            }
        }
    }
}

/// Planar area of a multipolygon (shoelace formula; holes subtract).
pub fn area(shape: &MultiPolygon<f64>) -> f64 {
    let ring_area = |ring: &geo_types::LineString<f64>| {
        ring.0
            .windows(2)
            .map(|w| w[0].x * w[1].y - w[1].x * w[0].y)
            .sum::<f64>()
            .abs()
            / 2.0
    };
    shape
        .0
        .iter()
        .map(|p| ring_area(p.exterior()) - p.interiors().iter().map(ring_area).sum::<f64>())
        .sum()
}

/// Burns labelled shapes largest first, so that a smaller polygon drawn inside a larger one (a
/// lake in a forest) keeps its own label instead of being painted over.
pub fn burn_all(grid: &mut LabelGrid, geo: &GeoTransform, shapes: &[(&MultiPolygon<f64>, u8)]) {
    let mut order: Vec<(f64, usize)> = shapes
        .iter()
        .enumerate()
        .map(|(i, (shape, _))| (area(shape), i))
        .collect();
    // Ties broken by input order, so the result never depends on the sort's stability.
    order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in order {
        let (shape, label) = shapes[i];
        grid.burn(shape, geo, label);
    }
}

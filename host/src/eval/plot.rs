//! PNG plots of an evaluation: precision-recall over Hamming radii, precision@k, training loss.
//!
//! Drawing is `plotters`' bitmap backend into memory, encoded to PNG with the `image` crate the
//! host already uses. Text goes through plotters' `ab_glyph` feature from a TTF file read at run
//! time, so nothing links fontconfig or freetype. The font is the first of: `$ORBHASH_FONT`, then
//! DejaVu Sans where Debian's `fonts-dejavu-core` (and other distributions) put it. No font is ever
//! downloaded; without one, plotting fails with [`EvalError::FontNotFound`] saying what to install.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{FontStyle, Palette, Palette99};
use serde::{Deserialize, Serialize};

use super::{EvalError, EvalReport};

/// Size of every plot, in pixels.
pub const WIDTH: u32 = 900;
pub const HEIGHT: u32 = 600;

const FONT_FAMILY: &str = "sans-serif";

/// Where DejaVu Sans lives on common systems; Debian's fonts-dejavu-core first.
const FONT_CANDIDATES: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
];

static FONT: OnceLock<PathBuf> = OnceLock::new();

/// Registers the plot font once per process and says which file it is.
pub fn ensure_font() -> Result<&'static Path, EvalError> {
    if let Some(path) = FONT.get() {
        return Ok(path);
    }
    let mut looked = Vec::new();
    let candidates = std::env::var_os("ORBHASH_FONT")
        .map(PathBuf::from)
        .into_iter()
        .chain(FONT_CANDIDATES.iter().map(PathBuf::from));
    for path in candidates {
        let Ok(bytes) = std::fs::read(&path) else {
            looked.push(path);
            continue;
        };
        // plotters keeps fonts for the life of the process and wants 'static bytes: one leak of
        // about 700 kB, once, guarded by the OnceLock.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, bytes).map_err(|_| {
            EvalError::BadFont {
                path: path.clone(),
                why: "not a TrueType/OpenType font".into(),
            }
        })?;
        return Ok(FONT.get_or_init(|| path));
    }
    Err(EvalError::FontNotFound { looked })
}

/// One named curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Mark each point: for short curves (a radius sweep has K + 1 points) whose points matter.
    pub markers: bool,
}

/// Where the legend goes: the corner a kind of curve leaves empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legend {
    UpperRight,
    LowerLeft,
}

/// Layout of one chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x_range: std::ops::Range<f64>,
    pub y_range: std::ops::Range<f64>,
    /// Label x ticks as integers (k, steps).
    pub integer_x: bool,
    pub legend: Legend,
}

/// A line chart of `series`, written to `path` as PNG.
pub fn line_chart(path: &Path, spec: &Chart<'_>, series: &[Series]) -> Result<(), EvalError> {
    if series.iter().all(|s| s.points.is_empty()) {
        return Err(EvalError::NothingToPlot("every series is empty"));
    }
    ensure_font()?;
    let plot_error = |e: &dyn std::fmt::Display| EvalError::Plot {
        path: path.to_path_buf(),
        why: e.to_string(),
    };
    let mut pixels = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_error(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(spec.title, (FONT_FAMILY, 26))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(spec.x_range.clone(), spec.y_range.clone())
            .map_err(|e| plot_error(&e))?;
        let integer_x = spec.integer_x;
        let x_format = move |x: &f64| {
            if integer_x {
                format!("{x:.0}")
            } else {
                format!("{x:.1}")
            }
        };
        chart
            .configure_mesh()
            .x_desc(spec.x_label)
            .y_desc(spec.y_label)
            .x_label_formatter(&x_format)
            .label_style((FONT_FAMILY, 16))
            .axis_desc_style((FONT_FAMILY, 18))
            .draw()
            .map_err(|e| plot_error(&e))?;
        for (i, s) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let style = ShapeStyle::from(&color).stroke_width(2);
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), style))
                .map_err(|e| plot_error(&e))?
                .label(s.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            if s.markers {
                chart
                    .draw_series(
                        s.points
                            .iter()
                            .map(|&p| Circle::new(p, 3, ShapeStyle::from(&color).filled())),
                    )
                    .map_err(|e| plot_error(&e))?;
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT_FAMILY, 16))
            .position(match spec.legend {
                Legend::UpperRight => SeriesLabelPosition::UpperRight,
                Legend::LowerLeft => SeriesLabelPosition::LowerLeft,
            })
            .draw()
            .map_err(|e| plot_error(&e))?;
        root.present().map_err(|e| plot_error(&e))?;
    }
    image::save_buffer_with_format(
        path,
        &pixels,
        WIDTH,
        HEIGHT,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|e| plot_error(&e))
}

fn series_name(report: &EvalReport) -> String {
    format!("{} ({} bits)", report.method, report.bits)
}

/// Precision vs recall over Hamming radii 0..=K, one curve per report.
pub fn plot_pr_curves(path: &Path, reports: &[&EvalReport]) -> Result<(), EvalError> {
    let series: Vec<Series> = reports
        .iter()
        .map(|r| Series {
            name: series_name(r),
            points: r.retrieval.pr_curve(),
            markers: true,
        })
        .collect();
    let title = match reports {
        [one] => format!("Precision-recall over Hamming radius, {}", one.dataset),
        _ => "Precision-recall over Hamming radius".to_string(),
    };
    let spec = Chart {
        title: &title,
        x_label: "recall",
        y_label: "precision",
        x_range: 0.0..1.02,
        y_range: 0.0..1.02,
        integer_x: false,
        legend: Legend::LowerLeft,
    };
    line_chart(path, &spec, &series)
}

/// Precision over the first k retrieved, k = 1..=max_k, one curve per report.
pub fn plot_precision_at_k(path: &Path, reports: &[&EvalReport]) -> Result<(), EvalError> {
    let series: Vec<Series> = reports
        .iter()
        .map(|r| Series {
            name: series_name(r),
            points: (1..)
                .zip(&r.retrieval.precision_at_k)
                .map(|(k, &p)| (f64::from(k), p))
                .collect(),
            markers: false,
        })
        .collect();
    let max_k = series
        .iter()
        .map(|s| s.points.len())
        .max()
        .unwrap_or(1)
        .max(2) as f64;
    let spec = Chart {
        title: "Precision@k by Hamming ranking",
        x_label: "k (items retrieved)",
        y_label: "precision@k",
        x_range: 1.0..max_k,
        y_range: 0.0..1.02,
        integer_x: true,
        legend: Legend::UpperRight,
    };
    line_chart(path, &spec, &series)
}

/// One training record of the metrics log.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossPoint {
    pub epoch: f64,
    pub step: u64,
    pub loss: f64,
}

/// Reads a JSONL metrics log: one JSON object per line with at least `epoch`, `step` and `loss`.
/// Blank lines, and records without a `loss` (or with `loss: null`), are skipped, so other records
/// (evaluation results, notes) may share the log; a malformed line, or a loss record missing
/// `epoch` or `step`, is an error naming the line.
pub fn read_metrics_log(path: &Path) -> Result<Vec<LossPoint>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_metrics_log(&text, path)
}

/// [`read_metrics_log`] on text already read; `path` only names the source in errors.
pub fn parse_metrics_log(text: &str, path: &Path) -> Result<Vec<LossPoint>, EvalError> {
    let mut points = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_error = |source| EvalError::MetricsLog {
            path: path.to_path_buf(),
            line: index + 1,
            source,
        };
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(line).map_err(line_error)?;
        if value.get("loss").is_none_or(serde_json::Value::is_null) {
            continue;
        }
        points.push(serde_json::from_value(value).map_err(line_error)?);
    }
    Ok(points)
}

/// Training loss per logged step, with each epoch's mean loss as a second curve.
pub fn plot_training_loss(path: &Path, points: &[LossPoint], title: &str) -> Result<(), EvalError> {
    if points.is_empty() {
        return Err(EvalError::NothingToPlot("the metrics log holds no loss"));
    }
    // Steps counted per epoch (restarting at 0) would fold the curve back on itself: fall back to
    // record order then.
    let monotonic = points.windows(2).all(|w| w[0].step <= w[1].step);
    let x_of = |i: usize, p: &LossPoint| if monotonic { p.step as f64 } else { i as f64 };
    let per_step: Vec<(f64, f64)> = points
        .iter()
        .enumerate()
        .map(|(i, p)| (x_of(i, p), p.loss))
        .collect();
    let mut per_epoch: Vec<(f64, f64)> = Vec::new();
    let mut start = 0;
    for end in 1..=points.len() {
        if end == points.len() || points[end].epoch != points[start].epoch {
            let group = &points[start..end];
            let mean = group.iter().map(|p| p.loss).sum::<f64>() / group.len() as f64;
            per_epoch.push((x_of(end - 1, &points[end - 1]), mean));
            start = end;
        }
    }
    let (x_min, x_max) = per_step
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.0), hi.max(p.0))
        });
    let (y_min, y_max) = per_step
        .iter()
        .filter(|p| p.1.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    if !y_min.is_finite() {
        return Err(EvalError::NothingToPlot("every logged loss is infinite"));
    }
    let y_pad = ((y_max - y_min) * 0.05).max(1e-6);
    let x_hi = if x_max > x_min { x_max } else { x_min + 1.0 };
    let mut series = vec![Series {
        name: "loss per step".into(),
        points: per_step,
        markers: false,
    }];
    if per_epoch.len() > 1 {
        series.push(Series {
            name: "epoch mean".into(),
            points: per_epoch,
            markers: true,
        });
    }
    let spec = Chart {
        title,
        x_label: if monotonic { "step" } else { "record" },
        y_label: "loss",
        x_range: x_min..x_hi,
        y_range: y_min - y_pad..y_max + y_pad,
        integer_x: true,
        legend: Legend::UpperRight,
    };
    line_chart(path, &spec, &series)
}

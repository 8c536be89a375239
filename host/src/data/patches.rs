//! Cutting a labelled scene into square patches and labelling each by its majority class.

use serde::{Deserialize, Serialize};

use super::rasterize::LabelGrid;

/// A patch that passed the majority threshold, before any split.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Top-left pixel of the patch in the scene.
    pub row: usize,
    pub col: usize,
    /// Majority class id (never 0, which means "no label").
    pub class: u8,
    /// Share of the patch's pixels, labelled or not, that carry `class`.
    pub fraction: f32,
}

/// Slides a `size`×`size` window with `stride` over `labels` and keeps every window whose most
/// frequent class covers at least `min_majority` of *all* its pixels (unlabelled pixels count
/// against it, so a patch that is mostly unlabelled is never kept). Windows with a pixel for which
/// `valid(col, row)` is false (no data in some band) are skipped. Ties between classes go to the
/// lower class id, so the result is deterministic.
pub fn majority_patches(
    labels: &LabelGrid,
    size: usize,
    stride: usize,
    min_majority: f32,
    valid: impl Fn(usize, usize) -> bool,
) -> Vec<Candidate> {
    let mut out = Vec::new();
    if size == 0 || stride == 0 || size > labels.width || size > labels.height {
        return out;
    }
    let mut counts = [0u32; 256];
    for row in (0..=labels.height - size).step_by(stride) {
        'window: for col in (0..=labels.width - size).step_by(stride) {
            counts.fill(0);
            for r in row..row + size {
                for c in col..col + size {
                    if !valid(c, r) {
                        continue 'window;
                    }
                    counts[labels.get(c, r) as usize] += 1;
                }
            }
            let (class, count) =
                counts
                    .iter()
                    .enumerate()
                    .skip(1)
                    .fold(
                        (0usize, 0u32),
                        |best, (k, &n)| if n > best.1 { (k, n) } else { best },
                    );
            let fraction = count as f32 / (size * size) as f32;
            if class != 0 && fraction >= min_majority {
                out.push(Candidate {
                    row,
                    col,
                    class: class as u8,
                    fraction,
                });
            }
        }
    }
    out
}

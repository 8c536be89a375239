//! Unsupervised hashing floors on backbone features, in pure Rust so they run without libtorch:
//! LSH (random projections) and ITQ (Gong & Lazebnik, "Iterative quantization: a Procrustean
//! approach to learning binary codes", CVPR 2011).
//!
//! Both are fitted on the retrieval database's features (the training split) and then encode the
//! database and the queries with the same mean and projection. Linear algebra is `nalgebra`: pure
//! Rust (no BLAS/LAPACK to install on the ground or in CI), with a symmetric eigensolver for PCA and
//! an SVD for the Procrustes step, in f64 so a 1280-d covariance keeps its small eigenvalues.

use nalgebra::{DMatrix, SymmetricEigen, SVD};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{CodeSet, EvalError};

/// N feature vectors of D values, row-major and contiguous (a tensor's storage as it is).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMatrix {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

impl FeatureMatrix {
    /// Takes a flat row-major N × `cols` matrix. Values must be finite.
    pub fn from_flat(data: Vec<f32>, cols: usize) -> Result<Self, EvalError> {
        if cols == 0 || data.len() % cols != 0 {
            return Err(EvalError::RaggedFlat {
                what: "features",
                len: data.len(),
                row_len: cols,
            });
        }
        if let Some(pos) = data.iter().position(|v| !v.is_finite()) {
            return Err(EvalError::NonFinite {
                what: "features",
                row: pos / cols,
            });
        }
        Ok(Self {
            rows: data.len() / cols,
            cols,
            data,
        })
    }

    /// One `Vec<f32>` per item, all of the same length.
    pub fn from_rows(rows: &[Vec<f32>]) -> Result<Self, EvalError> {
        let cols = rows.first().map_or(0, Vec::len);
        let mut data = Vec::with_capacity(rows.len() * cols);
        for (row, values) in rows.iter().enumerate() {
            if values.len() != cols {
                return Err(EvalError::RaggedRow {
                    what: "features",
                    row,
                    expected: cols,
                    got: values.len(),
                });
            }
            data.extend_from_slice(values);
        }
        Self::from_flat(data, cols)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn row(&self, index: usize) -> Option<&[f32]> {
        let start = index.checked_mul(self.cols)?;
        self.data.get(start..start + self.cols)
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    fn mean(&self) -> Vec<f64> {
        let mut mean = vec![0.0f64; self.cols];
        for row in self.data.chunks_exact(self.cols) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += f64::from(v);
            }
        }
        let n = self.rows.max(1) as f64;
        mean.iter_mut().for_each(|m| *m /= n);
        mean
    }

    fn centred(&self, mean: &[f64]) -> DMatrix<f64> {
        DMatrix::from_fn(self.rows, self.cols, |r, c| {
            f64::from(self.data[r * self.cols + c]) - mean[c]
        })
    }
}

/// A linear hash: bit k of x is `(x − mean) · projection[:, k] > 0`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearHash {
    mean: Vec<f64>,
    /// D × K.
    projection: DMatrix<f64>,
}

impl LinearHash {
    pub fn bits(&self) -> usize {
        self.projection.ncols()
    }

    pub fn dims(&self) -> usize {
        self.projection.nrows()
    }

    /// Codes of `features` (same D as the fit).
    pub fn encode(&self, features: &FeatureMatrix) -> Result<CodeSet, EvalError> {
        if features.cols() != self.dims() {
            return Err(EvalError::RaggedRow {
                what: "features to encode",
                row: 0,
                expected: self.dims(),
                got: features.cols(),
            });
        }
        let projected = features.centred(&self.mean) * &self.projection;
        let mut codes = CodeSet::new(self.bits())?;
        let mut row = vec![false; self.bits()];
        for r in 0..projected.nrows() {
            for (k, bit) in row.iter_mut().enumerate() {
                // The same rule as for network outputs: bit = value > 0.
                *bit = projected[(r, k)] > 0.0;
            }
            codes.push_bools(&row)?;
        }
        Ok(codes)
    }
}

/// Standard normal samples (Box–Muller) from a seeded ChaCha8 stream: reproducible across
/// platforms, with no extra distribution crate.
pub(crate) struct Gaussian {
    rng: ChaCha8Rng,
    spare: Option<f64>,
}

impl Gaussian {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            spare: None,
        }
    }

    fn uniform_open(&mut self) -> f64 {
        // 53 random bits mapped to (0, 1]: ln() never sees 0.
        ((self.rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    pub(crate) fn sample(&mut self) -> f64 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        let (u1, u2) = (self.uniform_open(), self.uniform_open());
        let radius = (-2.0 * u1.ln()).sqrt();
        let angle = std::f64::consts::TAU * u2;
        self.spare = Some(radius * angle.sin());
        radius * angle.cos()
    }

    pub(crate) fn uniform_index(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n.max(1) as u64) as usize
    }
}

fn check_fit_input(
    features: &FeatureMatrix,
    bits: usize,
    what: &'static str,
) -> Result<(), EvalError> {
    if bits == 0 {
        return Err(EvalError::ZeroBits);
    }
    if features.rows() == 0 {
        return Err(EvalError::TooFewFeatures {
            what,
            rows: features.rows(),
            cols: features.cols(),
            why: "no feature vectors to fit on",
        });
    }
    Ok(())
}

/// LSH: K random Gaussian directions through the database mean (sign random projections,
/// Charikar 2002). Centring first matters: backbone features after ReLU are all positive, and
/// hyperplanes through the origin would then put most items on the same side.
pub fn lsh(features: &FeatureMatrix, bits: usize, seed: u64) -> Result<LinearHash, EvalError> {
    check_fit_input(features, bits, "LSH")?;
    let mut gaussian = Gaussian::new(seed);
    let projection = DMatrix::from_fn(features.cols(), bits, |_, _| gaussian.sample());
    Ok(LinearHash {
        mean: features.mean(),
        projection,
    })
}

/// Principal components of a feature set, largest variance first.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    mean: Vec<f64>,
    /// D × M, unit columns, in order of decreasing eigenvalue.
    components: DMatrix<f64>,
    /// Variance along each component.
    pub eigenvalues: Vec<f64>,
}

impl Pca {
    /// The first `components` principal directions of `features` (eigenvectors of the covariance).
    /// Fit once at the longest K and reuse for shorter codes: the eigensolve is the costly part.
    pub fn fit(features: &FeatureMatrix, components: usize) -> Result<Self, EvalError> {
        check_fit_input(features, components, "PCA")?;
        if features.rows() < 2 || components > features.cols() {
            return Err(EvalError::TooFewFeatures {
                what: "PCA",
                rows: features.rows(),
                cols: features.cols(),
                why: "PCA to K dimensions needs at least 2 vectors and K ≤ D",
            });
        }
        let mean = features.mean();
        let centred = features.centred(&mean);
        let covariance = centred.tr_mul(&centred) / features.rows() as f64;
        let eigen = SymmetricEigen::try_new(covariance, f64::EPSILON, 0).ok_or(
            EvalError::Linalg("the covariance eigensolver did not converge"),
        )?;
        let mut order: Vec<usize> = (0..eigen.eigenvalues.len()).collect();
        order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
        order.truncate(components);
        let components_matrix = DMatrix::from_fn(features.cols(), components, |r, c| {
            eigen.eigenvectors[(r, order[c])]
        });
        Ok(Self {
            mean,
            components: components_matrix,
            eigenvalues: order.iter().map(|&i| eigen.eigenvalues[i]).collect(),
        })
    }

    pub fn components(&self) -> usize {
        self.components.ncols()
    }

    /// The first `k` components as a D × k matrix.
    fn leading(&self, k: usize) -> DMatrix<f64> {
        self.components.columns(0, k).into_owned()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItqOptions {
    /// Alternations of B = sign(VR) and the Procrustes rotation; 50 in Gong & Lazebnik.
    pub iterations: usize,
    /// Seeds the random initial rotation.
    pub seed: u64,
}

impl Default for ItqOptions {
    fn default() -> Self {
        Self {
            iterations: 50,
            seed: 0,
        }
    }
}

/// A fitted ITQ hash and how its quantisation loss went.
#[derive(Debug, Clone, PartialEq)]
pub struct Itq {
    pub hash: LinearHash,
    /// K × K orthogonal rotation applied after PCA.
    pub rotation: DMatrix<f64>,
    /// ‖B − VR‖²_F after each iteration's rotation update (non-increasing).
    pub loss_history: Vec<f64>,
}

/// ITQ on `features`: PCA to `bits` dimensions, then rotation learning.
pub fn itq(features: &FeatureMatrix, bits: usize, options: &ItqOptions) -> Result<Itq, EvalError> {
    let pca = Pca::fit(features, bits)?;
    itq_with_pca(features, &pca, bits, options)
}

/// ITQ reusing a PCA fitted on the same features with at least `bits` components.
pub fn itq_with_pca(
    features: &FeatureMatrix,
    pca: &Pca,
    bits: usize,
    options: &ItqOptions,
) -> Result<Itq, EvalError> {
    check_fit_input(features, bits, "ITQ")?;
    if bits > pca.components() || features.cols() != pca.components.nrows() {
        return Err(EvalError::InvalidOption {
            what: "ITQ bits",
            value: bits.to_string(),
            why: "more bits than PCA components, or PCA fitted on features of another width",
        });
    }
    let w = pca.leading(bits);
    let v = features.centred(&pca.mean) * &w;

    // Random orthogonal start, as in the authors' code: the left singular vectors of a Gaussian
    // matrix.
    let mut gaussian = Gaussian::new(options.seed);
    let start = DMatrix::from_fn(bits, bits, |_, _| gaussian.sample());
    let mut rotation = SVD::try_new(start, true, false, f64::EPSILON, 0)
        .and_then(|svd| svd.u)
        .ok_or(EvalError::Linalg(
            "SVD of the random start did not converge",
        ))?;

    let mut loss_history = Vec::with_capacity(options.iterations);
    for _ in 0..options.iterations {
        let z = &v * &rotation;
        // sign() with 0 ↦ +1, as the authors' code (`UX(Z >= 0) = 1`).
        let b = z.map(|x| if x >= 0.0 { 1.0 } else { -1.0 });
        // Orthogonal Procrustes: with BᵀV = U Σ Wᵀ, R = W Uᵀ minimises ‖B − VR‖_F.
        let c = b.tr_mul(&v);
        let svd = SVD::try_new(c, true, true, f64::EPSILON, 0).ok_or(EvalError::Linalg(
            "SVD in the ITQ rotation step did not converge",
        ))?;
        let (Some(u), Some(w_t)) = (svd.u, svd.v_t) else {
            return Err(EvalError::Linalg("SVD returned no singular vectors"));
        };
        rotation = w_t.transpose() * u.transpose();
        loss_history.push((&b - &v * &rotation).norm_squared());
    }

    Ok(Itq {
        hash: LinearHash {
            mean: pca.mean.clone(),
            projection: w * &rotation,
        },
        rotation,
        loss_history,
    })
}

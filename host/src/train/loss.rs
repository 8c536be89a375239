//! The DHCNN loss (Song, Li & Benediktsson 2021) as the authors' code computes it; the method and
//! its two published variants are described in `docs/dhcnn.md`.
//!
//! For a minibatch of hash-layer outputs `u` (B×K) and a memory bank `U` (N×K) holding the latest
//! output of every training image:
//! - pairwise likelihood `L_p = Σ_ij softplus(Θ_ij) − S_ij Θ_ij`, with `Θ = u Uᵀ / s` and `S_ij`
//!   1 when images i and j share a label — the negative log-likelihood of the similarities,
//!   written with softplus so large |Θ| neither overflows nor loses precision;
//! - quantisation `L_q = β Σ_i ‖sign(u_i) − u_i‖²`;
//! - both divided by B·N;
//! - cross-entropy `L_c` of the classifier on top of `u`.
//!
//! The authors' MatConvNet code does not back-propagate the autodiff gradient of `L_p`: it writes
//! `dJ/du = (σ(Θ) − S)·U + 2β(u − sign u)` by hand, without the `1/s` that autodiff of `Θ/s`
//! brings. [`PairwiseGradient::Authors`] (the default) reproduces that gradient; the loss
//! *values* reported are the same either way.
//!
//! [`Objective`] also holds the DeepHash-pytorch set the retrieval benchmark compares DHCNN with
//! (HashNet, CSQ, GreedyHash), each as that code writes it except where its doc says.

use tch::{Kind, Reduction, Tensor};

/// How the pairwise, quantisation and classification terms are weighted.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Combination {
    /// The MatConvNet code (the paper's): the backbone and hash layer get
    /// `η·∇(L_p + L_q) + (1 − η)·∇L_c`, the classifier only `∇L_c`.
    MatConvNet { eta: f64, beta: f64 },
    /// The PyTorch port: `(1 − η)(L_p + λ·L_q) + η·L_c` for every parameter.
    PyTorchPort { eta: f64, lambda: f64 },
}

impl Default for Combination {
    fn default() -> Self {
        Self::MatConvNet {
            eta: 0.2,
            beta: 25.0,
        }
    }
}

/// Which gradient the pairwise term sends back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairwiseGradient {
    /// `(σ(Θ) − S)·U / (B·N)`: the MatConvNet code's hand-written gradient, `s` times autodiff's.
    /// With it the paper's β and η mean what they mean in the paper.
    #[default]
    Authors,
    /// `(σ(Θ) − S)·U / (s·B·N)`: plain autodiff of `L_p`, what a framework port computes; the
    /// pairwise term then pushes `s` (32) times less than in the paper.
    Autodiff,
}

/// What the hash layer is trained to do. Every objective's code is `u > 0`, so a model trained
/// under any of them exports and runs on the board the same way.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Objective {
    /// DHCNN's (and DPSH's) pairwise likelihood against the memory bank, quantisation and
    /// cross-entropy, weighted by [`LossConfig::combination`].
    #[default]
    PairwiseLikelihood,
    /// HashNet (Cao et al. 2017): the likelihood of `α·tanh(c·u)·tanh(c·U)ᵀ`, similar and
    /// dissimilar pairs reweighted to equal total weight, and the continuation
    /// `c = √(1 + ⌊epoch / continuation_epochs⌋)` that sharpens tanh towards sign. Against the
    /// memory bank, like DPSH and DHCNN here (DeepHash-pytorch pairs the batch with itself).
    HashNet {
        alpha: f64,
        continuation_epochs: usize,
    },
    /// CSQ (Yuan et al. 2020): binary cross-entropy between `tanh u` and the label's hash centre
    /// (a row of a Hadamard matrix, [`hash_centres`]) plus `λ·mean((|tanh u| − 1)²)`.
    Csq { lambda: f64 },
    /// GreedyHash (Su et al. 2018): the classifier reads `sign u` in the forward pass and passes
    /// its gradient straight through to `u`; `α·mean(| |u| − 1 |³)` pulls `u` towards ±1.
    GreedyHash { alpha: f64 },
}

impl Objective {
    /// Whether the classifier reads the code's signs (GreedyHash) rather than `u` itself.
    pub fn classifies_signs(self) -> bool {
        matches!(self, Self::GreedyHash { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossConfig {
    /// Θ = uᵀv / scale: 32 in the paper's code, 2 for DPSH.
    pub scale: f64,
    pub combination: Combination,
    pub pairwise_gradient: PairwiseGradient,
    /// Checkpoints from before the field existed trained DHCNN's objective.
    #[serde(default)]
    pub objective: Objective,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            scale: 32.0,
            combination: Combination::default(),
            pairwise_gradient: PairwiseGradient::default(),
            objective: Objective::default(),
        }
    }
}

/// The terms of one step's loss; `total` is what is back-propagated.
#[derive(Debug)]
pub struct LossTerms {
    pub total: Tensor,
    /// The term that keeps similar images' codes close: the pairwise likelihood (DHCNN, DPSH,
    /// HashNet) or the cross-entropy to the hash centres (CSQ).
    pub pairwise: f64,
    pub quantisation: f64,
    pub classification: f64,
}

impl LossTerms {
    fn of(
        total: Tensor,
        pairwise: &Tensor,
        quantisation: &Tensor,
        classification: &Tensor,
    ) -> Self {
        Self {
            pairwise: pairwise.double_value(&[]),
            quantisation: quantisation.double_value(&[]),
            classification: classification.double_value(&[]),
            total,
        }
    }
}

/// What one training step's loss reads besides the batch's hash-layer outputs.
pub struct StepInputs<'a> {
    pub labels: &'a Tensor,
    pub bank_codes: &'a Tensor,
    pub bank_labels: &'a Tensor,
    /// Class logits from hash-layer outputs; `None` trains without a classifier.
    pub classify: Option<&'a dyn Fn(&Tensor) -> Tensor>,
    /// One row per class (CSQ's targets); `None` for the other objectives.
    pub centres: Option<&'a Tensor>,
    /// The epoch, from 0 (HashNet's continuation).
    pub epoch: usize,
}

/// The step's loss under `config.objective`.
pub fn training_loss(codes: &Tensor, inputs: &StepInputs<'_>, config: &LossConfig) -> LossTerms {
    match config.objective {
        Objective::PairwiseLikelihood => dhcnn_loss(
            codes,
            inputs.labels,
            inputs.bank_codes,
            inputs.bank_labels,
            config,
            inputs.classify,
        ),
        Objective::HashNet {
            alpha,
            continuation_epochs,
        } => {
            let sharpness = (1.0 + (inputs.epoch / continuation_epochs.max(1)) as f64).sqrt();
            let pairwise = hashnet_likelihood(
                &(codes * sharpness).tanh(),
                inputs.labels,
                &(inputs.bank_codes * sharpness).tanh(),
                inputs.bank_labels,
                alpha,
            );
            let zero = zero_like(codes);
            LossTerms::of(pairwise.shallow_clone(), &pairwise, &zero, &zero)
        }
        Objective::Csq { lambda } => {
            // The centres depend only on the class index, so the ones built here for the bank's
            // classes are the ones a caller caches.
            let built;
            let centres = match inputs.centres {
                Some(centres) => centres,
                None => {
                    let classes = inputs.bank_labels.max().int64_value(&[]) + 1;
                    built = hash_centres(
                        classes.max(1) as usize,
                        codes.size()[1] as usize,
                        codes.device(),
                    );
                    &built
                }
            };
            let (centre, quantised) = csq_terms(codes, &centres.index_select(0, inputs.labels));
            let quantisation_term = quantised * lambda;
            let total = &centre + &quantisation_term;
            LossTerms::of(total, &centre, &quantisation_term, &zero_like(codes))
        }
        Objective::GreedyHash { alpha } => {
            // sign in the forward pass, the identity's gradient on the way back.
            let signs = codes + (codes.sign() - codes).detach();
            let classification = match inputs.classify {
                Some(classify) => classify(&signs).cross_entropy_for_logits(inputs.labels),
                None => zero_like(codes),
            };
            let quantisation_term = (codes.abs() - 1.0)
                .pow_tensor_scalar(3)
                .abs()
                .mean(codes.kind())
                * alpha;
            let total = &classification + &quantisation_term;
            LossTerms::of(
                total,
                &zero_like(codes),
                &quantisation_term,
                &classification,
            )
        }
    }
}

fn zero_like(codes: &Tensor) -> Tensor {
    Tensor::zeros([], (codes.kind(), codes.device()))
}

/// HashNet's weighted likelihood of the pairs (batch × bank) of tanh codes: the mean over similar
/// pairs plus the mean over dissimilar ones, each of `softplus(α·⟨u, v⟩) − S·α·⟨u, v⟩` (the
/// reference's `S/S1`, `S/S0` weights, then the sum over `S`, up to a factor 2 when both kinds
/// occur).
pub fn hashnet_likelihood(
    codes: &Tensor,
    labels: &Tensor,
    bank_codes: &Tensor,
    bank_labels: &Tensor,
    alpha: f64,
) -> Tensor {
    let inner = codes.matmul(&bank_codes.tr()) * alpha;
    let similar = similarity(labels, bank_labels, codes.kind());
    let dissimilar = similar.ones_like() - &similar;
    let likelihood = inner.softplus() - &similar * &inner;
    let kind = codes.kind();
    // max(·, 1): a batch with no similar (or no dissimilar) pair contributes nothing of that kind.
    let mean_over = |mask: &Tensor| (&likelihood * mask).sum(kind) / mask.sum(kind).clamp_min(1.0);
    mean_over(&similar) + mean_over(&dissimilar)
}

/// CSQ's centre cross-entropy and quantisation term for outputs `u` and their centres (±1).
/// `BCE((tanh u + 1)/2, (c + 1)/2)` is computed as the BCE of logits `2u`, which is the same
/// function without the log of a rounded-to-zero probability.
fn csq_terms(codes: &Tensor, centres: &Tensor) -> (Tensor, Tensor) {
    let targets = (centres + 1.0) * 0.5;
    let centre = (codes * 2.0).binary_cross_entropy_with_logits::<Tensor>(
        &targets,
        None,
        None,
        Reduction::Mean,
    );
    let quantised = (codes.tanh().abs() - 1.0).square().mean(codes.kind());
    (centre, quantised)
}

/// CSQ's hash centres, one ±1 row of `bits` per class: the rows of the Sylvester Hadamard matrix
/// `H` and then of `−H` (pairwise `bits/2` apart, or `bits` for a row and its negation), as the
/// reference builds them. Where `bits` is not a power of two, or there are more than `2·bits`
/// classes, the remaining centres are random with half their bits −1 (seeded, so a run is
/// reproducible), as the reference does past `2·bits`.
pub fn hash_centres(classes: usize, bits: usize, device: tch::Device) -> Tensor {
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    let hadamard_rows = if bits.is_power_of_two() { 2 * bits } else { 0 };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(bits as u64);
    let mut values = Vec::with_capacity(classes * bits);
    for class in 0..classes {
        if class < hadamard_rows {
            let (row, sign) = (class % bits, if class < bits { 1.0 } else { -1.0 });
            // Sylvester: H[i][j] = (−1)^popcount(i & j).
            values.extend((0..bits).map(|column| {
                let parity = (row & column).count_ones() % 2;
                sign * if parity == 0 { 1.0f32 } else { -1.0 }
            }));
        } else {
            let mut row: Vec<f32> = (0..bits)
                .map(|j| if j < bits / 2 { -1.0 } else { 1.0 })
                .collect();
            // Fisher–Yates; the modulo's bias is below 2⁻²⁴ at these lengths.
            for i in (1..bits).rev() {
                row.swap(i, rng.next_u32() as usize % (i + 1));
            }
            values.extend(row);
        }
    }
    Tensor::from_slice(&values)
        .view([classes as i64, bits as i64])
        .to_device(device)
}

/// `S_ij`: 1 where batch sample i and bank sample j share the label, else 0.
fn similarity(labels: &Tensor, bank_labels: &Tensor, kind: Kind) -> Tensor {
    labels
        .unsqueeze(1)
        .eq_tensor(&bank_labels.unsqueeze(0))
        .to_kind(kind)
}

/// `Σ_ij softplus(Θ_ij) − S_ij Θ_ij` over the batch × bank, divided by B·N.
pub fn pairwise_likelihood(
    codes: &Tensor,
    labels: &Tensor,
    bank_codes: &Tensor,
    bank_labels: &Tensor,
    scale: f64,
) -> Tensor {
    let theta = codes.matmul(&bank_codes.tr()) / scale;
    let similar = similarity(labels, bank_labels, codes.kind());
    let pairs = (theta.size()[0] * theta.size()[1]) as f64;
    (theta.softplus() - similar * &theta).sum(codes.kind()) / pairs
}

/// `Σ_i ‖sign(u_i) − u_i‖²` divided by B·N (the same normalisation as the pairwise term).
pub fn quantisation(codes: &Tensor, bank_size: i64) -> Tensor {
    let pairs = (codes.size()[0] * bank_size) as f64;
    (codes.sign().detach() - codes).square().sum(codes.kind()) / pairs
}

/// Passes `xs` forward unchanged and scales its gradient by `factor` on the way back.
pub(crate) fn scale_gradient(xs: &Tensor, factor: f64) -> Tensor {
    xs * factor + xs.detach() * (1.0 - factor)
}

/// The whole DHCNN loss. `classify` maps hash-layer outputs to class logits (the classifier on
/// top of the hash layer); `None` trains without a classifier (DPSH).
pub fn dhcnn_loss(
    codes: &Tensor,
    labels: &Tensor,
    bank_codes: &Tensor,
    bank_labels: &Tensor,
    config: &LossConfig,
    classify: Option<&dyn Fn(&Tensor) -> Tensor>,
) -> LossTerms {
    let bank_size = bank_codes.size()[0];
    let pairwise = pairwise_likelihood(codes, labels, bank_codes, bank_labels, config.scale);
    let pairwise = match config.pairwise_gradient {
        PairwiseGradient::Authors => scale_gradient(&pairwise, config.scale),
        PairwiseGradient::Autodiff => pairwise,
    };
    let quantised = quantisation(codes, bank_size);
    let classification_of = |input: &Tensor| match classify {
        Some(classify) => classify(input).cross_entropy_for_logits(labels),
        None => Tensor::zeros([], (Kind::Float, codes.device())),
    };
    let (total, classification, quantisation_term) = match config.combination {
        Combination::MatConvNet { eta, beta } => {
            // The classifier sees unscaled codes in the forward pass; only the gradient that
            // flows back into the hash layer is scaled by (1 − η).
            let classification = classification_of(&scale_gradient(codes, 1.0 - eta));
            let quantisation_term = &quantised * beta;
            let total = (&pairwise + &quantisation_term) * eta + &classification;
            (total, classification, quantisation_term)
        }
        Combination::PyTorchPort { eta, lambda } => {
            let classification = classification_of(codes);
            let quantisation_term = &quantised * lambda;
            let total = (&pairwise + &quantisation_term) * (1.0 - eta) + &classification * eta;
            (total, classification, quantisation_term)
        }
    };
    LossTerms::of(total, &pairwise, &quantisation_term, &classification)
}

/// Mean cross-entropy, for callers that train a classifier alone (η = 0).
pub fn classification_only(logits: &Tensor, labels: &Tensor) -> Tensor {
    logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, -100, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn tensor(values: &[f32], shape: &[i64]) -> Tensor {
        Tensor::from_slice(values).view(shape)
    }

    #[test]
    fn pairwise_term_matches_a_hand_computation() {
        crate::torch::init_for_tests();
        // One code against a bank of two: Θ = (u·v)/2 = (2, -1); S = (1, 0).
        let codes = tensor(&[1.0, 1.0], &[1, 2]);
        let bank = tensor(&[2.0, 2.0, -1.0, -1.0], &[2, 2]);
        let labels = Tensor::from_slice(&[3i64]);
        let bank_labels = Tensor::from_slice(&[3i64, 4]);
        let loss = pairwise_likelihood(&codes, &labels, &bank, &bank_labels, 2.0);
        // (ln(1+e²) − 2 + ln(1+e⁻¹) − 0) / 2
        let expected = ((1.0 + 2f64.exp()).ln() - 2.0 + (1.0 + (-1f64).exp()).ln()) / 2.0;
        assert!((loss.double_value(&[]) - expected).abs() < 1e-6);
    }

    #[test]
    fn pairwise_term_stays_finite_for_huge_inner_products() {
        crate::torch::init_for_tests();
        let codes = tensor(&[1000.0, 1000.0], &[1, 2]);
        let bank = tensor(&[1000.0, 1000.0, -1000.0, -1000.0], &[2, 2]);
        let labels = Tensor::from_slice(&[0i64]);
        let bank_labels = Tensor::from_slice(&[0i64, 1]);
        let loss = pairwise_likelihood(&codes, &labels, &bank, &bank_labels, 2.0);
        let value = loss.double_value(&[]);
        // Similar pair: softplus(1e6) − 1e6 = 0; dissimilar: softplus(−1e6) = 0.
        assert!(value.is_finite() && value.abs() < 1e-3, "{value}");
    }

    #[test]
    fn quantisation_term_is_the_distance_to_the_sign() {
        crate::torch::init_for_tests();
        let codes = tensor(&[0.5, -2.0], &[1, 2]);
        // (1 − 0.5)² + (−1 + 2)² = 1.25, over B·N = 1·4.
        assert!((quantisation(&codes, 4).double_value(&[]) - 1.25 / 4.0).abs() < 1e-7);
    }

    #[test]
    fn matconvnet_weighting_gives_the_classifier_the_full_gradient() {
        crate::torch::init_for_tests();
        let codes = tensor(&[0.3, -0.7], &[1, 2]).set_requires_grad(true);
        let weight = tensor(&[1.0, 0.0, 0.0, 1.0], &[2, 2]).set_requires_grad(true);
        let labels = Tensor::from_slice(&[0i64]);
        let bank = codes.detach();
        let classify = |u: &Tensor| u.matmul(&weight.tr());
        let config = LossConfig {
            scale: 2.0,
            combination: Combination::MatConvNet {
                eta: 0.2,
                beta: 0.0,
            },
            pairwise_gradient: PairwiseGradient::Autodiff,
            objective: Objective::PairwiseLikelihood,
        };
        let terms = dhcnn_loss(&codes, &labels, &bank, &labels, &config, Some(&classify));
        terms.total.backward();
        // Reference gradients of L_c alone.
        let reference_codes = codes.detach().set_requires_grad(true);
        let reference_weight = weight.detach().set_requires_grad(true);
        reference_codes
            .matmul(&reference_weight.tr())
            .cross_entropy_for_logits(&labels)
            .backward();
        let classifier_gap = (weight.grad() - reference_weight.grad()).abs().max();
        assert!(classifier_gap.double_value(&[]) < 1e-7);
        // The hash layer's share of ∇L_c is scaled by 1 − η = 0.8 (plus η·∇L_p).
        let pairwise_codes = codes.detach().set_requires_grad(true);
        (pairwise_likelihood(&pairwise_codes, &labels, &bank, &labels, 2.0) * 0.2).backward();
        let expected = reference_codes.grad() * 0.8 + pairwise_codes.grad();
        let code_gap = (codes.grad() - expected).abs().max();
        assert!(code_gap.double_value(&[]) < 1e-6);
        assert_eq!(codes.device(), Device::Cpu);
    }

    #[test]
    fn the_authors_gradient_is_scale_times_autodiff_with_the_same_value() {
        crate::torch::init_for_tests();
        let bank = tensor(&[0.5, -1.0, 2.0, 0.25, -0.75, 1.5], &[3, 2]);
        let labels = Tensor::from_slice(&[1i64]);
        let bank_labels = Tensor::from_slice(&[1i64, 0, 1]);
        let run = |gradient: PairwiseGradient| {
            let codes = tensor(&[0.3, -0.7], &[1, 2]).set_requires_grad(true);
            let config = LossConfig {
                scale: 32.0,
                combination: Combination::MatConvNet {
                    eta: 1.0,
                    beta: 0.0,
                },
                pairwise_gradient: gradient,
                objective: Objective::PairwiseLikelihood,
            };
            let terms = dhcnn_loss(&codes, &labels, &bank, &bank_labels, &config, None);
            terms.total.backward();
            (terms.total.double_value(&[]), codes.grad())
        };
        let (authors_value, authors_grad) = run(PairwiseGradient::Authors);
        let (autodiff_value, autodiff_grad) = run(PairwiseGradient::Autodiff);
        // Equal up to f32 rounding of `32·L − 31·L`.
        assert!((authors_value - autodiff_value).abs() < 1e-5 * autodiff_value.abs().max(1.0));
        let gap = (authors_grad - autodiff_grad * 32.0).abs().max();
        assert!(gap.double_value(&[]) < 1e-6);
        // The hand-written gradient of the MatConvNet code: (σ(Θ) − S)·U over B·N.
        let codes = tensor(&[0.3, -0.7], &[1, 2]);
        let theta = codes.matmul(&bank.tr()) / 32.0;
        let similar = tensor(&[1.0, 0.0, 1.0], &[1, 3]);
        let expected = (theta.sigmoid() - similar).matmul(&bank) / 3.0;
        let (_, grad) = run(PairwiseGradient::Authors);
        assert!((grad - expected).abs().max().double_value(&[]) < 1e-6);
    }

    #[test]
    fn hash_centres_are_hadamard_rows_then_balanced_random_rows() {
        crate::torch::init_for_tests();
        let centres = hash_centres(40, 16, Device::Cpu);
        assert_eq!(centres.size(), [40, 16]);
        let gram = centres.matmul(&centres.tr());
        for i in 0..32i64 {
            for j in 0..32i64 {
                let expected = if i == j {
                    16.0
                } else if (i - j).abs() == 16 {
                    -16.0
                } else {
                    0.0
                };
                assert_eq!(gram.double_value(&[i, j]), expected, "rows {i}, {j}");
            }
        }
        // Past 2·bits, and for a length that is not a power of two: half the bits −1.
        for row in 32..40 {
            assert_eq!(centres.get(row).sum(Kind::Float).double_value(&[]), 0.0);
        }
        let odd = hash_centres(3, 48, Device::Cpu);
        assert_eq!(
            odd.sum_dim_intlist(1, false, Kind::Float)
                .abs()
                .sum(Kind::Float)
                .double_value(&[]),
            0.0
        );
        assert!(
            odd.get(0)
                .not_equal_tensor(&odd.get(1))
                .any()
                .int64_value(&[])
                == 1
        );
        assert_eq!(hash_centres(3, 48, Device::Cpu), odd, "seeded");
    }

    #[test]
    fn hashnet_weighs_similar_and_dissimilar_pairs_equally() {
        crate::torch::init_for_tests();
        // One code against a bank of three: inner products 2, 1, −1 at α 1; the first pair
        // similar, the other two not.
        let codes = tensor(&[1.0, 1.0], &[1, 2]);
        let bank = tensor(&[1.0, 1.0, 1.0, 0.0, -1.0, 0.0], &[3, 2]);
        let labels = Tensor::from_slice(&[0i64]);
        let bank_labels = Tensor::from_slice(&[0i64, 1, 2]);
        let loss = hashnet_likelihood(&codes, &labels, &bank, &bank_labels, 1.0);
        let softplus = |x: f64| (1.0 + x.exp()).ln();
        let expected = (softplus(2.0) - 2.0) + (softplus(1.0) + softplus(-1.0)) / 2.0;
        assert!((loss.double_value(&[]) - expected).abs() < 1e-6);
    }

    #[test]
    fn csq_cross_entropy_is_that_of_the_tanh_probabilities() {
        crate::torch::init_for_tests();
        let codes = tensor(&[0.3, -1.2, 2.0, 0.1], &[2, 2]);
        let centres = tensor(&[1.0, -1.0, -1.0, 1.0], &[2, 2]);
        let (centre, quantised) = csq_terms(&codes, &centres);
        let probability = (codes.tanh() + 1.0) * 0.5;
        let target = (&centres + 1.0) * 0.5;
        let reference = -(&target * probability.log()
            + (target.ones_like() - &target) * (probability.ones_like() - &probability).log())
        .mean(Kind::Float);
        assert!((centre.double_value(&[]) - reference.double_value(&[])).abs() < 1e-6);
        let reference_q = (codes.tanh().abs() - 1.0).square().mean(Kind::Float);
        assert!((quantised - reference_q).abs().double_value(&[]) < 1e-7);
    }

    #[test]
    fn greedy_hash_classifies_signs_and_passes_the_gradient_straight_through() {
        crate::torch::init_for_tests();
        let codes = tensor(&[0.3, -0.7], &[1, 2]).set_requires_grad(true);
        let weight = tensor(&[1.0, 2.0, -1.0, 0.5], &[2, 2]);
        let labels = Tensor::from_slice(&[1i64]);
        let classify = |u: &Tensor| u.matmul(&weight.tr());
        let config = LossConfig {
            objective: Objective::GreedyHash { alpha: 0.0 },
            ..LossConfig::default()
        };
        let bank = codes.detach();
        let inputs = StepInputs {
            labels: &labels,
            bank_codes: &bank,
            bank_labels: &labels,
            classify: Some(&classify),
            centres: None,
            epoch: 0,
        };
        let terms = training_loss(&codes, &inputs, &config);
        terms.total.backward();
        // The forward pass saw (1, −1); the gradient is cross-entropy's at (1, −1).
        let signs = tensor(&[1.0, -1.0], &[1, 2]).set_requires_grad(true);
        let reference = classify(&signs).cross_entropy_for_logits(&labels);
        assert!((terms.total.double_value(&[]) - reference.double_value(&[])).abs() < 1e-6);
        reference.backward();
        assert!((codes.grad() - signs.grad()).abs().max().double_value(&[]) < 1e-7);
    }
}

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

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossConfig {
    /// Θ = uᵀv / scale: 32 in the paper's code, 2 for DPSH.
    pub scale: f64,
    pub combination: Combination,
    pub pairwise_gradient: PairwiseGradient,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            scale: 32.0,
            combination: Combination::default(),
            pairwise_gradient: PairwiseGradient::default(),
        }
    }
}

/// The terms of one step's loss; `total` is what is back-propagated.
#[derive(Debug)]
pub struct LossTerms {
    pub total: Tensor,
    pub pairwise: f64,
    pub quantisation: f64,
    pub classification: f64,
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
    let similar = labels
        .unsqueeze(1)
        .eq_tensor(&bank_labels.unsqueeze(0))
        .to_kind(codes.kind());
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
    LossTerms {
        pairwise: pairwise.double_value(&[]),
        quantisation: quantisation_term.double_value(&[]),
        classification: classification.double_value(&[]),
        total,
    }
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
}

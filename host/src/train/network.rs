//! DHCNN: backbone -> hash layer (linear, K outputs, no activation) -> classifier on the hash
//! layer. The backbone and the head live in two variable stores so that the backbone's variable
//! names match its pretrained checkpoint exactly, and a frozen backbone is simply left out of the
//! optimiser.

use tch::nn::{self, Init};
use tch::{Device, Tensor};

use crate::model::backbone::{Backbone, BackboneKind};

/// Code lengths DHCNN trains; the wire format carries 16 to 256.
pub const SUPPORTED_BITS: [i64; 5] = [16, 32, 48, 64, 128];

/// The hash layer and classifier of the paper, both initialised N(0, 0.01²).
#[derive(Debug)]
pub struct Head {
    hash: nn::Linear,
    classifier: nn::Linear,
}

impl Head {
    pub fn new(root: &nn::Path, features: i64, bits: i64, classes: i64) -> Self {
        let config = nn::LinearConfig {
            ws_init: Init::Randn {
                mean: 0.0,
                stdev: 0.01,
            },
            bs_init: Some(Init::Const(0.0)),
            bias: true,
        };
        Self {
            hash: nn::linear(root / "hash", features, bits, config),
            classifier: nn::linear(root / "classifier", bits, classes, config),
        }
    }

    /// Hash-layer outputs u (pre-sign): the code is `u > 0`.
    pub fn hash(&self, features: &Tensor) -> Tensor {
        features.apply(&self.hash)
    }

    /// Class logits from hash-layer outputs.
    pub fn classify(&self, codes: &Tensor) -> Tensor {
        codes.apply(&self.classifier)
    }
}

/// The whole network with its two stores.
pub struct Dhcnn {
    pub backbone_store: nn::VarStore,
    pub head_store: nn::VarStore,
    pub backbone: Backbone,
    pub head: Head,
    pub bits: i64,
    pub classes: i64,
}

impl Dhcnn {
    /// DHCNN on `channels` input bands (the input spec's channel count).
    pub fn new(
        kind: BackboneKind,
        bits: i64,
        classes: i64,
        channels: usize,
        device: Device,
    ) -> anyhow::Result<Self> {
        let backbone_store = nn::VarStore::new(device);
        let head_store = nn::VarStore::new(device);
        let backbone = Backbone::new(&backbone_store.root(), kind, channels)?;
        let head = Head::new(&head_store.root(), kind.feature_size(), bits, classes);
        Ok(Self {
            backbone_store,
            head_store,
            backbone,
            head,
            bits,
            classes,
        })
    }

    /// Hash-layer outputs and class logits of a normalised image batch.
    pub fn forward_t(&self, images: &Tensor, train: bool) -> (Tensor, Tensor) {
        let codes = self.head.hash(&self.backbone.features_t(images, train));
        let logits = self.head.classify(&codes);
        (codes, logits)
    }
}

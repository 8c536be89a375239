//! What several ground test files need.

use orbhash_contract::card::{CardFormat, ModelCard, Precision, TileSpec, Training};
use orbhash_contract::input::InputSpec;
use orbhash_wire::ModelId;

/// The model id `synthetic_stream` writes.
pub const MODEL: ModelId = ModelId(*b"benchmrk");

/// A whole, valid card for `model_id` (an f32 RGB model) with these classes.
pub fn card(model_id: ModelId, bits: u16, classes: &[&str]) -> ModelCard {
    ModelCard {
        format: CardFormat,
        model_id,
        bits,
        classes: classes.iter().map(|name| name.to_string()).collect(),
        input: InputSpec::imagenet_rgb(64),
        band_names: vec!["red".into(), "green".into(), "blue".into()],
        tile: TileSpec {
            size: 64,
            stride: 64,
        },
        precision: Precision::F32,
        dataset: "synthetic".into(),
        dataset_manifest_sha256: None,
        training: Training {
            pretrained_sha256: None,
            config: serde_json::Map::new(),
        },
        quantisation: None,
        exporter: "orbhash-ground tests".into(),
    }
}

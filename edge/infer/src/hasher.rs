//! A model and its card, checked against each other, turning tiles into codes and labels.
//!
//! A model is refused unless its card is whole and agrees with its graph: the input shape with
//! the card's band count and size, the `hash` width with K, the `probs` width with the class
//! list, and the model id with the hash of the graph itself (so a card copied onto other weights
//! is caught).

use std::path::Path;

use orbhash_contract::card::{CardError, ModelCard, HASH_OUTPUT, PROBS_OUTPUT};
use orbhash_contract::input::InputError;
use orbhash_contract::raster::RawImage;
use orbhash_wire::{quantise_confidence, Code, CodeError};
use tract_onnx::prelude::Tensor;

use crate::model::{ModelError, OnnxModel};

/// Why a model cannot be used, or a tile not hashed. A variant's message never repeats its
/// source: print the chain (anyhow's `{:#}`) to see the cause.
#[derive(Debug, thiserror::Error)]
pub enum HasherError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{origin}: unusable model card")]
    Card {
        origin: String,
        #[source]
        source: CardError,
    },
    #[error("{origin}: the model contradicts its card: {reason}")]
    Inconsistent { origin: String, reason: String },
    #[error("tile does not fit the model input")]
    Input(#[from] InputError),
    /// `CodeError` is not a `std::error::Error` (the wire crate is `no_std`): said here, once.
    #[error("the model gave a code the wire cannot carry: {0:?}")]
    Code(CodeError),
}

/// One tile's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hashed {
    pub code: Code,
    pub label: u16,
    /// Probability of `label`, quantised as the wire carries it.
    pub confidence: u8,
}

pub struct Hasher {
    model: OnnxModel,
    card: ModelCard,
    hash_slot: usize,
    probs_slot: usize,
}

impl Hasher {
    /// Opens an exported model for batches of `batch` tiles.
    pub fn open(path: &Path, batch: usize) -> Result<Self, HasherError> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, batch, &path.display().to_string())
    }

    pub fn from_bytes(bytes: &[u8], batch: usize, origin: &str) -> Result<Self, HasherError> {
        let model = OnnxModel::from_bytes(bytes, batch, origin)?;
        let card = ModelCard::from_props(model.metadata()).map_err(|source| HasherError::Card {
            origin: origin.to_string(),
            source,
        })?;
        let inconsistent = |reason: String| HasherError::Inconsistent {
            origin: origin.to_string(),
            reason,
        };
        if model.graph_id() != card.model_id {
            return Err(inconsistent(format!(
                "card model id {} but the graph hashes to {}",
                card.model_id,
                model.graph_id()
            )));
        }
        let size = card.input.size as usize;
        let expected = [batch, card.input.channels(), size, size];
        if model.input_shape() != expected {
            return Err(inconsistent(format!(
                "input {:?}, card implies {expected:?}",
                model.input_shape()
            )));
        }
        let slot = |name: &str| {
            model
                .output_names()
                .iter()
                .position(|output| output == name)
                .ok_or_else(|| inconsistent(format!("no `{name}` output")))
        };
        let (hash_slot, probs_slot) = (slot(HASH_OUTPUT)?, slot(PROBS_OUTPUT)?);
        let hasher = Self {
            model,
            card,
            hash_slot,
            probs_slot,
        };
        // One run on a blank batch proves the output widths before any real tile is spent.
        let blank = vec![vec![0.0; hasher.card.input.len()]];
        let (hash, probs) = hasher.run(&blank)?;
        let (bits, classes) = (usize::from(hasher.card.bits), hasher.card.classes.len());
        if hash.len() != bits || probs.len() != classes {
            return Err(inconsistent(format!(
                "outputs of width {} and {}; the card has {bits} bits and {classes} classes",
                hash.len(),
                probs.len()
            )));
        }
        Ok(hasher)
    }

    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// The model itself, for measuring it (see [`OnnxModel::profile`]).
    pub fn model(&self) -> &OnnxModel {
        &self.model
    }

    /// Tiles per inference call.
    pub fn batch(&self) -> usize {
        self.model.input_shape()[0]
    }

    /// A tile (raw samples, any size: it is resized) as model input, exactly as training saw it.
    pub fn preprocess(&self, tile: &RawImage) -> Result<Vec<f32>, HasherError> {
        Ok(self
            .card
            .input
            .to_chw(tile.width, tile.height, tile.bands, &tile.samples)?)
    }

    /// Up to [`Self::batch`] preprocessed tiles as one input tensor; a short last batch is padded
    /// (the padding rows' outputs are dropped by the caller).
    pub fn batch_tensor(&self, inputs: &[Vec<f32>]) -> Result<Tensor, HasherError> {
        let shape = self.model.input_shape();
        let batch = shape[0];
        let per_tile = self.card.input.len();
        if inputs.len() > batch {
            return Err(InputError(format!(
                "{} tiles given to a model prepared for batches of {batch}",
                inputs.len()
            ))
            .into());
        }
        let mut values = Vec::with_capacity(batch * per_tile);
        for input in inputs {
            if input.len() != per_tile {
                return Err(InputError(format!(
                    "preprocessed tile has {} values, the model takes {per_tile}",
                    input.len()
                ))
                .into());
            }
            values.extend_from_slice(input);
        }
        values.resize(batch * per_tile, 0.0);
        Ok(Tensor::from_shape(shape, &values)
            .map_err(|error| ModelError::Run(format!("{error:#}")))?)
    }

    /// Hash activations and probabilities of up to [`Self::batch`] preprocessed tiles, row-major.
    fn run(&self, inputs: &[Vec<f32>]) -> Result<(Vec<f32>, Vec<f32>), HasherError> {
        let batch = self.batch();
        let outputs = self.model.run(self.batch_tensor(inputs)?)?;
        let rows = |slot: usize| -> Result<Vec<f32>, HasherError> {
            let missing = || ModelError::Run(format!("the model gave no output {slot}"));
            let view = outputs
                .get(slot)
                .ok_or_else(missing)?
                .to_plain_array_view::<f32>()
                .map_err(|error| ModelError::Run(format!("{error:#}")))?;
            let all: Vec<f32> = view.iter().copied().collect();
            let per_row = all.len() / batch.max(1);
            Ok(all
                .get(..inputs.len() * per_row)
                .ok_or_else(missing)?
                .to_vec())
        };
        Ok((rows(self.hash_slot)?, rows(self.probs_slot)?))
    }

    /// Hash activations (pre-sign) and class probabilities of preprocessed tiles, any number (run
    /// in batches), row-major: what the code and label are made from, for checking a model.
    pub fn activations(&self, inputs: &[Vec<f32>]) -> Result<(Vec<f32>, Vec<f32>), HasherError> {
        let (mut hash, mut probs) = (Vec::new(), Vec::new());
        for chunk in inputs.chunks(self.batch()) {
            let (chunk_hash, chunk_probs) = self.run(chunk)?;
            hash.extend(chunk_hash);
            probs.extend(chunk_probs);
        }
        Ok((hash, probs))
    }

    /// Codes, labels and confidences of preprocessed tiles, any number (run in batches).
    pub fn hash(&self, inputs: &[Vec<f32>]) -> Result<Vec<Hashed>, HasherError> {
        let bits = usize::from(self.card.bits);
        let classes = self.card.classes.len();
        let (hash, probs) = self.activations(inputs)?;
        hash.chunks(bits)
            .zip(probs.chunks(classes))
            .map(|(activations, probabilities)| {
                let code = Code::from_signs(activations).map_err(HasherError::Code)?;
                let (label, probability) = probabilities
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or((0, 0.0), |(index, p)| (index, *p));
                Ok(Hashed {
                    code,
                    label: label as u16,
                    confidence: quantise_confidence(probability),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_graphs::{f32_tensor, f32_value_info, model, node};
    use orbhash_contract::card::{CardFormat, Precision, TileSpec, Training, CARD_KEY};
    use orbhash_contract::input::{BandScale, InputSpec};
    use orbhash_wire::ModelId;
    use tract_onnx::pb;

    use orbhash_cli::error_chain as chain;

    /// image (N×1×2×2) → flatten → 16 hash activations and 2 class probabilities.
    fn graph() -> pb::GraphProto {
        use pb::tensor_shape_proto::dimension::Value::{DimParam, DimValue};
        let hash: Vec<f32> = (0..64)
            .map(|i| if i % 3 == 0 { 1.0 } else { -0.5 })
            .collect();
        let probs: Vec<f32> = (0..8).map(|i| i as f32 * 0.1).collect();
        pb::GraphProto {
            name: "tiny".into(),
            node: vec![
                node("Flatten", &["image"], "flat"),
                node("MatMul", &["flat", "w_hash"], "hash"),
                node("MatMul", &["flat", "w_probs"], "logits"),
                pb::NodeProto {
                    attribute: vec![pb::AttributeProto {
                        name: "axis".into(),
                        r#type: pb::attribute_proto::AttributeType::Int as i32,
                        i: 1,
                        ..Default::default()
                    }],
                    ..node("Softmax", &["logits"], "probs")
                },
            ],
            initializer: vec![
                f32_tensor("w_hash", &[4, 16], &hash),
                f32_tensor("w_probs", &[4, 2], &probs),
            ],
            input: vec![f32_value_info(
                "image",
                vec![DimParam("N".into()), DimValue(1), DimValue(2), DimValue(2)],
            )],
            output: vec![
                f32_value_info("hash", vec![DimParam("N".into()), DimValue(16)]),
                f32_value_info("probs", vec![DimParam("N".into()), DimValue(2)]),
            ],
            ..Default::default()
        }
    }

    fn card(graph: &pb::GraphProto) -> ModelCard {
        ModelCard {
            format: CardFormat,
            model_id: ModelId::of_model(&prost::Message::encode_to_vec(graph)),
            bits: 16,
            classes: vec!["land".into(), "water".into()],
            input: InputSpec::multispectral(2, vec![0], vec![BandScale::U16]),
            band_names: vec!["B08".into()],
            tile: TileSpec { size: 2, stride: 2 },
            precision: Precision::F32,
            dataset: "tiny".into(),
            dataset_manifest_sha256: None,
            training: Training {
                pretrained_sha256: None,
                config: Default::default(),
            },
            quantisation: None,
            exporter: "test".into(),
        }
    }

    #[test]
    fn a_carded_model_hashes_tiles() {
        let graph = graph();
        let card = card(&graph);
        let bytes = model(graph, card.to_props());
        let hasher = Hasher::from_bytes(&bytes, 2, "tiny.onnx").expect("loads");
        assert_eq!(hasher.card(), &card);
        let tile = RawImage {
            width: 2,
            height: 2,
            bands: 1,
            samples: vec![65535.0; 4],
            georeference: None,
            band_names: None,
        };
        let input = hasher.preprocess(&tile).expect("preprocesses");
        let hashed = hasher
            .hash(&[input.clone(), input.clone(), input])
            .expect("hashes");
        assert_eq!(hashed.len(), 3);
        assert_eq!(hashed[0], hashed[2]);
        // Every pixel at the top of its range: the column sums of `w_hash` decide each bit.
        assert_eq!(hashed[0].code.as_bytes(), &[0b0100_1001, 0b1001_0010]);
    }

    #[test]
    fn a_card_copied_onto_other_weights_is_refused() {
        let graph = graph();
        let mut other = card(&graph);
        other.model_id = ModelId::of_model(b"another graph");
        let bytes = model(graph, other.to_props());
        let error = Hasher::from_bytes(&bytes, 1, "tiny.onnx")
            .err()
            .expect("refused");
        assert!(
            matches!(error, HasherError::Inconsistent { .. }),
            "{}",
            chain(&error)
        );
    }

    #[test]
    fn causes_are_named_once() {
        let error = Hasher::open(Path::new("/nonexistent/model.onnx"), 1)
            .err()
            .expect("fails");
        let text = chain(&error);
        assert_eq!(text.matches("No such file").count(), 1, "{text}");
        assert!(text.contains("/nonexistent/model.onnx"), "{text}");

        let old_card = vec![(CARD_KEY.to_string(), "orbhash-model-card-1".to_string())];
        let error = Hasher::from_bytes(&model(graph(), old_card), 1, "old.onnx")
            .err()
            .expect("refused");
        let text = chain(&error);
        assert_eq!(text.matches("orbhash-model-card-1").count(), 1, "{text}");
        assert!(
            text.starts_with("old.onnx: unusable model card: "),
            "{text}"
        );

        let error = InputSpec::multispectral(2, vec![1], vec![BandScale::U16])
            .to_chw(2, 2, 1, &[0.0; 4])
            .map_err(HasherError::from)
            .expect_err("band 1 missing");
        let text = chain(&error);
        assert_eq!(text.matches("needs band index 1").count(), 1, "{text}");
    }
}

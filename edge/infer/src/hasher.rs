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

#[derive(Debug, thiserror::Error)]
pub enum HasherError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{origin}: {source}")]
    Card { origin: String, source: CardError },
    #[error("{origin}: the model contradicts its card: {reason}")]
    Inconsistent { origin: String, reason: String },
    #[error("tile does not fit the model input: {0}")]
    Input(#[from] InputError),
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
            let view = outputs[slot]
                .to_plain_array_view::<f32>()
                .map_err(|error| ModelError::Run(format!("{error:#}")))?;
            let all: Vec<f32> = view.iter().copied().collect();
            let per_row = all.len() / batch;
            Ok(all[..inputs.len() * per_row].to_vec())
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

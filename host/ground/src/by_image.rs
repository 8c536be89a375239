//! Query by image: the ground hashes a picture with the same exported model the board runs,
//! through the board's own library, so the query code is made exactly as the archived ones were.

use std::path::{Path, PathBuf};

use orbhash_infer::Hasher;
use orbhash_contract::card::ModelCard;
use orbhash_contract::raster::read_image;
use orbhash_wire::Code;

use crate::{GroundError, Result};

/// The codes of `images` under the model in `onnx`, with its card.
pub fn hash_images(onnx: &Path, images: &[PathBuf]) -> Result<(ModelCard, Vec<Code>)> {
    let hasher = Hasher::open(onnx, 1).map_err(|error| GroundError::Search(error.to_string()))?;
    let mut inputs = Vec::with_capacity(images.len());
    for image in images {
        let raw = read_image(image).map_err(|error| GroundError::Search(error.to_string()))?;
        let input = hasher
            .preprocess(&raw)
            .map_err(|error| GroundError::Search(format!("{}: {error}", image.display())))?;
        inputs.push(input);
    }
    let hashed = hasher
        .hash(&inputs)
        .map_err(|error| GroundError::Search(error.to_string()))?;
    Ok((
        hasher.card().clone(),
        hashed.into_iter().map(|h| h.code).collect(),
    ))
}

/// The archive's JSON form of a model card (`classes` in label order, `code_bits`, and the rest
/// for the record).
pub fn card_json(card: &ModelCard) -> String {
    serde_json::json!({
        "model_id": card.model_id.to_string(),
        "code_bits": card.bits,
        "classes": card.classes,
        "precision": card.precision.name(),
        "dataset": card.dataset,
        "tile": { "size": card.tile.size, "stride": card.tile.stride },
        "exporter": card.exporter,
    })
    .to_string()
}

/// Reads the card of an exported model without preparing it for inference twice.
pub fn read_card(onnx: &Path) -> Result<ModelCard> {
    Ok(Hasher::open(onnx, 1)
        .map_err(|error| GroundError::Search(error.to_string()))?
        .card()
        .clone())
}

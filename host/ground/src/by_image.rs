//! Query by image: the ground hashes a picture with the same exported model the board runs,
//! through the board's own library, so the query code is made exactly as the archived ones were.

use std::path::{Path, PathBuf};

use orbhash_contract::card::ModelCard;
use orbhash_contract::raster::read_image;
use orbhash_infer::Hasher;
use orbhash_wire::Code;

use crate::{GroundError, Result};

fn hashing(what: String) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> GroundError {
    move |source| GroundError::Hashing { what, source }
}

fn open(onnx: &Path) -> Result<Hasher> {
    Hasher::open(onnx, 1)
        .map_err(|error| hashing(format!("opening model {}", onnx.display()))(Box::new(error)))
}

/// The codes of `images` under the model in `onnx`, with its card.
pub fn hash_images(onnx: &Path, images: &[PathBuf]) -> Result<(ModelCard, Vec<Code>)> {
    let hasher = open(onnx)?;
    let mut inputs = Vec::with_capacity(images.len());
    for image in images {
        let raw = read_image(image).map_err(|error| {
            hashing(format!("reading image {}", image.display()))(Box::new(error))
        })?;
        let input = hasher.preprocess(&raw).map_err(|error| {
            hashing(format!("preparing image {}", image.display()))(Box::new(error))
        })?;
        inputs.push(input);
    }
    let hashed = hasher.hash(&inputs).map_err(|error| {
        hashing(format!("hashing with model {}", onnx.display()))(Box::new(error))
    })?;
    Ok((
        hasher.card().clone(),
        hashed.into_iter().map(|h| h.code).collect(),
    ))
}

/// Reads the card of an exported model, as the board's library reads it.
pub fn read_card(onnx: &Path) -> Result<ModelCard> {
    Ok(open(onnx)?.card().clone())
}

//! The model card: everything the board and the ground need to use an exported model, carried
//! inside the ONNX file as `metadata_props` (one key per field, prefixed `orbhash.`), so a model
//! file is self-describing and nothing else has to be uplinked with it.
//!
//! | key | value |
//! |---|---|
//! | `orbhash.card` | format version, [`CARD_FORMAT`] |
//! | `orbhash.model_id` | 16 hex digits: [`ModelId::of_model`] of the ONNX `GraphProto` bytes (graph and weights, without the card) |
//! | `orbhash.bits` | K, the code length |
//! | `orbhash.classes` | JSON array of class names, in the order of the `probs` output |
//! | `orbhash.input` | JSON [`InputSpec`]: input size, band order, scaling, normalisation |
//! | `orbhash.band_names` | JSON array: the name of each stored band the input indexes |
//! | `orbhash.tile` | JSON [`TileSpec`]: tile edge and stride in source pixels, for cutting scenes |
//! | `orbhash.precision` | `f32` or `int8` |
//! | `orbhash.dataset` | training data set name |
//! | `orbhash.dataset_manifest_sha256` | SHA-256 of its manifest (empty when it had none) |
//! | `orbhash.training` | JSON training configuration, as the checkpoint recorded it |
//! | `orbhash.exporter` | tool and version that wrote the file |
//!
//! The graph's two outputs are `hash` (K pre-sign activations: the code is `hash > 0`) and `probs`
//! (softmax over the classes).

use std::collections::BTreeMap;
use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, vec};

use serde::{Deserialize, Serialize};

use crate::input::InputSpec;
use orbhash_wire::ModelId;

/// Version of the card layout above.
pub const CARD_FORMAT: &str = "orbhash-model-card-1";
/// Prefix of every card key.
pub const KEY_PREFIX: &str = "orbhash.";
/// Name of the graph output holding the K pre-sign hash activations.
pub const HASH_OUTPUT: &str = "hash";
/// Name of the graph output holding the class probabilities.
pub const PROBS_OUTPUT: &str = "probs";
/// Name of the graph input: a batch of normalised images, N×C×H×W.
pub const IMAGE_INPUT: &str = "image";

/// How a whole scene is cut into tiles for this model, in source pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileSpec {
    /// Edge of a square tile as cut from the scene (before resizing to the input size).
    pub size: u32,
    /// Step between tiles; equal to `size` for non-overlapping tiles.
    pub stride: u32,
}

/// Numeric form of the exported weights and activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    Int8,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Int8 => "int8",
        }
    }
}

/// An exported model's card.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelCard {
    pub model_id: ModelId,
    pub bits: u16,
    pub classes: Vec<String>,
    pub input: InputSpec,
    pub band_names: Vec<String>,
    pub tile: TileSpec,
    pub precision: Precision,
    pub dataset: String,
    pub dataset_manifest_sha256: String,
    /// The training configuration as JSON text.
    pub training: String,
    pub exporter: String,
}

/// A card that is missing, incomplete or contradicts itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardError {
    /// The file has no orbhash card at all.
    NoCard,
    /// A card of a layout this build does not read.
    Format(String),
    Missing(&'static str),
    Invalid {
        key: &'static str,
        reason: String,
    },
}

impl core::fmt::Display for CardError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoCard => write!(
                f,
                "no orbhash model card in the file's metadata (was it written by `orbhash export`?)"
            ),
            Self::Format(found) => write!(
                f,
                "model card format {found:?}; this build reads {CARD_FORMAT:?}"
            ),
            Self::Missing(key) => write!(f, "model card lacks {KEY_PREFIX}{key}"),
            Self::Invalid { key, reason } => {
                write!(f, "model card field {KEY_PREFIX}{key} is invalid: {reason}")
            }
        }
    }
}

impl std::error::Error for CardError {}

fn json<T: Serialize>(value: &T) -> String {
    // Serialising plain data (strings, numbers, vectors) into a String cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

impl ModelCard {
    /// The card as `metadata_props` entries, keys prefixed.
    pub fn to_props(&self) -> Vec<(String, String)> {
        let fields = vec![
            ("card", CARD_FORMAT.to_string()),
            ("model_id", self.model_id.to_string()),
            ("bits", self.bits.to_string()),
            ("classes", json(&self.classes)),
            ("input", json(&self.input)),
            ("band_names", json(&self.band_names)),
            ("tile", json(&self.tile)),
            ("precision", self.precision.name().to_string()),
            ("dataset", self.dataset.clone()),
            (
                "dataset_manifest_sha256",
                self.dataset_manifest_sha256.clone(),
            ),
            ("training", self.training.clone()),
            ("exporter", self.exporter.clone()),
        ];
        fields
            .into_iter()
            .map(|(key, value)| (format!("{KEY_PREFIX}{key}"), value))
            .collect()
    }

    /// Reads a card from `metadata_props` (keys with their prefix) and checks it is whole and
    /// consistent in itself; a model's consistency with its graph is the loader's to check.
    pub fn from_props(props: &BTreeMap<String, String>) -> Result<Self, CardError> {
        let get = |key: &'static str| -> Result<&str, CardError> {
            props
                .get(&format!("{KEY_PREFIX}{key}"))
                .map(String::as_str)
                .ok_or(CardError::Missing(key))
        };
        let invalid = |key: &'static str, reason: String| CardError::Invalid { key, reason };
        fn parse_json<T: serde::de::DeserializeOwned>(
            key: &'static str,
            text: &str,
        ) -> Result<T, CardError> {
            serde_json::from_str(text).map_err(|e| CardError::Invalid {
                key,
                reason: e.to_string(),
            })
        }
        let format = match get("card") {
            Err(_) => return Err(CardError::NoCard),
            Ok(format) => format,
        };
        if format != CARD_FORMAT {
            return Err(CardError::Format(format.to_string()));
        }
        let model_id = get("model_id")?;
        let model_id = ModelId::from_hex(model_id)
            .ok_or_else(|| invalid("model_id", format!("{model_id:?} is not 16 hex digits")))?;
        let bits_text = get("bits")?;
        let bits: u16 = bits_text
            .parse()
            .map_err(|_| invalid("bits", format!("{bits_text:?} is not a number")))?;
        if bits == 0 || bits % 8 != 0 || bits > 256 {
            return Err(invalid(
                "bits",
                format!("{bits}: codes are 8 to 256 bits in whole bytes"),
            ));
        }
        let classes: Vec<String> = parse_json("classes", get("classes")?)?;
        if classes.is_empty() {
            return Err(invalid("classes", "no class names".into()));
        }
        let input: InputSpec = parse_json("input", get("input")?)?;
        input.validate().map_err(|e| invalid("input", e.0))?;
        let band_names: Vec<String> = parse_json("band_names", get("band_names")?)?;
        if let Some(&band) = input.bands.iter().find(|&&b| b >= band_names.len()) {
            return Err(invalid(
                "input",
                format!(
                    "uses band {band} but the card names {} band(s)",
                    band_names.len()
                ),
            ));
        }
        let tile: TileSpec = parse_json("tile", get("tile")?)?;
        if tile.size == 0 || tile.stride == 0 {
            return Err(invalid("tile", "size and stride must be > 0".into()));
        }
        let precision = match get("precision")? {
            "f32" => Precision::F32,
            "int8" => Precision::Int8,
            other => return Err(invalid("precision", format!("{other:?}"))),
        };
        Ok(Self {
            model_id,
            bits,
            classes,
            input,
            band_names,
            tile,
            precision,
            dataset: get("dataset")?.to_string(),
            dataset_manifest_sha256: get("dataset_manifest_sha256")?.to_string(),
            training: get("training")?.to_string(),
            exporter: get("exporter")?.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card() -> ModelCard {
        ModelCard {
            model_id: ModelId::of_model(b"graph"),
            bits: 64,
            classes: vec!["farm".into(), "forest".into()],
            input: InputSpec::imagenet_rgb(128),
            band_names: vec!["red".into(), "green".into(), "blue".into()],
            tile: TileSpec {
                size: 32,
                stride: 32,
            },
            precision: Precision::Int8,
            dataset: "s2-brandenburg".into(),
            dataset_manifest_sha256: "ab".repeat(32),
            training: "{\"epochs\":30}".into(),
            exporter: "orbhash 0.1.0".into(),
        }
    }

    fn props(card: &ModelCard) -> BTreeMap<String, String> {
        card.to_props().into_iter().collect()
    }

    #[test]
    fn a_card_survives_its_metadata_form() {
        let card = card();
        assert_eq!(ModelCard::from_props(&props(&card)), Ok(card));
    }

    #[test]
    fn missing_and_contradictory_fields_are_named() {
        assert_eq!(
            ModelCard::from_props(&BTreeMap::new()),
            Err(CardError::NoCard)
        );
        let mut without_classes = props(&card());
        without_classes.remove("orbhash.classes");
        assert_eq!(
            ModelCard::from_props(&without_classes),
            Err(CardError::Missing("classes"))
        );
        let mut odd_bits = props(&card());
        odd_bits.insert("orbhash.bits".into(), "12".into());
        let error = ModelCard::from_props(&odd_bits).expect_err("12 bits");
        assert!(error.to_string().contains("orbhash.bits"), "{error}");
        let mut too_few_bands = card();
        too_few_bands.band_names.truncate(2);
        let error = ModelCard::from_props(&props(&too_few_bands)).expect_err("band 2 unnamed");
        assert!(error.to_string().contains("band 2"), "{error}");
        let mut bad_id = props(&card());
        bad_id.insert("orbhash.model_id".into(), "xyz".into());
        assert!(matches!(
            ModelCard::from_props(&bad_id),
            Err(CardError::Invalid {
                key: "model_id",
                ..
            })
        ));
    }
}

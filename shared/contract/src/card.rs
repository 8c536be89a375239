//! The model card: everything the board and the ground need to use an exported model, carried
//! inside the ONNX file, so a model file is self-describing and nothing else has to be uplinked
//! with it.
//!
//! The card is one JSON document, [`ModelCard::to_json`], stored under the one `metadata_props`
//! key [`CARD_KEY`]; everyone reads it back through the same serde type ([`ModelCard::from_json`]),
//! which refuses unknown fields, so a writer and a reader cannot drift apart field by field.
//!
//! ```json
//! {
//!   "format": "orbhash-model-card-2",
//!   "model_id": "3fef10471c45d4c8",
//!   "bits": 64,
//!   "classes": ["farm", "forest", "grass", "meadow", "residential", "scrub", "water"],
//!   "input": {"size": 128, "bands": [0, 1, 2], "scale": [{"low": 637.0, "high": 2691.0}, ...],
//!             "mean": [0.2946, 0.2676, 0.2682], "std": [0.3397, 0.3346, 0.3321]},
//!   "band_names": ["B04", "B03", "B02", "B08"],
//!   "tile": {"size": 32, "stride": 32},
//!   "precision": "int8",
//!   "dataset": "s2-brandenburg",
//!   "dataset_manifest_sha256": "059d…359b",
//!   "training": {"pretrained_sha256": "…", "config": {"backbone": "effnet-lite0", "bits": 64, ...}},
//!   "quantisation": {"weights": "per-channel", "keep_f32": ["stem", "depthwise", "project"],
//!                    "calibration": {"method": "min-max", "tiles": 159, "dataset": "s2-brandenburg",
//!                                    "dataset_manifest_sha256": "059d…359b", "split": "database"},
//!                    "bias_correction": true},
//!   "exporter": "orbhash 0.1.0"
//! }
//! ```
//!
//! - `model_id`: [`ModelId::of_model`] of the ONNX `GraphProto` bytes (graph and weights, not the
//!   metadata), so rewriting the card never changes a model id;
//! - `band_names`: the name of each stored band the input indexes, in storage order: a scene is
//!   checked against them ([`ModelCard::check_bands`]);
//! - `training`: the pretrained backbone weights by SHA-256 (`null`: trained from scratch) and the
//!   training configuration without paths of the machine that trained it (the data set is
//!   `dataset` and `dataset_manifest_sha256`);
//! - `quantisation`: how an int8 file was made (`null` for f32): weight scaling, the convolutions
//!   kept in f32 (`--keep-f32`), the calibration method and tiles, and whether biases were
//!   corrected on those tiles.
//!
//! The graph's two outputs are `hash` (K pre-sign activations: the code is `hash > 0`) and `probs`
//! (softmax over the classes).

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

use std::collections::BTreeMap;
use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, vec};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::input::InputSpec;
use orbhash_wire::ModelId;

/// Version of the card layout above. Version 1 was one `metadata_props` key per field.
pub const CARD_FORMAT: &str = "orbhash-model-card-2";
/// The `metadata_props` key holding the card. Version 1 kept its format name there, so an old
/// file is recognised (and refused by name) from the same key.
pub const CARD_KEY: &str = "orbhash.card";
/// Name of the graph output holding the K pre-sign hash activations.
pub const HASH_OUTPUT: &str = "hash";
/// Name of the graph output holding the class probabilities.
pub const PROBS_OUTPUT: &str = "probs";
/// Name of the graph input: a batch of normalised images, N×C×H×W.
pub const IMAGE_INPUT: &str = "image";

/// How a whole scene is cut into tiles for this model, in source pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// The card's format field: serialises as [`CARD_FORMAT`] and reads nothing else.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CardFormat;

impl Serialize for CardFormat {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(CARD_FORMAT)
    }
}

impl<'de> Deserialize<'de> for CardFormat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text == CARD_FORMAT {
            Ok(Self)
        } else {
            Err(serde::de::Error::custom(format!(
                "{text:?}; this build reads {CARD_FORMAT:?}"
            )))
        }
    }
}

/// The model id as its 16 hex digits.
mod model_id_hex {
    use super::*;

    pub fn serialize<S: Serializer>(id: &ModelId, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ModelId, D::Error> {
        let text = String::deserialize(deserializer)?;
        ModelId::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not 16 hex digits")))
    }
}

/// How the model was trained, without paths of the machine that trained it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    /// SHA-256 (64 hex digits) of the pretrained backbone weights file the training started
    /// from; `None` when the backbone was trained from scratch.
    pub pretrained_sha256: Option<String>,
    /// The training configuration (backbone, code length, loss, schedule, epochs, seed …) as the
    /// trainer records it, less its `data` and `pretrained` paths: the card says those as
    /// `dataset`/`dataset_manifest_sha256` and [`Self::pretrained_sha256`].
    pub config: serde_json::Map<String, serde_json::Value>,
}

/// Keys of the trainer's configuration that are paths on the training machine.
pub const TRAINING_PATH_KEYS: [&str; 2] = ["data", "pretrained"];

/// How int8 weights are scaled (`orbhash export --weights`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WeightScaling {
    PerChannel,
    PerTensor,
}

/// A kind of convolution an int8 export can keep in f32 (`orbhash export --keep-f32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConvKind {
    /// The first convolution, which sees the normalised image.
    Stem,
    /// Depthwise convolutions.
    Depthwise,
    /// 1×1 projections without activation.
    Project,
}

/// How activation ranges were read off the calibration tiles (`orbhash export --calibration`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CalibrationMethod {
    /// The smallest and largest value seen.
    MinMax,
    /// This lower and upper percentile of each batch, averaged over the batches.
    Percentile(f64),
}

/// The tiles an int8 export was calibrated (and bias-corrected) on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub method: CalibrationMethod,
    /// How many tiles.
    pub tiles: u32,
    /// The data set they came from (by name and manifest, as `dataset`): `--calibrate` may name
    /// another one than the training set.
    pub dataset: String,
    pub dataset_manifest_sha256: Option<String>,
    /// Its split they were taken from, first tiles first (`database`).
    pub split: String,
}

/// How an int8 file was quantised.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantisation {
    pub weights: WeightScaling,
    /// Convolutions computed in f32 between DequantizeLinear and QuantizeLinear; empty: every
    /// convolution in int8.
    pub keep_f32: Vec<ConvKind>,
    pub calibration: Calibration,
    /// Whether each layer's bias absorbed the mean shift int8 leaves, measured on the calibration
    /// tiles.
    pub bias_correction: bool,
}

/// An exported model's card (see the module docs for its JSON form).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    pub format: CardFormat,
    #[serde(with = "model_id_hex")]
    pub model_id: ModelId,
    pub bits: u16,
    pub classes: Vec<String>,
    pub input: InputSpec,
    pub band_names: Vec<String>,
    pub tile: TileSpec,
    pub precision: Precision,
    pub dataset: String,
    /// SHA-256 of the data set's manifest; `None` when it had none (a plain photo folder).
    pub dataset_manifest_sha256: Option<String>,
    pub training: Training,
    /// Present exactly when `precision` is int8.
    pub quantisation: Option<Quantisation>,
    pub exporter: String,
}

/// A card that is missing, of another format, or unreadable; every variant names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    #[error("no orbhash model card in the file's metadata (was it written by `orbhash export`?)")]
    NoCard,
    /// A card of a layout this build does not read, e.g. version 1's key-per-field form.
    #[error(
        "model card format {0:?}; this build reads {CARD_FORMAT:?} (re-export the model with \
         this orbhash)"
    )]
    Format(String),
    #[error("the model card is not a JSON object: {0}")]
    NotJson(String),
    #[error("the model card lacks field `{0}`")]
    Missing(String),
    #[error("the model card has unknown field `{0}`")]
    Unknown(String),
    #[error("model card field `{field}` is invalid: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: &str, reason: impl Into<String>) -> CardError {
    CardError::Invalid {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// `prefix.name`, or `name` at the top (serde_path_to_error writes the top as `.`).
fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() || prefix == "." {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// The name between the first pair of backticks of serde's message (`missing field `bits``).
fn backticked(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let rest = message.get(start..)?;
    let end = rest.find('`')?;
    rest.get(..end)
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// How an image's bands compare with a card's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BandMatch {
    /// The image names its bands and they are the card's.
    Named,
    /// The image does not name its bands; it has as many as the card, whose names are assumed.
    Assumed(Vec<String>),
}

/// An image (scene or tile) whose bands are not the ones the model was trained on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BandMismatch {
    #[error(
        "the image names its bands {found:?}; the model's card wants {wanted:?}, in this order"
    )]
    Names {
        found: Vec<String>,
        wanted: Vec<String>,
    },
    #[error(
        "the image has {found} band(s) and does not name them; the model's card wants {} \
         ({wanted:?})",
        wanted.len()
    )]
    Count { found: usize, wanted: Vec<String> },
}

impl ModelCard {
    /// The card as one JSON document.
    pub fn to_json(&self) -> String {
        // Plain data (strings, numbers, vectors, maps with string keys) always serialises; the
        // fallback keeps this signature infallible without a panic.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a card and checks it is whole and consistent in itself; a model's consistency with
    /// its graph is the loader's to check. Errors name the missing, unknown or bad field.
    pub fn from_json(text: &str) -> Result<Self, CardError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|error| CardError::NotJson(error.to_string()))?;
        let object = value
            .as_object()
            .ok_or_else(|| CardError::NotJson(format!("found {}", kind_of(&value))))?;
        // The format first: a card of another version fails as such, not on its first field.
        match object.get("format") {
            None => return Err(CardError::Missing("format".into())),
            Some(serde_json::Value::String(format)) if format != CARD_FORMAT => {
                return Err(CardError::Format(format.clone()))
            }
            Some(_) => {}
        }
        let card: ModelCard = serde_path_to_error::deserialize(value).map_err(|error| {
            let path = error.path().to_string();
            let message = error.inner().to_string();
            match backticked(&message) {
                Some(name) if message.starts_with("missing field") => {
                    CardError::Missing(join(&path, name))
                }
                // The path already ends in the unknown key.
                Some(_) if message.starts_with("unknown field") => CardError::Unknown(path),
                _ => invalid(&path, message),
            }
        })?;
        card.validate()?;
        Ok(card)
    }

    /// What serde's types cannot say: ranges, lengths, and fields that go together.
    fn validate(&self) -> Result<(), CardError> {
        if !orbhash_wire::code::is_supported_length(self.bits) {
            return Err(invalid(
                "bits",
                format!(
                    "{}: the wire carries codes of {:?} bits",
                    self.bits,
                    orbhash_wire::code::SUPPORTED_BITS
                ),
            ));
        }
        if self.classes.is_empty() {
            return Err(invalid("classes", "no class names"));
        }
        self.input.validate().map_err(|e| invalid("input", e.0))?;
        if let Some(&band) = self
            .input
            .bands
            .iter()
            .find(|&&b| b >= self.band_names.len())
        {
            return Err(invalid(
                "input.bands",
                format!(
                    "uses band {band} but the card names {} band(s)",
                    self.band_names.len()
                ),
            ));
        }
        if self.tile.size == 0 || self.tile.stride == 0 {
            return Err(invalid("tile", "size and stride must be > 0"));
        }
        let sha = |field: &str, value: &Option<String>| match value {
            Some(text) if !is_sha256(text) => Err(invalid(
                field,
                format!("{text:?} is not 64 lowercase hex digits"),
            )),
            _ => Ok(()),
        };
        sha("dataset_manifest_sha256", &self.dataset_manifest_sha256)?;
        sha(
            "training.pretrained_sha256",
            &self.training.pretrained_sha256,
        )?;
        if let Some(key) = TRAINING_PATH_KEYS
            .iter()
            .find(|key| self.training.config.contains_key(**key))
        {
            return Err(invalid(
                &format!("training.config.{key}"),
                "a path of the training machine; the card records the data set by name and \
                 manifest and the pretrained weights by SHA-256",
            ));
        }
        match (self.precision, &self.quantisation) {
            (Precision::F32, Some(_)) => {
                return Err(invalid("quantisation", "present on an f32 model"))
            }
            (Precision::Int8, None) => {
                return Err(invalid("quantisation", "missing on an int8 model"))
            }
            (_, Some(quantisation)) => {
                sha(
                    "quantisation.calibration.dataset_manifest_sha256",
                    &quantisation.calibration.dataset_manifest_sha256,
                )?;
                if quantisation.calibration.tiles == 0 {
                    return Err(invalid("quantisation.calibration.tiles", "0 tiles"));
                }
            }
            (_, None) => {}
        }
        Ok(())
    }

    /// The card as `metadata_props` entries: the one [`CARD_KEY`].
    pub fn to_props(&self) -> Vec<(String, String)> {
        vec![(CARD_KEY.to_string(), self.to_json())]
    }

    /// Reads the card from a file's `metadata_props`.
    pub fn from_props(props: &BTreeMap<String, String>) -> Result<Self, CardError> {
        let text = props.get(CARD_KEY).ok_or(CardError::NoCard)?;
        // Version 1 kept its bare format name under this key (and the fields under others).
        if !text.trim_start().starts_with('{') {
            return Err(CardError::Format(text.clone()));
        }
        Self::from_json(text)
    }

    /// Whether an image with `found` bands, named `names` when the file names them, holds the
    /// bands this model was trained on, in the same order: by name when named (without case),
    /// else by count. Every stored band counts, not only those the input uses: a scene of other
    /// bands with as many of them is no scene of this model.
    pub fn check_bands(
        &self,
        found: usize,
        names: Option<&[String]>,
    ) -> Result<BandMatch, BandMismatch> {
        match names {
            Some(names) => {
                let same = names.len() == self.band_names.len()
                    && names
                        .iter()
                        .zip(&self.band_names)
                        .all(|(a, b)| a.eq_ignore_ascii_case(b));
                if same {
                    Ok(BandMatch::Named)
                } else {
                    Err(BandMismatch::Names {
                        found: names.to_vec(),
                        wanted: self.band_names.clone(),
                    })
                }
            }
            None if found == self.band_names.len() => {
                Ok(BandMatch::Assumed(self.band_names.clone()))
            }
            None => Err(BandMismatch::Count {
                found,
                wanted: self.band_names.clone(),
            }),
        }
    }
}

fn kind_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::BandScale;

    pub(crate) fn card() -> ModelCard {
        let mut config = serde_json::Map::new();
        config.insert("backbone".into(), "effnet-lite0".into());
        config.insert("epochs".into(), 30.into());
        ModelCard {
            format: CardFormat,
            model_id: ModelId::of_model(b"graph"),
            bits: 64,
            classes: vec!["farm".into(), "forest".into()],
            input: InputSpec::multispectral(
                128,
                vec![0, 1, 2],
                vec![BandScale::U16, BandScale::U16, BandScale::U16],
            ),
            band_names: vec!["B04".into(), "B03".into(), "B02".into(), "B08".into()],
            tile: TileSpec {
                size: 32,
                stride: 32,
            },
            precision: Precision::Int8,
            dataset: "s2-brandenburg".into(),
            dataset_manifest_sha256: Some("ab".repeat(32)),
            training: Training {
                pretrained_sha256: Some("cd".repeat(32)),
                config,
            },
            quantisation: Some(Quantisation {
                weights: WeightScaling::PerChannel,
                keep_f32: vec![ConvKind::Stem, ConvKind::Depthwise],
                calibration: Calibration {
                    method: CalibrationMethod::Percentile(99.99),
                    tiles: 159,
                    dataset: "s2-brandenburg".into(),
                    dataset_manifest_sha256: Some("ab".repeat(32)),
                    split: "database".into(),
                },
                bias_correction: true,
            }),
            exporter: "orbhash 0.1.0".into(),
        }
    }

    fn json_value(card: &ModelCard) -> serde_json::Value {
        serde_json::from_str(&card.to_json()).unwrap()
    }

    fn from_value(value: &serde_json::Value) -> Result<ModelCard, CardError> {
        ModelCard::from_json(&value.to_string())
    }

    #[test]
    fn a_card_survives_its_json_and_metadata_forms() {
        let card = card();
        assert_eq!(ModelCard::from_json(&card.to_json()), Ok(card.clone()));
        let props: BTreeMap<String, String> = card.to_props().into_iter().collect();
        assert_eq!(props.keys().collect::<Vec<_>>(), vec![CARD_KEY]);
        assert_eq!(ModelCard::from_props(&props), Ok(card.clone()));
        let mut f32_card = card;
        f32_card.precision = Precision::F32;
        f32_card.quantisation = None;
        f32_card.training.pretrained_sha256 = None;
        f32_card.dataset_manifest_sha256 = None;
        assert_eq!(ModelCard::from_json(&f32_card.to_json()), Ok(f32_card));
    }

    #[test]
    fn the_json_names_the_card_fields_the_readme_documents() {
        let value = json_value(&card());
        assert_eq!(value["format"], CARD_FORMAT);
        assert_eq!(value["model_id"], ModelId::of_model(b"graph").to_string());
        assert_eq!(value["precision"], "int8");
        let quantisation = &value["quantisation"];
        assert_eq!(
            quantisation["keep_f32"],
            serde_json::json!(["stem", "depthwise"])
        );
        assert_eq!(quantisation["weights"], "per-channel");
        assert_eq!(
            quantisation["calibration"]["method"],
            serde_json::json!({"percentile": 99.99})
        );
        assert_eq!(quantisation["bias_correction"], true);
        assert_eq!(value["training"]["pretrained_sha256"], "cd".repeat(32));
    }

    #[test]
    fn missing_unknown_and_bad_fields_are_named() {
        let mut value = json_value(&card());
        value.as_object_mut().unwrap().remove("classes");
        assert_eq!(
            from_value(&value),
            Err(CardError::Missing("classes".into()))
        );

        let mut value = json_value(&card());
        value["quantisation"]["calibration"]
            .as_object_mut()
            .unwrap()
            .remove("tiles");
        assert_eq!(
            from_value(&value),
            Err(CardError::Missing("quantisation.calibration.tiles".into()))
        );

        let mut value = json_value(&card());
        value["tile"]["overlap"] = 3.into();
        assert_eq!(
            from_value(&value),
            Err(CardError::Unknown("tile.overlap".into()))
        );
        let mut value = json_value(&card());
        value["extra"] = 3.into();
        assert_eq!(from_value(&value), Err(CardError::Unknown("extra".into())));

        let mut value = json_value(&card());
        value["bits"] = "sixty-four".into();
        let error = from_value(&value).unwrap_err();
        assert!(
            matches!(&error, CardError::Invalid { field, .. } if field == "bits"),
            "{error}"
        );
        value["bits"] = 12.into();
        let error = from_value(&value).unwrap_err();
        assert!(error.to_string().contains("`bits`"), "{error}");

        let mut value = json_value(&card());
        value["model_id"] = "xyz".into();
        let error = from_value(&value).unwrap_err();
        assert!(
            matches!(&error, CardError::Invalid { field, .. } if field == "model_id"),
            "{error}"
        );

        let mut too_few_bands = card();
        too_few_bands.band_names.truncate(2);
        let error = ModelCard::from_json(&too_few_bands.to_json()).unwrap_err();
        assert!(error.to_string().contains("band 2"), "{error}");

        let mut f32_with_quantisation = card();
        f32_with_quantisation.precision = Precision::F32;
        let error = ModelCard::from_json(&f32_with_quantisation.to_json()).unwrap_err();
        assert!(
            matches!(&error, CardError::Invalid { field, .. } if field == "quantisation"),
            "{error}"
        );
    }

    #[test]
    fn a_training_machine_path_is_refused() {
        let mut with_path = card();
        with_path.training.config.insert(
            "pretrained".into(),
            "/home/someone/weights.safetensors".into(),
        );
        let error = ModelCard::from_json(&with_path.to_json()).unwrap_err();
        assert!(
            matches!(&error, CardError::Invalid { field, .. } if field == "training.config.pretrained"),
            "{error}"
        );
    }

    #[test]
    fn old_and_unknown_formats_are_refused_by_name() {
        assert_eq!(
            ModelCard::from_props(&BTreeMap::new()),
            Err(CardError::NoCard)
        );
        // Version 1: the format name under `orbhash.card`, one key per field beside it.
        let old = BTreeMap::from([
            (CARD_KEY.to_string(), "orbhash-model-card-1".to_string()),
            ("orbhash.bits".to_string(), "64".to_string()),
        ]);
        let error = ModelCard::from_props(&old).unwrap_err();
        assert_eq!(error, CardError::Format("orbhash-model-card-1".into()));
        assert!(error.to_string().contains("re-export"), "{error}");

        let mut value = json_value(&card());
        value["format"] = "orbhash-model-card-3".into();
        assert_eq!(
            from_value(&value),
            Err(CardError::Format("orbhash-model-card-3".into()))
        );
        assert!(matches!(
            ModelCard::from_json("[1, 2]"),
            Err(CardError::NotJson(_))
        ));
        assert!(matches!(
            ModelCard::from_json("{\"format\":"),
            Err(CardError::NotJson(_))
        ));
    }

    #[test]
    fn bands_are_checked_by_name_when_named_and_by_count_otherwise() {
        let card = card();
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            card.check_bands(4, Some(&names(&["b04", "B03", "B02", "B08"]))),
            Ok(BandMatch::Named)
        );
        let error = card
            .check_bands(4, Some(&names(&["B03", "B04", "B02", "B08"])))
            .unwrap_err();
        assert!(matches!(error, BandMismatch::Names { .. }), "{error}");
        assert_eq!(
            card.check_bands(4, None),
            Ok(BandMatch::Assumed(card.band_names.clone()))
        );
        let error = card.check_bands(3, None).unwrap_err();
        assert!(
            error.to_string().contains("3 band(s)") && error.to_string().contains("B08"),
            "{error}"
        );
    }
}

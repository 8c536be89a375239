//! Loading an ONNX model with tract for on-board inference.
//!
//! The batch size is fixed when the model is loaded: tract then optimises the graph for concrete
//! shapes, which is markedly faster than running it with a symbolic batch dimension.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use orbhash_wire::ModelId;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::OpState;
use tract_onnx::tract_core::plan::{eval, EvalContext, SimpleState};
use tract_onnx::tract_hir::infer::Factoid;
use tract_onnx::tract_hir::internal::DimLike;

/// Prefix under which tract keeps an ONNX file's `metadata_props`.
const METADATA_PREFIX: &str = "onnx.metadata_props.";

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read model file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin} is not a valid ONNX model: {detail}")]
    NotOnnx { origin: String, detail: String },
    #[error("{origin} has {count} inputs; an orbhash model takes exactly one image batch")]
    InputCount { origin: String, count: usize },
    #[error("{origin}: cannot prepare the graph for batch size {batch}: {detail}")]
    Optimise {
        origin: String,
        batch: usize,
        detail: String,
    },
    #[error("input of shape {actual:?} given to a model that expects {expected:?}")]
    InputShape {
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    #[error("inference failed: {0}")]
    Run(String),
}

/// An ONNX model optimised for a fixed batch size, with its metadata.
pub struct OnnxModel {
    plan: std::sync::Arc<TypedSimplePlan>,
    input_shape: Vec<usize>,
    output_names: Vec<String>,
    metadata: BTreeMap<String, String>,
    graph_id: ModelId,
}

impl OnnxModel {
    /// Opens an ONNX file and prepares it for batches of `batch` inputs.
    pub fn open(path: &Path, batch: usize) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, batch, &path.display().to_string())
    }

    /// Prepares an in-memory ONNX model; `origin` names it in error messages.
    pub fn from_bytes(bytes: &[u8], batch: usize, origin: &str) -> Result<Self, ModelError> {
        Self::from_bytes_with_outputs(bytes, batch, origin, &[])
    }

    /// As [`Self::from_bytes`], but the model's outputs are the named values (any intermediate
    /// value of the graph, by its ONNX name) instead of the graph's own outputs; empty keeps those.
    /// For calibration and debugging: what the board runs is the graph as exported.
    pub fn from_bytes_with_outputs(
        bytes: &[u8],
        batch: usize,
        origin: &str,
        outputs: &[String],
    ) -> Result<Self, ModelError> {
        let not_onnx = |error: TractError| ModelError::NotOnnx {
            origin: origin.to_string(),
            detail: format!("{error:#}"),
        };
        let onnx = tract_onnx::onnx();
        let proto = onnx
            .proto_model_for_read(&mut std::io::Cursor::new(bytes))
            .map_err(not_onnx)?;
        let graph_id = ModelId::of_model(
            &proto
                .graph
                .as_ref()
                .map(prost::Message::encode_to_vec)
                .unwrap_or_default(),
        );
        let mut model = onnx.model_for_proto_model(&proto).map_err(not_onnx)?;
        if !outputs.is_empty() {
            model.select_outputs_by_name(outputs).map_err(not_onnx)?;
        }
        let metadata = model
            .properties
            .iter()
            .filter_map(|(key, value)| {
                let key = key.strip_prefix(METADATA_PREFIX)?;
                let value = value.try_as_plain_ram().ok()?.to_scalar::<String>().ok()?;
                Some((key.to_string(), value.clone()))
            })
            .collect();
        let inputs = model.input_outlets().map_err(not_onnx)?.len();
        if inputs != 1 {
            return Err(ModelError::InputCount {
                origin: origin.to_string(),
                count: inputs,
            });
        }
        let optimise_error = |error: TractError| ModelError::Optimise {
            origin: origin.to_string(),
            batch,
            detail: format!("{error:#}"),
        };
        let input_shape = fixed_batch_shape(&model, batch).map_err(optimise_error)?;
        let output_names = if outputs.is_empty() {
            model
                .output_outlets()
                .map_err(not_onnx)?
                .iter()
                .map(|outlet| model.node(outlet.node).name.clone())
                .collect()
        } else {
            outputs.to_vec()
        };
        let plan = model
            .with_input_fact(0, f32::fact(&input_shape).into())
            .and_then(|model| model.into_optimized())
            .and_then(|model| model.into_runnable())
            .map_err(optimise_error)?;
        Ok(Self {
            plan,
            input_shape,
            output_names,
            metadata,
            graph_id,
        })
    }

    /// The input shape this model was prepared for, batch first.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Output names in graph order.
    pub fn output_names(&self) -> &[String] {
        &self.output_names
    }

    /// [`ModelId::of_model`] of the file's graph (structure and weights, not the metadata): the
    /// model id an orbhash model card must carry.
    pub fn graph_id(&self) -> ModelId {
        self.graph_id
    }

    /// The file's `metadata_props`: the model card travels there.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    fn check_input(&self, input: &Tensor) -> Result<(), ModelError> {
        if input.shape() != self.input_shape.as_slice() {
            return Err(ModelError::InputShape {
                expected: self.input_shape.clone(),
                actual: input.shape().to_vec(),
            });
        }
        Ok(())
    }

    /// Runs one batch; `input` is laid out in [`Self::input_shape`] order.
    pub fn run(&self, input: Tensor) -> Result<Vec<Tensor>, ModelError> {
        self.check_input(&input)?;
        let outputs = self
            .plan
            .run(tvec!(input.into()))
            .map_err(|error| ModelError::Run(format!("{error:#}")))?;
        Ok(outputs
            .into_iter()
            .map(|value| value.into_tensor())
            .collect())
    }
}

/// Where one node of the optimised plan spent its time in [`OnnxModel::profile`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeTime {
    /// The node's name in the optimised graph (derived from the ONNX node it came from).
    pub name: String,
    /// The tract operator that runs it, e.g. `OptMatMul`, `DepthWiseConv`, `Softmax`.
    pub op: String,
    /// tract's one-line description of the node's parameters (kernel, strides, shapes).
    pub detail: String,
    /// Seconds per run, averaged over the profiled runs.
    pub seconds: f64,
}

impl OnnxModel {
    /// Runs `input` `runs` times (after one untimed run) and times every node of the optimised
    /// plan: which of tract's kernels the time goes to, for choosing the exported graph's form.
    /// Nodes in execution order.
    pub fn profile(&self, input: Tensor, runs: usize) -> Result<Vec<NodeTime>, ModelError> {
        self.check_input(&input)?;
        let run_error = |error: TractError| ModelError::Run(format!("{error:#}"));
        let mut state = SimpleState::new(&self.plan).map_err(run_error)?;
        let nodes = self.plan.model().nodes();
        let mut seconds = vec![0.0_f64; nodes.len()];
        let runs = runs.max(1);
        for run in 0..=runs {
            let timed = run > 0;
            state
                .run_plan_with_eval(
                    tvec!(input.clone().into()),
                    |context: &EvalContext,
                     op_state: Option<&mut (dyn OpState + 'static)>,
                     node: &TypedNode,
                     inputs: TVec<TValue>| {
                        let start = Instant::now();
                        let outputs = eval(context, op_state, node, inputs);
                        if timed {
                            seconds[node.id] += start.elapsed().as_secs_f64();
                        }
                        outputs
                    },
                )
                .map_err(run_error)?;
        }
        Ok(self
            .plan
            .order_without_consts()
            .iter()
            .map(|&id| {
                let node = &nodes[id];
                NodeTime {
                    name: node.name.clone(),
                    op: node.op().name().to_string(),
                    detail: node.op().info().unwrap_or_default().join("; "),
                    seconds: seconds[id] / runs as f64,
                }
            })
            .collect())
    }
}

/// The model's declared input shape with its first (batch) dimension set to `batch`: every other
/// dimension must be concrete, since tiles have a fixed size.
fn fixed_batch_shape(model: &InferenceModel, batch: usize) -> TractResult<Vec<usize>> {
    let fact = model.input_fact(0)?;
    let mut shape = Vec::new();
    for (axis, dim) in fact.shape.dims().enumerate() {
        if axis == 0 {
            shape.push(batch);
            continue;
        }
        let size = dim
            .concretize()
            .and_then(|dim| dim.to_usize().ok())
            .ok_or_else(|| anyhow::anyhow!("input axis {axis} has no fixed size ({dim:?})"))?;
        shape.push(size);
    }
    if shape.is_empty() {
        anyhow::bail!("the input has no declared shape");
    }
    Ok(shape)
}

/// The declaration of an f32 graph input or output: `name` with the given dimensions (fixed or
/// named). The exporter writes its graphs' inputs and outputs with it, and this crate reads them
/// back with the same shape rules, so the declaration lives beside the reader.
pub fn f32_value_info(
    name: &str,
    dims: Vec<tract_onnx::pb::tensor_shape_proto::dimension::Value>,
) -> tract_onnx::pb::ValueInfoProto {
    use tract_onnx::pb;
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .into_iter()
                        .map(|value| pb::tensor_shape_proto::Dimension {
                            denotation: String::new(),
                            value: Some(value),
                        })
                        .collect(),
                }),
            })),
        }),
        doc_string: String::new(),
    }
}

/// Tiny ONNX graphs for this crate's tests; the exporter (`orbhash-host`) is the only producer
/// of real graphs.
#[cfg(test)]
pub(crate) mod test_graphs {
    pub use super::f32_value_info;
    use tract_onnx::pb;

    /// An f32 initializer.
    pub fn f32_tensor(name: &str, dims: &[i64], values: &[f32]) -> pb::TensorProto {
        pb::TensorProto {
            name: name.to_string(),
            dims: dims.to_vec(),
            data_type: pb::tensor_proto::DataType::Float as i32,
            float_data: values.to_vec(),
            ..Default::default()
        }
    }

    /// A node of the default domain.
    pub fn node(op: &str, inputs: &[&str], output: &str) -> pb::NodeProto {
        pb::NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: output.to_string(),
            op_type: op.to_string(),
            ..Default::default()
        }
    }

    /// A model of opset 13 around `graph` with these `metadata_props`.
    pub fn model(graph: pb::GraphProto, metadata: Vec<(String, String)>) -> Vec<u8> {
        prost::Message::encode_to_vec(&pb::ModelProto {
            ir_version: 7,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            }],
            producer_name: "orbhash-infer tests".to_string(),
            graph: Some(graph),
            metadata_props: metadata
                .into_iter()
                .map(|(key, value)| pb::StringStringEntryProto { key, value })
                .collect(),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::test_graphs::{f32_tensor, f32_value_info, model, node};
    use super::*;
    use tract_onnx::pb;

    /// `hash = tile · W` with a symbolic batch: the smallest graph shaped like an orbhash model.
    fn linear_hash_model(weights: [[f32; 2]; 3]) -> Vec<u8> {
        use pb::tensor_shape_proto::dimension::Value::{DimParam, DimValue};
        let weights: Vec<f32> = weights.iter().flatten().copied().collect();
        let graph = pb::GraphProto {
            name: "linear-hash".to_string(),
            node: vec![node("MatMul", &["tile", "w"], "hash")],
            initializer: vec![f32_tensor("w", &[3, 2], &weights)],
            input: vec![f32_value_info(
                "tile",
                vec![DimParam("N".into()), DimValue(3)],
            )],
            output: vec![f32_value_info(
                "hash",
                vec![DimParam("N".into()), DimValue(2)],
            )],
            ..Default::default()
        };
        model(graph, vec![("orbhash.bits".to_string(), "2".to_string())])
    }

    #[test]
    fn profile_times_every_node_of_the_plan_and_checks_the_input() {
        let bytes = linear_hash_model([[1.0, -1.0], [2.0, 0.5], [0.0, 3.0]]);
        let model = OnnxModel::from_bytes(&bytes, 1, "test model").expect("loads");
        let input = tract_ndarray::arr2(&[[1.0f32, 1.0, 1.0]]).into_tensor();
        let nodes = model.profile(input, 3).expect("profiles");
        assert_eq!(nodes.len(), model.plan.order_without_consts().len());
        assert!(nodes.iter().any(|node| node.op != "Source"));
        assert!(nodes
            .iter()
            .all(|node| node.seconds.is_finite() && node.seconds >= 0.0));

        let wrong = tract_ndarray::arr2(&[[1.0f32, 1.0]]).into_tensor();
        assert!(matches!(
            model.profile(wrong, 1),
            Err(ModelError::InputShape { .. })
        ));
    }

    #[test]
    fn runs_a_model_built_in_memory_with_a_fixed_batch() {
        let bytes = linear_hash_model([[1.0, -1.0], [2.0, 0.5], [0.0, 3.0]]);
        let model = OnnxModel::from_bytes(&bytes, 2, "test model").expect("loads");
        assert_eq!(model.input_shape(), &[2, 3]);
        assert_eq!(model.output_names(), &["hash".to_string()]);
        assert_eq!(
            model.metadata().get("orbhash.bits").map(String::as_str),
            Some("2")
        );

        let input = tract_ndarray::arr2(&[[1.0f32, 1.0, 1.0], [0.0, -1.0, 2.0]]).into_tensor();
        let outputs = model.run(input).expect("runs");
        let hash = outputs[0].to_plain_array_view::<f32>().expect("f32 output");
        // Row 0: (1+2+0, -1+0.5+3); row 1: (-2, -0.5+6).
        assert_eq!(hash.as_slice(), Some(&[3.0, 2.5, -2.0, 5.5][..]));
    }

    #[test]
    fn refuses_wrong_input_shape_and_garbage_files() {
        let bytes = linear_hash_model([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]);
        let model = OnnxModel::from_bytes(&bytes, 1, "test model").expect("loads");
        let wrong = tract_ndarray::arr2(&[[1.0f32, 2.0]]).into_tensor();
        let error = model.run(wrong).expect_err("shape [1, 2] is not [1, 3]");
        assert!(matches!(error, ModelError::InputShape { .. }), "{error}");

        let error = OnnxModel::from_bytes(b"\xff\xfenot a protobuf", 1, "garbage.onnx")
            .err()
            .expect("garbage is refused");
        assert!(error.to_string().contains("garbage.onnx"), "{error}");
    }
}

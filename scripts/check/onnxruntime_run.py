"""Runs an exported orbhash model with onnxruntime, the reference ONNX runtime, on an input read
from a raw little-endian f32 file, and writes the `hash` and `probs` outputs the same way.

Test-only peer (tests/tests/onnxruntime_check.rs): it proves the files are valid ONNX for every
runtime, not just for tract. Never part of the product path.

usage: onnxruntime_run.py MODEL.onnx INPUT.f32 N C H W OUTPUT_PREFIX
"""
import sys

import numpy as np
import onnxruntime as ort

# onnxruntime's WeightBiasQuantization transform re-quantises the f32 weights of every
# DequantizeLinear -> Conv -> QuantizeLinear unit to int8 (per tensor), which turns the layers an
# int8 export keeps in f32 (`orbhash export --keep-f32`) into the int8 layers they were kept from,
# and changes the model's output (measured: 84 % of code bits as without it). Off, onnxruntime
# computes what the file says.
KEEP_F32_LAYERS = ["WeightBiasQuantization"]


def main() -> None:
    model, input_path, n, c, h, w, prefix = sys.argv[1:8]
    shape = (int(n), int(c), int(h), int(w))
    image = np.fromfile(input_path, dtype="<f4").reshape(shape)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        model, options, providers=["CPUExecutionProvider"], disabled_optimizers=KEEP_F32_LAYERS
    )
    hash_out, probs = session.run(["hash", "probs"], {"image": image})
    hash_out.astype("<f4").tofile(prefix + ".hash.f32")
    probs.astype("<f4").tofile(prefix + ".probs.f32")


if __name__ == "__main__":
    main()

"""Runs an exported orbhash model with onnxruntime, the reference ONNX runtime, on an input read
from a raw little-endian f32 file, and writes the `hash` and `probs` outputs the same way.

Test-only peer (tests/tests/onnxruntime_check.rs): it proves the files are valid ONNX for every
runtime, not just for tract. Never part of the product path.

usage: onnxruntime_run.py MODEL.onnx INPUT.f32 N C H W OUTPUT_PREFIX
"""
import sys

import numpy as np
import onnxruntime as ort


def main() -> None:
    model, input_path, n, c, h, w, prefix = sys.argv[1:8]
    shape = (int(n), int(c), int(h), int(w))
    image = np.fromfile(input_path, dtype="<f4").reshape(shape)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    hash_out, probs = session.run(["hash", "probs"], {"image": image})
    hash_out.astype("<f4").tofile(prefix + ".hash.f32")
    probs.astype("<f4").tofile(prefix + ".probs.f32")


if __name__ == "__main__":
    main()

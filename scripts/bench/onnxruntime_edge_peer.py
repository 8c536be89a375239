"""The peer of `orbhash-edge bench`: onnxruntime on the same ONNX file, same input size, batch
sizes and thread counts, printing the same columns. Benchmark only (run it from a venv with
`onnxruntime` and `numpy`); never part of the product path.

usage: onnxruntime_edge_peer.py MODEL.onnx [--batch 1,8] [--threads 1,2] [--tiles 64]
"""
import argparse
import time

import numpy as np
import onnxruntime as ort


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--tiles", type=int, default=64)
    args = parser.parse_args()
    print(f"{'model':<28} {'runtime':>11} {'batch':>6} {'threads':>8} {'tiles':>6} {'ms/tile':>11} {'tiles/s':>10}")
    for threads in [int(t) for t in args.threads.split(",")]:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # The same arithmetic as the file: see KEEP_F32_LAYERS in scripts/check/onnxruntime_run.py.
        session = ort.InferenceSession(
            args.model,
            options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=["WeightBiasQuantization"],
        )
        shape = session.get_inputs()[0].shape
        for batch in [int(b) for b in args.batch.split(",")]:
            rng = np.random.default_rng(0)
            image = rng.standard_normal((batch, *shape[1:]), dtype=np.float32)
            session.run(None, {"image": image})
            runs = max(1, args.tiles // batch)
            start = time.perf_counter()
            for _ in range(runs):
                session.run(None, {"image": image})
            seconds = time.perf_counter() - start
            tiles = runs * batch
            name = args.model.rsplit("/", 1)[-1][:28]
            print(f"{name:<28} {'onnxruntime':>11} {batch:>6} {threads:>8} {tiles:>6} {seconds * 1e3 / tiles:>11.2f} {tiles / seconds:>10.1f}")


if __name__ == "__main__":
    main()

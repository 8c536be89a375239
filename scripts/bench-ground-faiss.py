#!/usr/bin/env python3
"""FAISS peer for `orbhash ground bench` (benchmark only; never on the product path).

Reads the same packed codes and queries that the Rust benchmark wrote (K/8 bytes per code, bit i
at byte i/8, bit i%8, which is FAISS's binary layout too) and times IndexBinaryFlat (exact) and
IndexBinaryMultiHash (approximate) at each thread count. Writes JSON: per run the name, threads,
ms/query and, for MultiHash, recall@k against Flat's exact distances; plus Flat's distances so the
Rust side can check its own exact results against them.

Set-up: python3 -m venv /tmp/faiss-venv && /tmp/faiss-venv/bin/pip install faiss-cpu numpy
"""

import argparse
import json
import time

import faiss
import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", required=True)
    parser.add_argument("--queries", required=True)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--multihash-tables", type=int, default=2)
    parser.add_argument("--multihash-bits", type=int, default=None,
                        help="bits per MultiHash table key (default: K / tables, at most 32)")
    parser.add_argument("--nflip", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    width = args.bits // 8
    codes = np.fromfile(args.codes, dtype=np.uint8).reshape(-1, width)
    queries = np.fromfile(args.queries, dtype=np.uint8).reshape(-1, width)
    k = args.k
    threads = [int(t) for t in args.threads.split(",") if t]
    runs = []

    flat = faiss.IndexBinaryFlat(args.bits)
    flat.add(codes)
    exact = None
    for t in threads:
        faiss.omp_set_num_threads(t)
        flat.search(queries[:2], k)  # warm-up
        start = time.perf_counter()
        distances, _ = flat.search(queries, k)
        seconds = time.perf_counter() - start
        exact = distances
        runs.append({"name": "IndexBinaryFlat", "threads": t,
                     "ms_per_query": seconds * 1e3 / len(queries)})

    tables = args.multihash_tables
    table_bits = args.multihash_bits or min(args.bits // tables, 32)
    start = time.perf_counter()
    multi = faiss.IndexBinaryMultiHash(args.bits, tables, table_bits)
    multi.nflip = args.nflip
    multi.add(codes)
    build_s = time.perf_counter() - start
    kth = exact[:, -1:]
    for t in threads:
        faiss.omp_set_num_threads(t)
        start = time.perf_counter()
        distances, labels = multi.search(queries, k)
        seconds = time.perf_counter() - start
        # Recall by distance: a returned neighbour counts if it is no farther than the true k-th
        # (ids differ among ties, distances do not). Missing results come back as -1 labels.
        found = (labels >= 0) & (distances <= kth)
        recall = float(found.sum()) / float(exact.size)
        runs.append({"name": f"IndexBinaryMultiHash ({tables} tables x {table_bits} bits, "
                             f"nflip {args.nflip})",
                     "threads": t, "ms_per_query": seconds * 1e3 / len(queries),
                     "recall": recall, "build_s": build_s})

    with open(args.out, "w") as out:
        json.dump({"faiss_version": faiss.__version__, "runs": runs,
                   "flat_distances": exact.astype(int).tolist()}, out)
    for run in runs:
        print(f"faiss: {run['name']}, {run['threads']} thread(s): "
              f"{run['ms_per_query']:.3f} ms/query"
              + (f", recall {run['recall']:.3f}" if "recall" in run else ""))


if __name__ == "__main__":
    main()

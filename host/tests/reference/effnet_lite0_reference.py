"""Computes the reference outputs that host's EfficientNet-Lite0 test pins.

Run once by hand, never by the product or the tests: it needs PyTorch and timm in a venv of its
own. It maps the legacy checkpoint's tensors onto timm's `tf_efficientnet_lite0` (TensorFlow
"SAME" padding, batch-norm eps 1e-3) in order, checking every shape, then runs a deterministic
input through it and prints the figures the Rust test compares against.

    python3 effnet_lite0_reference.py PATH/TO/efficientnet-lite0-57934424.pth [photo.png ...]
"""
import math
import pickle
import sys

import numpy as np
import timm
import torch


def load_legacy(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def reference_input():
    # The same formula as `reference_input` in host/src/model/effnet.rs's tests.
    c, h, w = np.meshgrid(np.arange(3), np.arange(224), np.arange(224), indexing="ij")
    index = (c * 224 * 224 + h * 224 + w).astype(np.float64)
    x = 1.5 * np.sin(0.001 * index)
    return torch.from_numpy(x.astype(np.float32)).unsqueeze(0)


def main():
    state = load_legacy(sys.argv[1])
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    target = model.state_dict()
    assert len(target) == len(state), (len(target), len(state))
    mapped = {}
    for (name, tensor), (source_name, source) in zip(target.items(), state.items()):
        assert tensor.shape == source.shape, (name, source_name, tensor.shape, source.shape)
        mapped[name] = source
    model.load_state_dict(mapped)
    model.eval()
    torch.set_num_threads(1)
    with torch.no_grad():
        x = reference_input()
        features = model.forward_head(model.forward_features(x), pre_logits=True)
        logits = model(x)
    print("features[0:8] =", [round(v, 6) for v in features[0, :8].tolist()])
    print("features sum =", round(features.sum().item(), 4))
    print("features norm =", round(features.norm().item(), 5))
    print("logits[0:8] =", [round(v, 5) for v in logits[0, :8].tolist()])
    top = torch.topk(logits[0], 5)
    print("top5 classes =", top.indices.tolist())
    print("top5 logits =", [round(v, 5) for v in top.values.tolist()])
    print("pretrained cfg mean/std:", model.pretrained_cfg.get("mean"), model.pretrained_cfg.get("std"))
    from PIL import Image
    cfg = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**cfg)
    print("eval transform:", transform)
    for photo in sys.argv[2:]:
        image = Image.open(photo).convert("RGB")
        with torch.no_grad():
            p = model(transform(image).unsqueeze(0)).softmax(-1)[0]
        top = torch.topk(p, 5)
        print(photo, [(i, round(v * 100, 1)) for i, v in zip(top.indices.tolist(), top.values.tolist())])


if __name__ == "__main__":
    main()

"""PyTorch eager peer of `orbhash bench train-step`: the same DHCNN network and training step, timed
the same way, for the tch/PyTorch ratio in docs/results.md.

Benchmark only, never part of the product: it runs in a venv of its own (see
scripts/bench/train-step.sh). The network mirrors host/src/model/effnet.rs (EfficientNet-Lite0:
TensorFlow "SAME" padding for strided convolutions, batch-norm eps 1e-3 and momentum 0.01, ReLU6,
stochastic depth up to 0.2) and host/src/train/network.rs (hash layer and classifier on it); the
step mirrors `Stepper::step` in host/src/train/trainer.rs (DHCNN loss against a memory bank with
the MatConvNet weighting, SGD, bank refresh, loss read back). Weights are random: timing only.

    python train_step_torch.py [--threads 1,2] [--batch-size 10] [--input-size 128] ...
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# (repeats, kernel, first stride, expand ratio, output channels), as in effnet.rs.
STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]
FEATURES = 1280


class ConvBn(nn.Module):
    def __init__(self, cin, cout, kernel, stride, groups=1):
        super().__init__()
        # Stride 1 pads k/2 on every side; strided convolutions pad at run time like TensorFlow.
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2 if stride == 1 else 0,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)
        self.kernel, self.stride = kernel, stride

    def forward(self, x):
        if self.stride > 1:
            h, w = x.shape[-2:]

            def total(extent):
                out = (extent + self.stride - 1) // self.stride
                return max((out - 1) * self.stride + self.kernel - extent, 0)

            v, hz = total(h), total(w)
            x = F.pad(x, [hz // 2, hz - hz // 2, v // 2, v - v // 2])
        return self.bn(self.conv(x))


class MbConv(nn.Module):
    def __init__(self, cin, cout, kernel, stride, expand, drop_rate):
        super().__init__()
        hidden = cin * expand
        self.expand = ConvBn(cin, hidden, 1, 1) if expand != 1 else None
        self.depthwise = ConvBn(hidden, hidden, kernel, stride, groups=hidden)
        self.project = ConvBn(hidden, cout, 1, 1)
        self.residual = stride == 1 and cin == cout
        self.drop_rate = drop_rate

    def forward(self, x):
        y = F.relu6(self.expand(x)) if self.expand is not None else x
        y = F.relu6(self.depthwise(y))
        y = self.project(y)
        if not self.residual:
            return y
        if self.training and self.drop_rate > 0:
            keep = 1.0 - self.drop_rate
            mask = torch.floor(torch.rand(y.shape[0], 1, 1, 1, dtype=y.dtype) + keep)
            y = y / keep * mask
        return y + x


class EfficientNetLite0(nn.Module):
    def __init__(self, drop_connect_rate=0.2):
        super().__init__()
        self.stem = ConvBn(3, 32, 3, 2)
        total = sum(s[0] for s in STAGES)
        blocks, channels = [], 32
        for repeats, kernel, first_stride, expand, out in STAGES:
            for r in range(repeats):
                index = len(blocks)
                blocks.append(MbConv(channels, out, kernel, first_stride if r == 0 else 1, expand,
                                     drop_connect_rate * index / total))
                channels = out
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBn(channels, FEATURES, 1, 1)

    def forward(self, x):
        y = self.blocks(F.relu6(self.stem(x)))
        return torch.flatten(F.adaptive_avg_pool2d(F.relu6(self.head(y)), 1), 1)


class Dhcnn(nn.Module):
    def __init__(self, bits, classes):
        super().__init__()
        self.backbone = EfficientNetLite0()
        self.hash = nn.Linear(FEATURES, bits)
        self.classifier = nn.Linear(bits, classes)
        for layer in (self.hash, self.classifier):
            nn.init.normal_(layer.weight, 0.0, 0.01)
            nn.init.zeros_(layer.bias)


def dhcnn_loss(model, codes, labels, bank, bank_labels, scale, eta, beta):
    theta = codes @ bank.t() / scale
    similar = (labels.unsqueeze(1) == bank_labels.unsqueeze(0)).to(codes.dtype)
    pairs = theta.shape[0] * theta.shape[1]
    pairwise = (F.softplus(theta) - similar * theta).sum() / pairs
    quantised = (codes.sign().detach() - codes).square().sum() / pairs
    # MatConvNet weighting: the classifier's gradient into the hash layer is scaled by 1 - eta.
    scaled = codes * (1.0 - eta) + codes.detach() * eta
    classification = F.cross_entropy(model.classifier(scaled), labels)
    quantisation = quantised * beta
    total = (pairwise + quantisation) * eta + classification
    # The Rust loss reads each term back for the metrics log.
    terms = (pairwise.item(), quantisation.item(), classification.item())
    return total, terms


def bench(args, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = Dhcnn(args.bits, args.classes)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=args.momentum,
                                weight_decay=5e-4)
    images = torch.randn(args.batch_size, 3, args.input_size, args.input_size)
    labels_all = torch.arange(args.bank) % args.classes
    bank = torch.randn(args.bank, args.bits)
    bank_labels = labels_all.clone()
    times = []
    for step in range(args.warmup + args.steps):
        indices = [(step * args.batch_size + j) % args.bank for j in range(args.batch_size)]
        start = time.perf_counter()
        labels = torch.tensor([int(labels_all[i]) for i in indices])
        codes = model.hash(model.backbone(images))
        total, _ = dhcnn_loss(model, codes, labels, bank, bank_labels, 32.0, 0.2, 25.0)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        with torch.no_grad():
            bank.index_copy_(0, torch.tensor(indices), codes.detach())
        loss = total.item()
        elapsed = (time.perf_counter() - start) * 1e3
        assert loss == loss, "the loss diverged"
        if step >= args.warmup:
            times.append(elapsed)
    median = statistics.median(times)
    return {"threads": threads, "median_ms": median, "min_ms": min(times),
            "mean_ms": statistics.fmean(times), "images_per_second": args.batch_size / median * 1e3}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--classes", type=int, default=7)
    parser.add_argument("--bank", type=int, default=159)
    parser.add_argument("--momentum", type=float, default=0.0)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [bench(args, int(t)) for t in args.threads.split(",")]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"PyTorch {torch.__version__} eager training step: effnet-lite0 + {args.bits}-bit DHCNN "
          f"head, batch {args.batch_size}, {args.input_size}x{args.input_size} input, "
          f"bank {args.bank}, {args.steps} timed steps")
    print(f"{'threads':>7}  {'median ms':>10}  {'min ms':>10}  {'mean ms':>10}  {'images/s':>9}")
    for r in results:
        print(f"{r['threads']:>7}  {r['median_ms']:>10.1f}  {r['min_ms']:>10.1f}  "
              f"{r['mean_ms']:>10.1f}  {r['images_per_second']:>9.1f}")


if __name__ == "__main__":
    main()

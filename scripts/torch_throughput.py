#!/usr/bin/env python3
"""Training throughput (images/s) of the trainer's `edge` and `seed-lab` networks in
PyTorch on the CPU: the PyTorch counterpart of `trainer fit` (issue 17, item 4).

The networks are the trainer's presets layer for layer (trainer/src/fit/config.rs,
`ModelConfig::layers`), in burn's layout (N, 10, 50, 50): the same convolutions,
poolings, leaky-ReLU slopes, dense head with the redshift joined after flattening,
dropout, L2 penalty added to the loss over every conv and dense weight (as the
trainer does, not Adam's weight decay), the Gaussian negative log-likelihood on
(mean, softplus(raw) + 0.005), Adam, batch 64. Random data of the right shapes.

Each step does what the trainer's loop does: slice a host batch, forward, read the
loss back (`.item()`), backward, optimiser step. One warm-up epoch, then
`--epochs` timed epochs of `--images` images each.

    python scripts/torch_throughput.py --preset seed-lab
"""

import argparse
import statistics
import sys
import time

import torch
from torch import nn
import torch.nn.functional as F

SIGMA_FLOOR = 0.005


class Net(nn.Module):
    def __init__(self, preset):
        super().__init__()
        if preset == "edge":
            self.slope, self.l2, self.lr, self.dropout = 0.1, 0.0, 2e-3, 0.0
            f = [nn.AvgPool2d(2)]
            cin = 10
            for c in (16, 32, 32):
                f += [nn.Conv2d(cin, c, 3, padding=1), nn.LeakyReLU(self.slope), nn.AvgPool2d(2)]
                cin = c
            flat, dense = 32 * 3 * 3, (32,)
        elif preset == "seed-lab":
            self.slope, self.l2, self.lr, self.dropout = 0.3, 1e-4, 1e-3, 0.2
            f, cin = [], 10
            for n in (3, 2):
                for _ in range(n):
                    f += [nn.Conv2d(cin, 20, 2), nn.LeakyReLU(self.slope)]
                    cin = 20
                f.append(nn.MaxPool2d(4))
            flat, dense = 20 * 2 * 2, (512, 256, 128, 64)
        else:
            raise SystemExit(f"unknown preset {preset}")
        self.features = nn.Sequential(*f)
        h, cin = [], flat + 1
        for u in dense:
            h += [nn.Linear(cin, u), nn.LeakyReLU(self.slope)]
            if self.dropout > 0:
                h.append(nn.Dropout(self.dropout))
            cin = u
        h.append(nn.Linear(cin, 2))
        self.head = nn.Sequential(*h)

    def forward(self, x, z):
        return self.head(torch.cat([self.features(x).flatten(1), z], 1))

    def penalty(self):
        return sum((m.weight**2).sum() for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def nll(raw, y):
    mu = raw[:, 0]
    sigma = F.softplus(raw[:, 1]) + SIGMA_FLOOR
    r = (y - mu) / sigma
    return (sigma.log() + 0.5 * r * r + 0.9189385332046727).mean()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=["edge", "seed-lab"], default="seed-lab")
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs after the warm-up")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    net = Net(a.preset)
    # burn's Adam defaults (beta 0.9 / 0.999, epsilon 1e-5).
    opt = torch.optim.Adam(net.parameters(), lr=net.lr, eps=1e-5)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(a.images, 10, 50, 50, generator=g) * 2
    z = torch.rand(a.images, 1, generator=g) * 3 - 1.5
    y = torch.rand(a.images, generator=g) + 14
    net.train()

    def epoch():
        t0 = time.perf_counter()
        order = torch.randperm(a.images, generator=g)
        for s in range(0, a.images, a.batch):
            idx = order[s : s + a.batch]
            raw = net(x[idx], z[idx])
            data_loss = nll(raw, y[idx])
            loss = data_loss + net.l2 * net.penalty() if net.l2 > 0 else data_loss
            data_loss.item()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return time.perf_counter() - t0

    warm = epoch()
    times = [epoch() for _ in range(a.epochs)]
    rates = [a.images / t for t in times]
    params = sum(p.numel() for p in net.parameters())
    print(
        f"torch {a.preset}: torch {torch.__version__}, {params} parameters, "
        f"threads {torch.get_num_threads()}, mkldnn {torch.backends.mkldnn.is_available()}, "
        f"warm-up {a.images / warm:.0f} images/s"
    )
    for i, r in enumerate(rates):
        print(f"epoch {i + 1}: {r:.1f} images/s")
    total = a.images * len(rates) / sum(times)
    print(
        f"RESULT torch {a.preset} {total:.1f} images/s "
        f"(timed epochs min {min(rates):.1f} median {statistics.median(rates):.1f})"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()

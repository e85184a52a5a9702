"""The same JEM iteration in PyTorch, to time jaxebm against it on the same machine at the same time.

``shared/CPU-NOTES.md`` timed the paper's PyTorch code (WRN-10-2, 3.6-3.7 s per iteration), but
a shared 2-core machine drifts by 20% within an hour, so the comparison in benchmarks/README.md
alternates this script with ``benchmarks/jem_step.py``. It is written for this repository (not
taken from the paper's code) and computes what the paper's training loop computes per
iteration, in its layout:

* a norm-free WRN-``depth``-``k`` with LeakyReLU(0.2), NCHW (PyTorch's default; ``--channels-last``
  for the other layout), the block structure of ``jaxebm.nn.wrn``;
* 64 chains drawn from a 10,000-image replay buffer, 5% of them re-initialised uniform on
  [-1, 1]; 20 SGLD steps x <- x + 1.0 * d/dx sum_i LSE f(x_i) + 0.01 * N(0, I), each an input
  gradient by ``torch.autograd.grad``;
* the loss CE(f(x_lab), y) - (mean LSE f(x_data) - mean LSE f(x_q)) on three batches of 64
  (labelled, data, samples), backward, one Adam step, the samples written back.

Data augmentation runs in the reference's data-loader workers, outside this loop, and is left
out (jaxebm's iteration includes it). Needs ``torch`` (not a jaxebm dependency)::

    python benchmarks/jem_step_torch.py [--depth 10 --width 2] [--repeats 7] [--channels-last]

Prints one JSON line: seconds per iteration (median of ``--repeats`` after one warm-up), and
the SGLD chain's share timed separately.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=stride, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride) if stride != 1 or c_in != c_out else None

    def forward(self, x):
        h = self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(x, 0.2)), 0.2))
        return h + (x if self.shortcut is None else self.shortcut(x))


class WRN(nn.Module):
    def __init__(self, depth: int, k: int, num_classes: int = 10):
        super().__init__()
        n = (depth - 4) // 6
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        blocks, c_in = [], 16
        for width, stride in zip((16 * k, 32 * k, 64 * k), (1, 2, 2)):
            for i in range(n):
                blocks.append(Block(c_in, width, stride if i == 0 else 1))
                c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x):
        h = F.leaky_relu(self.blocks(self.stem(x)), 0.2)
        return self.head(h.mean((2, 3)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=int, default=10)
    p.add_argument("--width", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--n-steps", type=int, default=20)
    p.add_argument("--buffer-size", type=int, default=10000)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--channels-last", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = WRN(args.depth, args.width).to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    buffer = torch.rand(args.buffer_size, 3, 32, 32) * 2 - 1
    b = args.batch

    def lse(x):
        return model(x).logsumexp(1)

    def chain():
        idx = torch.randint(0, args.buffer_size, (b,))
        x = buffer[idx]
        fresh = (torch.rand(b) < 0.05).float()[:, None, None, None]
        x = (fresh * (torch.rand_like(x) * 2 - 1) + (1 - fresh) * x).contiguous(memory_format=fmt)
        x.requires_grad_(True)
        for _ in range(args.n_steps):
            grad = torch.autograd.grad(lse(x).sum(), [x])[0]
            x.data += 1.0 * grad + 0.01 * torch.randn_like(x)
        return idx, x.detach()

    def iteration():
        idx, x_q = chain()
        x_lab = (torch.rand(b, 3, 32, 32) * 2 - 1).contiguous(memory_format=fmt)
        y = torch.randint(0, 10, (b,))
        x_data = (torch.rand(b, 3, 32, 32) * 2 - 1).contiguous(memory_format=fmt)
        loss = F.cross_entropy(model(x_lab), y) - (lse(x_data).mean() - lse(x_q).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
        buffer[idx] = x_q
        return float(loss.detach())

    def timed(fn):
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    timed(iteration)  # warm-up: allocator and oneDNN primitive caches
    runs = [timed(iteration) for _ in range(args.repeats)]
    chains = [timed(chain) for _ in range(args.repeats)]
    print(json.dumps({
        "bench": "jem_step_torch", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "arch": f"wrn-{args.depth}-{args.width}", "channels_last": args.channels_last,
        "loadavg": os.getloadavg(), "median_s": round(statistics.median(runs), 4),
        "chain_median_s": round(statistics.median(chains), 4),
        "per_sgld_step_s": round(statistics.median(chains) / args.n_steps, 4),
        "runs": [round(t, 4) for t in runs],
    }))


if __name__ == "__main__":
    main()

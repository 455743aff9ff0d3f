"""One training step of the report's CNN: autograd (nn.Conv1d / BatchNorm1d / MaxPool1d, i.e.
mkldnn kernels) against ReportCNN.hand_written_step (the hand-written step fit() uses), at
the report's batch sizes, on one core.

    PYTHONPATH=src python benchmarks/train_step.py [--steps 2000] [--repeat 5]

Both are timed in the same run, interleaved ``--repeat`` times (best kept), so the ratio holds on
a busy machine. Each step includes the loss and its gradients, not the optimizer update.
"""

from __future__ import annotations

import argparse
import time

import torch
from threadpoolctl import threadpool_limits
from torch.nn.functional import binary_cross_entropy_with_logits as bce

from voicegender.models.networks import ReportCNN

FLOP_PER_SAMPLE = 1.9e6  # report_cnn forward + backward, per example


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8, 12, 16])
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = ReportCNN(128).train()
    params = list(net.parameters())

    def autograd_step(x, y):
        return torch.autograd.grad(bce(net(x), y), params)

    by_hand_step = net.hand_written_step()
    # as fit() does around the hand-written step; after it, which loads the BLAS it calls
    threadpool_limits(1, user_api="blas")

    print(f"{'batch':>5}  {'autograd ms':>11}  {'by hand ms':>10}  {'ratio':>5}  by hand samples/s  GFLOP/s")
    for batch in args.batch_sizes:
        x, y = torch.randn(batch, 128), (torch.rand(batch) < 0.5).float()
        best = {autograd_step: float("inf"), by_hand_step: float("inf")}
        for _ in range(args.repeat):
            for step in best:
                for _ in range(50):
                    step(x, y)
                started = time.perf_counter()
                for _ in range(args.steps):
                    step(x, y)
                best[step] = min(best[step], (time.perf_counter() - started) / args.steps)
        slow, fast = best[autograd_step], best[by_hand_step]
        print(
            f"{batch:>5}  {slow * 1e3:>11.3f}  {fast * 1e3:>10.3f}  {slow / fast:>5.2f}  "
            f"{batch / fast:>17,.0f}  {batch * FLOP_PER_SAMPLE / fast / 1e9:>7.1f}"
        )
    print("ratio: autograd time / by-hand time per step (higher is better)")


if __name__ == "__main__":
    main()

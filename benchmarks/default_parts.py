"""A/B figures for the parts of the default run that benchmarks/pipeline.py adds up, each pair
timed in the same run, interleaved ``--repeat`` times (best kept), so the ratios hold on a busy
machine (absolute figures do not):

* gunzip: a LibriTTS-like archive's scan (the label stage's pass) with zlib vs python-isal;
* ge2e encoder: one utterance's partials per call (as before batching) vs blocks of 32 partials
  of many utterances (``speaker_encoder.ENCODER_BATCH``), float32, ``mixed`` and ``bfloat16``, on one
  core, with each variant's cosine to the per-utterance embeddings;
* the linear model's training step (batch 8, 256 inputs): autograd vs ``Linear.hand_written_step``.

    PYTHONPATH=src python benchmarks/default_parts.py [--utterances 60] [--repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import SAMPLE, build_archives  # noqa: E402  (the same archives as the pipeline benchmark)


def best_of(fns: dict, repeat: int) -> dict:
    best = {name: float("inf") for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def gunzip(repeat: int) -> None:
    from voicegender.corpora import libritts

    with tempfile.TemporaryDirectory() as tmp:
        info = build_archives(Path(SAMPLE), Path(tmp))
        path = Path(info["train"])
        isal = libritts._igzip

        def scan(module):
            def run():
                libritts._igzip = module
                libritts.scan_archive(path)

            return run

        try:
            best = best_of({"zlib": scan(None), "isal": scan(isal)}, repeat)
        finally:
            libritts._igzip = isal
        mb = path.stat().st_size / 1e6
        print(
            f"gunzip + tar scan of {mb:.0f} MB: zlib {mb / best['zlib']:.0f} MB/s, isal {mb / best['isal']:.0f} MB/s "
            f"(ratio {best['zlib'] / best['isal']:.2f})"
        )


def encoder(n: int, repeat: int) -> None:
    from voicegender.features import speaker_encoder as E
    from voicegender.audio.decode import decode_audio

    with open(Path(SAMPLE) / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:n]
    signals = [decode_audio((Path(SAMPLE) / r["path"]).read_bytes()) for r in rows]
    seconds = sum(len(y) / sr for y, sr in signals)
    # Resemblyzer's own settings (the encoder's defaults)
    resemblyzer = dict(rate=1.3, min_coverage=0.75, target_dbfs=-30.0)
    mels = [E.partial_mels(y, sr, **resemblyzer) for y, sr in signals]  # once untimed: imports, filterbank
    front = best_of({"front": lambda: [E.partial_mels(y, sr, **resemblyzer) for y, sr in signals]}, repeat)["front"]
    n_partials = sum(len(m) for m in mels)
    torch.set_num_threads(1)
    model = E.load_encoder()

    def per_utterance():
        with torch.inference_mode():
            return [E.combine_partials(model(torch.from_numpy(m)).numpy()) for m in mels]

    out = {}
    fns = {
        "per utterance": per_utterance,
        "batched float32": lambda: E.ge2e_embeddings(mels, device="cpu", precision="float32"),
        "batched mixed": lambda: E.ge2e_embeddings(mels, device="cpu", precision="mixed"),
        "batched bfloat16": lambda: E.ge2e_embeddings(mels, device="cpu", precision="bfloat16"),
    }
    for name, fn in fns.items():
        out[name] = fn()
    best = best_of(fns, repeat)
    print(
        f"ge2e on {len(rows)} real utterances ({seconds:.0f} s, {n_partials} partials at 1.3/s), one core; "
        f"front end (resample, mel) {seconds / front:.0f}x real time"
    )
    for name, t in best.items():
        cos = min(float(a @ b) for a, b in zip(out["per utterance"], out[name]))
        print(
            f"  encoder {name:<16} {n_partials / t:6.0f} partials/s = {seconds / t:5.0f}x real time per core, "
            f"ratio {best['per utterance'] / t:.2f}; min cosine to per utterance {cos:.6f}"
        )
    print(f"  native bfloat16 here: {E.native_bfloat16('cpu')} (elsewhere mixed and bfloat16 run as float32)")


def linear_step(repeat: int, steps: int = 2000) -> None:
    from torch.nn.functional import binary_cross_entropy_with_logits as bce

    from voicegender.models.networks import Linear

    torch.set_num_threads(1)
    net = Linear(256, dropout=0.0).train()
    params = list(net.parameters())
    x, y = torch.randn(8, 256), (torch.arange(8) % 2).float()
    by_hand = net.hand_written_step()

    def autograd():
        for _ in range(steps):
            torch.autograd.grad(bce(net(x), y), params)

    def hand():
        for _ in range(steps):
            by_hand(x, y)

    best = best_of({"autograd": autograd, "by hand": hand}, repeat)
    print(
        f"linear step, batch 8: autograd {best['autograd'] / steps * 1e6:.0f} us, by hand "
        f"{best['by hand'] / steps * 1e6:.0f} us (ratio {best['autograd'] / best['by hand']:.1f})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--utterances", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    linear_step(args.repeat)
    encoder(args.utterances, args.repeat)
    gunzip(args.repeat)


if __name__ == "__main__":
    main()

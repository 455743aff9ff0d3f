"""Speech detection (voicegender.audio.speech): what it rejects, what it accepts, and how fast.

    python benchmarks/speech_detection.py [--sets DIR ...] [--params params.yaml]

Prints, with the `predict:` settings of params.yaml:
- the verdict on generated non-speech (silence, white / pink noise, a pure tone, clicks, files
  under 0.1 s): each must be `no speech`;
- how many real utterances of each set (manifest.csv: path,speaker,sex; read in place) have
  less than predict.min_speech_s of speech (must be 0), with the smallest amounts found;
- the VAD's speed on one core, x real time (whole recordings scored, no early stop);
- what the speech check adds to featurize on those files (where it stops at min_speech_s).
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from voicegender.audio.decode import decode_audio
from voicegender.params import FeatureSettings, load_params
from voicegender.audio.speech import (
    NoSpeech,
    require_speech,
    segments_from_probabilities,
    speech_probabilities,
    speech_seconds,
    total_seconds,
    vad_settings,
)

ROOT = Path(__file__).resolve().parents[1]
SETS = [  # the real speech at hand, beside the repository
    ROOT.parent / "shared/data/librispeech-clean100-sample",
    ROOT.parent / "shared/data/cross-corpus-dev",
]


def non_speech(sr: int = 16000, seconds: float = 3.0, seed: int = 0) -> dict[str, np.ndarray]:
    """Generated recordings with no speech in them."""
    rng = np.random.default_rng(seed)
    n = int(sr * seconds)
    white = rng.standard_normal(n)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    pink = np.fft.irfft(spectrum / np.sqrt(np.maximum(np.arange(spectrum.size), 1)), n)
    t = np.arange(n) / sr
    clicks = np.zeros(n)
    clicks[:: sr // 4] = 0.9  # 4 clicks a second
    out = {
        "silence": np.zeros(n),
        "white noise": 0.1 * white,
        "loud white noise": 0.5 * white / np.abs(white).max(),
        "pink noise": 0.3 * pink / np.abs(pink).max(),
        "pure tone 220 Hz": 0.3 * np.sin(2 * np.pi * 220 * t),
        "pure tone 1 kHz": 0.3 * np.sin(2 * np.pi * 1000 * t),
        "clicks": clicks,
        "6 ms of noise": 0.1 * white[: int(0.006 * sr)],
        "90 ms of noise": 0.1 * white[: int(0.09 * sr)],
    }
    return {k: v.astype(np.float32) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="*", type=Path, default=SETS)
    ap.add_argument("--params", default=ROOT / "params.yaml")
    args = ap.parse_args()
    predict = load_params(args.params).predict
    vad = vad_settings(predict)
    min_speech = predict.min_speech_s
    print(f"settings: min_speech_s={min_speech} {vad}")

    print("\nnon-speech (each must be `no speech`):")
    for name, y in non_speech().items():
        try:
            found = require_speech(y, 16000, min_speech_s=min_speech, **vad)
            verdict = f"ACCEPTED ({found:.2f} s of speech)"
        except NoSpeech:
            verdict = f"no speech ({speech_seconds(y, 16000, **vad):.2f} s found)"
        print(f"  {name:<18} {verdict}")

    torch.set_num_threads(1)
    scored_s = audio_s = 0.0
    for root in args.sets:
        manifest = root / "manifest.csv"
        if not manifest.exists():
            print(f"\n{root}: not found, skipped")
            continue
        rows = list(csv.DictReader(manifest.open()))
        rejected, amounts = [], []
        for r in rows:
            y, sr = decode_audio((root / r["path"]).read_bytes(), name=r["path"])
            started = time.perf_counter()
            probs = speech_probabilities(y, sr)
            scored_s += time.perf_counter() - started
            audio_s += y.size / sr
            found = total_seconds(segments_from_probabilities(probs, y.size / sr, **{**vad, "pad_s": 0.0}))
            amounts.append((found, r["path"]))
            if found < min_speech:
                rejected.append(r["path"])
        amounts.sort()
        print(
            f"\n{root.name}: {len(rejected)} of {len(rows)} real utterances rejected "
            f"(less than {min_speech} s of speech)" + (f": {rejected}" if rejected else "")
        )
        print("  least speech found: " + ", ".join(f"{a:.2f} s ({p})" for a, p in amounts[:3]))
    if audio_s:
        print(
            f"\nVAD speed, one core (torch threads 1): {audio_s:.0f} s of audio in {scored_s:.1f} s = "
            f"{audio_s / scored_s:.0f}x real time (decode excluded)"
        )
    featurize_cost(args.sets, load_params(args.params).features, {"min_speech_s": min_speech, **vad})


def featurize_cost(sets: list[Path], features: FeatureSettings, speech: dict) -> None:
    """What the speech check adds to featurize (it stops scoring once min_speech_s is found), one
    core, the two runs alternated so that a busy machine slows both alike."""
    from voicegender.features.extraction import extract_many

    items = [
        (r["path"], (root / r["path"]).read_bytes())
        for root in sets
        if (root / "manifest.csv").exists()
        for r in csv.DictReader((root / "manifest.csv").open())
    ]
    if not items:
        return
    list(extract_many(items[:2], features, n_jobs=1, speech=speech))  # warm-up (imports, JIT)
    wall = {"without": 0.0, "with": 0.0}
    for _ in range(2):
        for label, check in (("without", None), ("with", speech)):
            started = time.perf_counter()
            list(extract_many(items, features, n_jobs=1, speech=check))
            wall[label] += time.perf_counter() - started
    extra_ms = (wall["with"] - wall["without"]) / (2 * len(items)) * 1000
    print(
        f"featurize ({features.kind}, one core) on these {len(items)} files: {wall['without'] / 2:.1f} s "
        f"without the speech check, {wall['with'] / 2:.1f} s with it (ratio {wall['with'] / wall['without']:.2f}; "
        f"+{extra_ms:.1f} ms per recording)"
    )


if __name__ == "__main__":
    main()

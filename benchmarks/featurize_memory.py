"""Peak memory of featurization as the corpus grows: the default size against 10x it.

Builds LibriTTS-shaped archives of N utterances (tone + noise, 24 kHz, ~`--seconds` each) for
N = `--utterances` and 10 x that, runs `voicegender.features.featurize.build_features` on each in a fresh
process, and samples the resident memory of that process and its workers (summed) every 50 ms.
Prints both peaks and their ratio: bounded memory means a ratio near 1, not near 10.

    python benchmarks/featurize_memory.py [--utterances 768] [--seconds 3] [--kind mean_mel]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf

CHILD = """
import json, sys
from voicegender.features.featurize import build_features
from voicegender.corpora.labels import read_labels
from voicegender.params import FeatureSettings
rows = read_labels(sys.argv[1])
report = build_features(rows, FeatureSettings(kind=sys.argv[3], sample_rate=22050, ge2e_precision="float32"), sys.argv[2], log=lambda m: None)
print(json.dumps({"utterances": report["utterances"], "skipped": len(report["skipped"])}))
"""


def build_archive(path: Path, n: int, seconds: float, sample_rate: int = 24000) -> list[dict]:
    """A LibriTTS-layout tar.gz of ``n`` utterances over 20 speakers; returns labels rows."""
    rng = np.random.default_rng(0)
    rows = []
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    with tarfile.open(path, "w:gz", compresslevel=1) as tf:
        for i in range(n):
            spk = str(100 + i % 20)
            f0 = 120 if int(spk) % 2 else 210
            y = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.05 * rng.standard_normal(len(t))
            buf = io.BytesIO()
            sf.write(buf, y.astype(np.float32), sample_rate, format="WAV", subtype="PCM_16")
            member = f"LibriTTS/bench/{spk}/1/{spk}_1_{i:06d}_000000.wav"
            info = tarfile.TarInfo(member)
            info.size = buf.tell()
            buf.seek(0)
            tf.addfile(info, buf)
            rows.append(
                {
                    "id": f"{spk}_1_{i:06d}_000000",
                    "speaker": spk,
                    "sex": "M" if int(spk) % 2 else "F",
                    "split": ("train", "val", "test")[i % 3],
                    "source": str(path),
                    "member": member,
                    "seconds": seconds,
                }
            )
    return rows


def peak_rss(cmd: list[str]) -> tuple[float, float, str]:
    """Run ``cmd``; return (peak summed RSS of it and its children in MiB, wall s, stdout)."""
    started = time.perf_counter()
    proc = psutil.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [proc] + proc.children(recursive=True)
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    out = proc.stdout.read()
    if proc.returncode:
        raise SystemExit(f"featurization failed ({proc.returncode})")
    return peak / 2**20, time.perf_counter() - started, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--utterances", type=int, default=768, help="the default corpus size (utterances)")
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds per utterance")
    ap.add_argument("--kind", default="mean_mel")
    args = ap.parse_args()
    from voicegender.corpora.labels import write_labels

    results = {}
    with tempfile.TemporaryDirectory(prefix="vg-mem-") as tmp:
        for scale in (1, 10):
            n = args.utterances * scale
            archive = Path(tmp) / f"x{scale}.tar.gz"
            rows = build_archive(archive, n, args.seconds)
            labels = Path(tmp) / f"labels{scale}.csv"
            write_labels(rows, labels)
            mib, wall, out = peak_rss(
                [sys.executable, "-c", CHILD, str(labels), str(Path(tmp) / f"f{scale}"), args.kind]
            )
            audio_mib = archive.stat().st_size / 2**20
            results[scale] = mib
            print(
                f"{n:>6} utterances ({n * args.seconds / 3600:.1f} h, archive {audio_mib:.0f} MiB): "
                f"peak RSS {mib:.0f} MiB (process + workers), {wall:.0f} s; {json.loads(out)}",
                flush=True,
            )
            archive.unlink()
    print(f"ratio: {results[10] / results[1]:.2f} (peak RSS at 10x the corpus / at 1x; 10 would mean linear growth)")


if __name__ == "__main__":
    main()

"""``voicegender predict FILE...``: the trained model's answer for each recording.

Any sample rate, wav or flac (anything libsndfile reads): the model card's features config says
how to featurize, exactly as the featurize stage did for training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path



def predict_files(paths: list[str], model_dir: str = "models") -> list[dict]:
    """One dict per path: ``{"file", "sex", "p_female"}`` or ``{"file", "error"}``.

    A bad file (missing, not audio, too short) yields an error entry; the others are answered.
    Raises FileNotFoundError when the model itself is missing.
    """
    from voicegender.features import featurize
    from voicegender.models import load_trained
    from voicegender.training import predict_proba

    model, card = load_trained(model_dir)
    threshold = float(card.get("threshold", 0.5))
    shape = tuple(card["input_shape"])
    out = []
    for path in paths:
        try:
            p = Path(path)
            if not p.is_file():
                raise ValueError("no such file" if not p.exists() else "not a regular file")
            x = featurize(p.read_bytes(), card["features"])
            if x.shape != shape:
                raise ValueError(f"feature shape {x.shape} differs from the model's {shape}")
            p_female = float(predict_proba(model, x[None])[0])
        except Exception as exc:  # noqa: BLE001 -- one bad file must not stop the others
            out.append({"file": path, "error": str(exc) or type(exc).__name__})
            continue
        out.append({"file": path, "sex": "female" if p_female >= threshold else "male", "p_female": p_female})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voicegender", description="Speaker sex (female / male) from speech.")
    sub = parser.add_subparsers(dest="command", required=True)
    pred = sub.add_parser("predict", help="predict the speaker's sex of each audio file (wav, flac, any rate)")
    pred.add_argument("files", nargs="+", metavar="FILE")
    pred.add_argument("--model-dir", default="models", help="folder with model.pt and model.json (default: models)")
    args = parser.parse_args(argv)

    try:
        results = predict_files(args.files, args.model_dir)
    except (FileNotFoundError, KeyError, RuntimeError) as exc:
        print(f"voicegender: cannot load the model from {args.model_dir}: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for r in results:
        if "error" in r:
            failed += 1
            print(f"{r['file']}\terror: {r['error']}", file=sys.stderr)
        else:
            # p_female: the model's probability that the speaker is female (the threshold was set on validation)
            print(f"{r['file']}\t{r['sex']}\tp_female={r['p_female']:.3f}")
    sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

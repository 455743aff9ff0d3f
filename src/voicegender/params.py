"""Load params.yaml and check every key before any work starts.

The one place that knows the shape of the parameters: stages call :func:`load_params` and
get a plain dict back, or a :class:`ParamError` that names each offending key.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import yaml

from voicegender.errors import UserError

CORPORA = ("synthetic", "libritts", "folder")
MODELS = ("linear", "report_cnn", "cnn1d", "cnn2d", "mlp")
OPTIMIZERS = ("adam", "adamw", "sgd")
DISTRIBUTIONS = ("loguniform", "uniform", "choice", "randint")
BASELINE_MODELS = ("logistic", "mlp", "random_forest", "hist_gradient_boosting")  # voicegender.baselines.BASELINES


class ParamError(UserError, ValueError):
    """One or more parameters are missing or invalid; the message names each key."""


def load_params(path: str | Path = "params.yaml") -> dict:
    """Read ``path`` and return its validated parameters."""
    try:
        with open(path, encoding="utf-8") as f:
            params = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ParamError(f"cannot read {path}: {e}") from None
    if not isinstance(params, dict):
        raise ParamError(f"{path}: expected a mapping of keys to values")
    validate_params(params)
    return params


def validate_params(params: dict) -> None:
    """Raise :class:`ParamError` listing every invalid key of ``params``."""
    errors: list[str] = []
    check = _Checker(params, errors)

    check("corpus", _one_of(CORPORA))
    check("lr", _tuned_or(_positive_float))
    check("batch_size", _tuned_or(_positive_int))
    check("epochs", _positive_int)
    check("data.seed", _int)
    check("train.seed", _int)
    if "seed" in params:
        errors.append("seed: replaced by data.seed (corpus synthesis, speaker split) and train.seed "
                      "(initialisation, shuffling, the search's sampling)")
    check("device", _device)

    check("data.val_fraction", _fraction)
    check("data.synthetic.train_speakers", _int_at_least(4))
    check("data.synthetic.test_speakers", _int_at_least(2))
    check("data.synthetic.utterances_per_speaker", _positive_int)
    knobs = {k: v for k, v in (_get(params, "data.synthetic", {}) or {}).items()
             if k not in ("train_speakers", "test_speakers", "utterances_per_speaker")}
    try:
        from voicegender.synth import check_knobs

        check_knobs(knobs)
    except (TypeError, ValueError) as e:
        errors.append(f"data.synthetic: {e}")
    check("data.libritts.base_url", _url)
    check("data.libritts.train_subset", _nonempty_str)
    check("data.libritts.test_subset", _nonempty_str)
    check("data.libritts.checksums", _checksums)
    check("data.libritts.local_dir", _optional(_nonempty_str))
    check("data.libritts.cache_dir", _optional(_nonempty_str))
    check("data.folder.manifest", _optional(_nonempty_str))
    check("data.folder.recordings", _nonempty_str)
    check("data.folder.test_fraction", _fraction)
    if params.get("corpus") == "folder" and _get(params, "data.folder.manifest") is None:
        errors.append("data.folder.manifest: corpus is `folder`, so a manifest CSV is required")

    features = _get(params, "features")
    if not isinstance(features, dict):
        errors.append("features: must be a mapping")
    else:
        from voicegender.features import validate_feature_config

        try:
            validate_feature_config(features)
        except ValueError as e:
            errors.append(str(e))

    errors.extend(_predict_errors(params))

    check("model.name", _one_of(MODELS))
    check("model.channels", _list_of_positive_ints)
    check("model.hidden", _positive_int)
    check("model.dropout", _fraction_below_one)

    check("train.optimizer", _one_of(OPTIMIZERS))
    check("train.weight_decay", _nonnegative_float)
    check("train.standardize", _bool)
    check("train.patience", _optional(_positive_int))
    check("evaluate.bootstrap", _positive_int)
    check("evaluate.calibration_bins", _int_at_least(2))

    check("baselines.models", _list_of(BASELINE_MODELS))
    check("baselines.n_jobs", _nonzero_int)
    check("baselines.logistic.C", _positive_float)
    check("baselines.logistic.max_iter", _positive_int)
    check("baselines.mlp.hidden", _list_of_positive_ints)
    check("baselines.mlp.alpha", _nonnegative_float)
    check("baselines.mlp.max_iter", _positive_int)
    check("baselines.mlp.early_stopping", _bool)
    check("baselines.random_forest.n_estimators", _positive_int)
    check("baselines.random_forest.max_depth", _optional(_positive_int))
    check("baselines.random_forest.min_samples_leaf", _positive_int)
    check("baselines.hist_gradient_boosting.max_iter", _positive_int)
    check("baselines.hist_gradient_boosting.learning_rate", _positive_float)
    check("baselines.hist_gradient_boosting.max_leaf_nodes", _int_at_least(2))
    check("baselines.hist_gradient_boosting.l2_regularization", _nonnegative_float)

    check("tune.num_samples", _positive_int)
    check("tune.search", _one_of(("random", "tpe")))
    check("tune.connect_timeout_s", _positive_float)
    check("tune.address", _optional(_nonempty_str))
    check("tune.storage", _optional(_nonempty_str))
    check("tune.cpus_per_trial", _positive_float)
    check("tune.gpus_per_trial", _auto_or_nonnegative)
    check("tune.metric", _one_of(("val_loss", "val_accuracy")))
    check("tune.mode", _one_of(("min", "max")))
    if (_get(params, "tune.metric"), _get(params, "tune.mode")) in (("val_loss", "max"), ("val_accuracy", "min")):
        errors.append("tune.mode: val_loss is minimised (min) and val_accuracy maximised (max)")
    check("tune.asha.grace_period", _positive_int)
    check("tune.asha.reduction_factor", _float_above(1.0))
    space = _get(params, "tune.space")
    if not isinstance(space, dict) or not space:
        errors.append("tune.space: must be a non-empty mapping of hyperparameter -> distribution")
    else:
        for name, dist in space.items():
            msg = _distribution(dist) or _searchable(name, dist)
            if msg:
                errors.append(f"tune.space.{name}: {msg}")
        for name in ("lr", "batch_size"):
            if name not in space:
                errors.append(f"tune.space.{name}: missing: every trial needs one; to fix it, give a "
                              f"single value, e.g. {name}: {{type: choice, values: [{'1.0e-3' if name == 'lr' else 16}]}}")

    if errors:
        raise ParamError("invalid params:\n  " + "\n  ".join(errors))


def validate_predict(settings: dict) -> None:
    """Raise :class:`ParamError` unless ``settings`` is a valid ``predict:`` section (as kept in a
    model card, or with command-line overrides applied)."""
    errors = _predict_errors({"predict": settings})
    if errors:
        raise ParamError("invalid predict settings:\n  " + "\n  ".join(errors))


def _predict_errors(params: dict) -> list[str]:
    errors: list[str] = []
    check = _Checker(params, errors)
    check("predict.min_speech_s", _nonnegative_float)  # 0: no speech check
    check("predict.vad_threshold", _open_unit)
    check("predict.vad_neg_threshold", _open_unit)
    check("predict.min_segment_s", _nonnegative_float)
    check("predict.min_silence_s", _nonnegative_float)
    check("predict.pad_s", _nonnegative_float)
    check("predict.max_whole_s", _positive_float)
    high, low = _get(params, "predict.vad_threshold", None), _get(params, "predict.vad_neg_threshold", None)
    if _is_number(high) and _is_number(low) and low > high:
        errors.append(f"predict.vad_neg_threshold: must not exceed predict.vad_threshold ({high}), got {low!r}")
    return errors


# -- checks: each returns None when the value is fine, else what is wrong with it ------------

_MISSING = object()


def _get(params: dict, dotted: str, default: Any = _MISSING) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


class _Checker:
    def __init__(self, params: dict, errors: list[str]):
        self.params, self.errors = params, errors

    def __call__(self, key: str, rule: Callable[[Any], str | None]) -> None:
        value = _get(self.params, key)
        if value is _MISSING:
            self.errors.append(f"{key}: missing")
            return
        msg = rule(value)
        if msg:
            self.errors.append(f"{key}: {msg}, got {value!r}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v):
    return None if isinstance(v, int) and not isinstance(v, bool) else "must be an integer"


def _positive_int(v):
    return None if _int(v) is None and v > 0 else "must be a positive integer"


def _int_at_least(low: int):
    return lambda v: None if _int(v) is None and v >= low else f"must be an integer >= {low}"


def _positive_float(v):
    if isinstance(v, str):
        return "must be a number (write floats like 1.0e-3: YAML reads 1e-3 as a string)"
    return None if _is_number(v) and v > 0 else "must be a positive number"


def _nonnegative_float(v):
    return None if _is_number(v) and v >= 0 else "must be a number >= 0"


def _float_above(low: float):
    return lambda v: None if _is_number(v) and v > low else f"must be a number > {low}"


def _fraction(v):
    return None if _is_number(v) and 0 < v < 1 else "must be a number strictly between 0 and 1"


def _open_unit(v):
    return None if _is_number(v) and 0 < v < 1 else "must be a probability strictly between 0 and 1"


def _fraction_below_one(v):
    return None if _is_number(v) and 0 <= v < 1 else "must be a number in [0, 1)"


def _bool(v):
    return None if isinstance(v, bool) else "must be true or false"


def _nonempty_str(v):
    return None if isinstance(v, str) and v.strip() else "must be a non-empty string"


def _url(v):
    ok = isinstance(v, str) and v.startswith(("http://", "https://", "file://"))
    return None if ok else "must be an http(s):// or file:// URL"


def _one_of(choices):
    return lambda v: None if v in choices else "must be one of " + ", ".join(choices)


def _optional(rule):
    return lambda v: None if v is None else rule(v)


def _tuned_or(rule):
    def check(v):
        msg = None if v == "tuned" else rule(v)
        return msg and "must be `tuned` or " + msg.removeprefix("must be ")

    return check


def _auto_or_nonnegative(v):
    return None if v == "auto" or _nonnegative_float(v) is None else "must be `auto` or a number >= 0"


def _device(v):
    ok = isinstance(v, str) and (v in ("auto", "cpu", "cuda", "mps") or v.startswith("cuda:"))
    return None if ok else "must be auto, cpu, cuda, cuda:N or mps"


def _list_of_positive_ints(v):
    ok = isinstance(v, list) and v and all(_positive_int(c) is None for c in v)
    return None if ok else "must be a non-empty list of positive integers"


def _list_of(choices):
    def check(v):
        ok = isinstance(v, list) and v and all(c in choices for c in v)
        return None if ok else "must be a non-empty list of " + ", ".join(choices)

    return check


def _nonzero_int(v):
    return None if _int(v) is None and v != 0 else "must be a non-zero integer (-1 = all cores)"


def _checksums(v):
    if not isinstance(v, dict):
        return "must be a mapping subset -> sha256 hex"
    bad = [k for k, h in v.items() if not (isinstance(h, str) and len(h) == 64)]
    return f"entries {bad} are not 64-hex-digit sha256 values" if bad else None


SEARCHABLE = ("lr", "batch_size", "epochs", "name", "channels", "hidden", "dropout")


def _searchable(name: str, d: dict) -> str | None:
    """What is wrong with searching ``name`` over ``d`` (its distribution is already valid)."""
    key = name.removeprefix("model.")
    if key not in SEARCHABLE:
        return "unknown hyperparameter: searchable are " + ", ".join(SEARCHABLE)
    values = d["values"] if d["type"] == "choice" else [d["low"], d["high"]]
    rules = {"lr": _positive_float, "batch_size": _positive_int, "epochs": _positive_int,
             "name": _one_of(MODELS), "channels": _list_of_positive_ints, "hidden": _positive_int,
             "dropout": _fraction_below_one}
    if key in ("batch_size", "epochs", "hidden", "name", "channels") and d["type"] in ("uniform", "loguniform"):
        return f"{key} takes whole values: use choice or randint"
    bad = [v for v in values if rules[key](v)]
    return f"invalid value(s) {bad}: {rules[key](bad[0])}" if bad else None


def _distribution(d: Any) -> str | None:
    if not isinstance(d, dict) or d.get("type") not in DISTRIBUTIONS:
        return "must be a mapping with type one of " + ", ".join(DISTRIBUTIONS)
    kind = d["type"]
    if kind == "choice":
        values = d.get("values")
        return None if isinstance(values, list) and values else "choice needs a non-empty `values` list"
    low, high = d.get("low"), d.get("high")
    if not (_is_number(low) and _is_number(high) and low < high):
        return f"{kind} needs numbers low < high (write floats like 1.0e-5), got low={low!r} high={high!r}"
    if kind == "loguniform" and low <= 0:
        return "loguniform needs low > 0"
    return None

"""Feature settings for the tests: schema-checked, from a few keys."""

from voicegender.params import FeatureSettings


def fs(overrides: dict | None = None) -> FeatureSettings:
    """``features:`` settings for a test: the report's front end (``mean_mel`` at 22,050 Hz) and the
    GE2E network as trained (``float32``) unless ``overrides`` say otherwise; every other key is
    the schema's default (params.yaml's value)."""
    return FeatureSettings.model_validate(
        {"kind": "mean_mel", "sample_rate": 22050, "ge2e_precision": "float32", **(overrides or {})}
    )


def check(features: dict) -> FeatureSettings:
    """A ``features:`` mapping checked by the schema alone (its defaults for the rest); ParamError
    (a ValueError) naming each bad key as ``features.<key>``."""
    from voicegender.params import validate

    return validate(FeatureSettings, features, "invalid features", prefix="features.")

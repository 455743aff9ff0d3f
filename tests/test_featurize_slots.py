"""featurize's plan: where each extracted vector goes (recordings, then the training copies)."""

from voicegender.features.featurize import extraction_passes, plan_slots
from voicegender.params import AugmentSettings, FeatureSettings


def _row(uid, split, speaker="s1"):
    return {"id": uid, "split": split, "speaker": speaker, "source": "a.tar", "member": f"{uid}.wav"}


def test_copies_follow_the_training_recordings_and_are_named_by_copy():
    rows = [_row("t1", "train"), _row("v1", "val"), _row("t2", "train"), _row("e1", "test")]
    plan = plan_slots(rows, AugmentSettings(copies=2, max_per_speaker=None))
    assert [(r["id"], k) for r, k in plan.by_split["train"]] == [
        ("t1", 0), ("t2", 0), ("t1", 1), ("t2", 1), ("t1", 2), ("t2", 2)
    ]  # fmt: skip
    assert [plan.uid("train", i) for i in range(6)] == ["t1", "t2", "t1~aug1", "t2~aug1", "t1~aug2", "t2~aug2"]
    assert plan.slot[("a.tar", "t2.wav")] == ("train", 1) and plan.slot[(("a.tar", "t2.wav"), 2)] == ("train", 5)
    assert plan.slot[("a.tar", "e1.wav")] == ("test", 0) and plan.total == 8
    assert plan.copies_of == {("a.tar", "t1.wav"): "t1", ("a.tar", "t2.wav"): "t2"}  # val and test: never
    none = plan_slots(rows, AugmentSettings(copies=0))
    assert none.total == 4 and not none.copies_of


def test_ge2e_train_rate_makes_a_second_pass_for_test():
    cfg = FeatureSettings(kind="ge2e", ge2e_rate=1.0, ge2e_train_rate=2.0)
    (train_cfg, train_splits), (test_cfg, test_splits) = extraction_passes(cfg)
    assert (train_cfg.ge2e_rate, train_splits, test_cfg.ge2e_rate, test_splits) == (
        2.0,
        {"train", "val"},
        1.0,
        {"test"},
    )
    assert extraction_passes(FeatureSettings(kind="mean_mel")) == [(FeatureSettings(kind="mean_mel"), None)]

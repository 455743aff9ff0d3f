"""The search's early-stopping rule: ASHA's decisions, independent of the order results arrive in."""

import random

import numpy as np
import pytest

from voicegender.models.tuning import OrderedHalving


def curves(n_trials, seed):
    """Per trial a validation-loss curve of 10 or 20 epochs (rewards = -loss)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_trials):
        start, rate = rng.uniform(0.3, 0.7), rng.uniform(0.0, 0.1)
        out.append([-(start * np.exp(-rate * e) + rng.normal(0, 0.01)) for e in range(1, rng.choice([10, 20]) + 1)])
    return out


def run_sequentially(rule, rewards):
    """Each trial to its end (or its stop) before the next starts: what ASHA does one by one."""
    for rs in rewards:
        i = rule.add()
        for epoch, r in enumerate(rs, 1):
            rule.result(i, epoch, r)
            if rule.stopped(i):
                break
        rule.finish(i)
    return [rule.epochs(i) for i in range(len(rewards))]


def run_interleaved(rule, rewards, seed, concurrency=3):
    """Trials started in order, ``concurrency`` at a time, results arriving in a random order;
    a stopped trial may report an epoch or more before it learns so."""
    rng = random.Random(seed)
    queue, running = list(range(len(rewards))), {}
    for _ in rewards:
        rule.add()
    while queue or running:
        while queue and len(running) < concurrency:
            running[queue.pop(0)] = 0
        t = rng.choice(sorted(running))
        if rule.stopped(t) and rng.random() < 0.7 or running[t] == len(rewards[t]):
            rule.finish(t)
            del running[t]
            continue
        running[t] += 1
        rule.result(t, running[t], rewards[t][running[t] - 1])
    return [rule.epochs(i) for i in range(len(rewards))]


def test_milestones_are_ashas():
    assert OrderedHalving(grace_period=1, reduction_factor=2, max_t=20).milestones == [1, 2, 4, 8, 16]
    assert OrderedHalving(grace_period=2, reduction_factor=3, max_t=20).milestones == [2, 6, 18]
    assert OrderedHalving(grace_period=1, reduction_factor=2, max_t=16).milestones == [1, 2, 4, 8]


@pytest.mark.parametrize("seed", range(5))
def test_sequential_run_decides_like_rays_asha(seed):
    from ray.tune.schedulers.async_hyperband import _Bracket

    rewards = curves(20, seed)
    ours = run_sequentially(OrderedHalving(grace_period=1, reduction_factor=2, max_t=20), rewards)
    bracket = _Bracket(min_t=1, max_t=20, reduction_factor=2, s=0)
    theirs = []
    for i, rs in enumerate(rewards):
        trial = type("T", (), {"trial_id": str(i)})()
        epochs = len(rs)
        for epoch, r in enumerate(rs, 1):
            if epoch < 20 and bracket.on_result(trial, epoch, r) == "STOP":
                epochs = epoch
                break
        theirs.append(epochs)
    assert ours == theirs
    assert min(ours) == 1 and max(ours) >= 10  # the rule did stop some and keep others


@pytest.mark.parametrize("seed", range(5))
def test_decisions_do_not_depend_on_the_order_results_arrive_in(seed):
    rewards = curves(20, seed)
    expected = run_sequentially(OrderedHalving(grace_period=1, reduction_factor=2, max_t=20), rewards)
    for order in range(4):
        rule = OrderedHalving(grace_period=1, reduction_factor=2, max_t=20)
        assert run_interleaved(rule, rewards, seed=100 * seed + order) == expected


def test_a_trial_that_ends_early_does_not_block_the_others():
    rule = OrderedHalving(grace_period=1, reduction_factor=2, max_t=20)
    a, b = rule.add(), rule.add()
    rule.result(b, 1, -0.5)
    rule.result(b, 2, -0.4)
    assert not rule.stopped(b) and rule.decided[b] == []  # waits on trial a
    rule.finish(a)  # a failed before its first epoch
    assert rule.decided[b] == ["continue", "continue"]

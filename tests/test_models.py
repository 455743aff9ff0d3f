import numpy as np
import pytest
import torch

from voicegender.models.networks import ReportCNN, build_model
from voicegender.params import ModelSettings


def test_report_cnn_is_the_printed_network():
    net = ReportCNN(128)
    text = str(net)
    for line in [
        "Conv1d(1, 32, kernel_size=(3,), stride=(2,), padding=(1,), bias=False)",
        "BatchNorm1d(32, eps=1e-05, momentum=0.1, affine=False",
        "Conv1d(32, 64, kernel_size=(3,), stride=(2,), padding=(1,), bias=False)",
        "Conv1d(64, 128, kernel_size=(3,), stride=(1,), padding=(1,), bias=False)",
        "Linear(in_features=512, out_features=32, bias=True)",
        "Linear(in_features=32, out_features=1, bias=True)",
    ]:
        assert line in text
    assert sum(isinstance(m, torch.nn.MaxPool1d) for m in net.modules()) == 3
    assert net(torch.randn(5, 128)).shape == (5,)


@pytest.mark.slow  # the first call compiles the numba step (~20 s)
@pytest.mark.parametrize("n_features, batch", [(128, 2), (128, 4), (128, 7), (128, 16), (64, 5), (256, 3)])
def test_report_cnn_step_by_hand_equals_autograd(n_features, batch):
    torch.manual_seed(batch)
    ref, fast = ReportCNN(n_features), ReportCNN(n_features)
    fast.load_state_dict(ref.state_dict())
    ref.train(), fast.train()
    x = torch.randn(batch, n_features) * 3 + 1
    x[0, :16] = 1.5  # equal neighbours: max-pool ties must route the gradient like MaxPool1d
    y = (torch.arange(batch) % 2).float()
    step = fast.hand_written_step()
    for _ in range(2):  # twice: running statistics carried from one step into the next
        logits = ref(x)
        grads = torch.autograd.grad(
            torch.nn.functional.binary_cross_entropy_with_logits(logits, y), list(ref.parameters())
        )
        fast_logits, fast_grads = step(x, y)
        torch.testing.assert_close(fast_logits, logits.detach(), rtol=1e-5, atol=1e-6)
        assert len(fast_grads) == len(grads)
        for g_fast, g in zip(fast_grads, grads):
            assert g_fast.shape == g.shape
            torch.testing.assert_close(g_fast, g, rtol=1e-4, atol=1e-5 * g.abs().max().item())
    for (name, a), b in zip(ref.state_dict().items(), fast.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)
    assert not any(p.grad is not None for p in fast.parameters())


@pytest.mark.parametrize("batch", [1, 4, 9])
def test_linear_step_by_hand_equals_autograd(batch):
    from voicegender.models.networks import Linear

    torch.manual_seed(batch)
    net = Linear(256, dropout=0.0).train()
    x, y = torch.randn(batch, 256) * 2, (torch.arange(batch) % 2).float()
    x[0] *= 100  # a saturated sigmoid must not overflow
    step = net.hand_written_step()
    logits = net(x)
    grads = torch.autograd.grad(torch.nn.functional.binary_cross_entropy_with_logits(logits, y), list(net.parameters()))
    fast_logits, fast_grads = step(x, y)
    torch.testing.assert_close(fast_logits, logits.detach(), rtol=1e-5, atol=1e-5)
    for g_fast, g in zip(fast_grads, grads):
        torch.testing.assert_close(g_fast, g, rtol=1e-4, atol=1e-6)
    with torch.no_grad():  # views of the parameters: an in-place update is seen by the next step
        net.head[1].weight.zero_()
    assert torch.equal(step(x, y)[0], net.head[1].bias.detach().expand(batch))
    assert Linear(256, dropout=0.2).hand_written_step() is None  # dropout: autograd's path


@pytest.mark.parametrize(
    "name, shape", [("report_cnn", (128,)), ("cnn1d", (262,)), ("mlp", (40,)), ("cnn2d", (64, 50))]
)
def test_every_model_maps_a_batch_to_one_logit_each(name, shape):
    model = build_model(ModelSettings(name=name, channels=[8, 16], hidden=16, dropout=0.1), shape, seed=0)
    out = model(torch.randn(3, *shape))
    assert out.shape == (3,) and torch.isfinite(out).all()


def test_every_model_name_of_the_schema_has_a_network():
    from typing import get_args

    from voicegender.models.networks import NETWORKS
    from voicegender.params import ModelName

    assert set(NETWORKS) == set(get_args(ModelName))


def test_standardized_model_carries_its_statistics_in_the_state_dict():
    mean, std = np.full(128, 5.0), np.full(128, 2.0)
    model = build_model(ModelSettings(name="report_cnn"), (128,), mean, std, seed=0)
    state = model.state_dict()
    assert torch.equal(state["mean"], torch.full((128,), 5.0))
    clone = build_model(ModelSettings(name="report_cnn"), (128,), np.zeros(128), np.ones(128), seed=1)
    clone.load_state_dict(state)
    model.eval(), clone.eval()
    x = torch.randn(4, 128)
    assert torch.allclose(model(x), clone(x))


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="cnn2d"):
        build_model(ModelSettings(name="cnn2d"), (128,), seed=0)
    with pytest.raises(ValueError, match="1-D"):
        build_model(ModelSettings(name="report_cnn"), (64, 10), seed=0)


def test_load_trained_names_the_missing_file(tmp_path):
    from voicegender.models.networks import load_trained

    with pytest.raises(FileNotFoundError, match="model.json not found"):
        load_trained(tmp_path)

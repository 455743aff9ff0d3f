import numpy as np
import pytest
import torch

from voicegender.models import ReportCNN, build_model


def test_report_cnn_is_the_printed_network():
    net = ReportCNN(128)
    text = str(net)
    for line in ["Conv1d(1, 32, kernel_size=(3,), stride=(2,), padding=(1,), bias=False)",
                 "BatchNorm1d(32, eps=1e-05, momentum=0.1, affine=False",
                 "Conv1d(32, 64, kernel_size=(3,), stride=(2,), padding=(1,), bias=False)",
                 "Conv1d(64, 128, kernel_size=(3,), stride=(1,), padding=(1,), bias=False)",
                 "Linear(in_features=512, out_features=32, bias=True)",
                 "Linear(in_features=32, out_features=1, bias=True)"]:
        assert line in text
    assert sum(isinstance(m, torch.nn.MaxPool1d) for m in net.modules()) == 3
    assert net(torch.randn(5, 128)).shape == (5,)


@pytest.mark.parametrize("name, shape", [("report_cnn", (128,)), ("cnn1d", (262,)), ("mlp", (40,)),
                                         ("cnn2d", (64, 50))])
def test_every_model_maps_a_batch_to_one_logit_each(name, shape):
    model = build_model({"name": name, "channels": [8, 16], "hidden": 16, "dropout": 0.1}, shape)
    out = model(torch.randn(3, *shape))
    assert out.shape == (3,) and torch.isfinite(out).all()


def test_standardized_model_carries_its_statistics_in_the_state_dict():
    mean, std = np.full(128, 5.0), np.full(128, 2.0)
    model = build_model({"name": "report_cnn"}, (128,), mean, std)
    state = model.state_dict()
    assert torch.equal(state["mean"], torch.full((128,), 5.0))
    clone = build_model({"name": "report_cnn"}, (128,), np.zeros(128), np.ones(128))
    clone.load_state_dict(state)
    model.eval(), clone.eval()
    x = torch.randn(4, 128)
    assert torch.allclose(model(x), clone(x))


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="cnn2d"):
        build_model({"name": "cnn2d"}, (128,))
    with pytest.raises(ValueError, match="1-D"):
        build_model({"name": "report_cnn"}, (64, 10))


def test_load_trained_names_the_missing_file(tmp_path):
    from voicegender.models import load_trained

    with pytest.raises(FileNotFoundError, match="model.json not found"):
        load_trained(tmp_path)

"""1-D convolutions over sequences, per-layer kernel/stride, padding, and recurrent read-outs: shapes and
parameter counts computed without torch agree with the modules torch builds."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from training.network import CNN, RNN, build_network
from training.spec import CNNNetwork, JobSpec, count_parameters

SEQUENCE = {"name": "mnist1d", "as_sequence": True}
IMAGES = {"name": "digits", "as_images": True}


def spec_of(network: dict[str, Any], dataset: dict[str, Any] | None = None, **rest: Any) -> JobSpec:
    """A spec with this network (on MNIST-1D sequences unless told otherwise)."""
    return JobSpec.model_validate({"dataset": dataset or SEQUENCE, "network": network, **rest})


def torch_count(model: nn.Module) -> int:
    """Trainable parameters as torch counts them."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


PAPER_CNN = {
    "type": "cnn",
    "channels": [25, 25, 25],
    "kernel_size": [5, 3, 3],
    "stride": 2,
    "padding": 1,
    "pool": "none",
    "hidden_layers": [],
}


def test_the_papers_mnist1d_cnn_is_three_strided_conv1d_and_a_linear_layer() -> None:
    spec = spec_of(PAPER_CNN)
    model = build_network(spec, (40, 1), 10)
    assert isinstance(model, CNN)
    assert [type(c) for c in model.convs] == [nn.Conv1d] * 3
    assert [c.kernel_size for c in model.convs] == [(5,), (3,), (3,)]
    assert model.output.in_features == 125  # 25 channels x 5 steps: 40 -> 19 -> 10 -> 5
    assert count_parameters(spec, input_shape=(40, 1), outputs=10) == torch_count(model) == 5210
    assert model(torch.randn(4, 40, 1)).shape == (4, 10)


CASES: list[tuple[dict[str, Any], tuple[int, ...]]] = [
    ({"channels": [4, 6], "kernel_size": 3, "pool": "max"}, (40, 1)),
    ({"channels": [4, 6], "kernel_size": [7, 2], "pool": "avg"}, (33, 3)),  # "same" with an even kernel
    ({"channels": [5, 5, 5], "kernel_size": [5, 3, 3], "stride": [2, 1, 2], "padding": 2}, (50, 2)),
    ({"channels": [3], "kernel_size": 4, "stride": 3, "padding": 0, "pool": "none"}, (17, 4)),
    ({"channels": [4, 8], "kernel_size": [3, 5], "stride": [1, 2], "padding": 1, "pool": "none"}, (1, 8, 8)),
    ({"channels": [2, 3], "kernel_size": 3, "stride": 2, "padding": 0, "pool": "none"}, (3, 32, 32)),
]


@pytest.mark.parametrize(("network", "shape"), CASES)
@pytest.mark.parametrize("layers", ["none", "batch", "layer"])
@pytest.mark.parametrize("hidden", [[], [7]])
def test_count_and_output_shape_match_torch(
    network: dict[str, Any], shape: tuple[int, ...], layers: str, hidden: list[int]
) -> None:
    dataset = IMAGES if len(shape) == 3 else SEQUENCE
    spec = spec_of(
        {"type": "cnn", **network, "hidden_layers": hidden}, dataset, normalization={"layers": layers}
    )
    model = build_network(spec, shape, 3)
    assert count_parameters(spec, input_shape=shape, outputs=3) == torch_count(model)
    assert isinstance(model, CNN) and isinstance(spec.network, CNNNetwork)
    x = torch.randn(2, *shape)
    features = x.transpose(1, 2) if len(shape) == 2 else x
    for conv in model.convs:
        features = model.pool(conv(features))
    assert tuple(features.shape[1:]) == spec.network.output_shape(shape)
    assert model(x).shape == (2, 3)


def test_a_cnn_refuses_a_table_row() -> None:
    spec = spec_of({"type": "cnn", "channels": [3]}, {"path": "x.npz"})  # the file's kind is not known yet
    with pytest.raises(ValueError, match=r"images .* or sequences"):
        build_network(spec, (12,), 2)


def test_convolutions_that_shrink_the_input_away_are_refused_with_a_reason() -> None:
    spec = spec_of({"type": "cnn", "channels": [4] * 6, "kernel_size": 3, "pool": "max"})
    with pytest.raises(ValueError, match=r"convolution 6 .* leaves nothing"):
        count_parameters(spec, input_shape=(40, 1), outputs=10)
    with pytest.raises(ValueError, match="leaves nothing"):
        build_network(spec, (40, 1), 10)


@pytest.mark.parametrize(
    ("network", "message"),
    [
        ({"channels": [4, 4], "kernel_size": [3, 3, 3]}, "kernel_size lists 3 values for 2 convolutions"),
        ({"channels": [4], "stride": [1, 2]}, "stride lists 2 values for 1 convolutions"),
        ({"channels": [4], "stride": 2}, 'padding "same" needs stride 1'),
        ({"channels": [4], "padding": "valid"}, "padding"),
    ],
)
def test_bad_cnn_options_are_refused(network: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        spec_of({"type": "cnn", **network})


GRU = {"type": "rnn", "cell": "gru", "hidden_size": 6}


@pytest.mark.parametrize("readout", ["last", "all_steps", "mean"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("layers", [1, 2])
def test_readouts_count_like_torch(readout: str, bidirectional: bool, layers: int) -> None:
    network = {**GRU, "readout": readout, "bidirectional": bidirectional, "layers": layers}
    spec = spec_of(network)
    model = build_network(spec, (40, 1), 10)
    assert count_parameters(spec, input_shape=(40, 1), outputs=10) == torch_count(model)
    assert model(torch.randn(3, 40, 1)).shape == (3, 10)


def test_the_papers_gru_reads_every_step_of_both_directions() -> None:
    spec = spec_of({**GRU, "bidirectional": True, "readout": "all_steps"})
    model = build_network(spec, (40, 1), 10)
    assert isinstance(model, RNN) and model.output.in_features == 40 * 2 * 6
    assert torch_count(model) == 5134


@pytest.mark.parametrize("readout", ["last", "all_steps", "mean"])
def test_each_readout_reads_what_it_says(readout: str) -> None:
    torch.manual_seed(0)
    model = build_network(spec_of({**GRU, "readout": readout}), (5, 1), 2)
    assert isinstance(model, RNN)
    x = torch.randn(3, 5, 1)
    steps, _ = model.recurrent[0](x)
    read = {"last": steps[:, -1], "all_steps": steps.flatten(1), "mean": steps.mean(dim=1)}[readout]
    assert torch.allclose(model(x), model.output(read), atol=1e-6)


def test_readout_is_an_rnn_option_only_and_validated() -> None:
    with pytest.raises(ValidationError, match="readout"):
        spec_of({**GRU, "readout": "max"})

"""Network construction: initialization, batch/layer normalization and dropout do what the chapter says."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch

from tests.training.conftest import make_spec
from training.loop import Trainer
from training.network import MLP, LayerInternals, build_network


def network(features: int, outputs: int, **overrides: Any) -> MLP:
    """An MLP built from the tiny spec with overrides, after seeding torch."""
    torch.manual_seed(0)
    model = build_network(make_spec(**overrides), features, outputs)
    assert isinstance(model, MLP)
    return model


def internals_of(model: MLP, x: torch.Tensor) -> list[LayerInternals]:
    """Each hidden layer's net input and output on x."""
    internals: dict[str, LayerInternals] = {}
    with torch.no_grad():
        model(x, internals)
    return list(internals.values())


def deep_tanh_stats(initialization: Any) -> tuple[list[float], list[float]]:
    """Output std and saturated fraction (|n| > 3) of each layer of an 8-layer tanh net on N(0, 1) inputs."""
    model = network(
        256, 10, activation="tanh", initialization=initialization, network={"hidden_layers": [256] * 8}
    )
    x = torch.randn(512, 256, generator=torch.Generator().manual_seed(1))
    layers = internals_of(model, x)
    stds = [layer.output.std().item() for layer in layers]
    saturated = [(layer.net_input.abs() > 3).float().mean().item() for layer in layers]
    return stds, saturated


@pytest.mark.parametrize("initialization", ["xavier_uniform", "xavier_normal"])
def test_xavier_keeps_tanh_activation_std_across_8_layers(initialization: str) -> None:
    stds, saturated = deep_tanh_stats(initialization)
    # tanh compresses a little on each layer (σ_w² = 1/S is exact only in the linear region), but the
    # std stays within a factor 3 over 8 layers, against 10^6 for std 0.01 and saturation for std 1
    assert stds[-1] / stds[0] > 1 / 3, stds
    assert all(later / earlier > 0.75 for earlier, later in itertools.pairwise(stds)), stds
    assert max(saturated) < 0.05, saturated


def test_normal_std_1_saturates_deep_tanh_layers() -> None:
    stds, saturated = deep_tanh_stats({"scheme": "normal", "std": 1.0})
    assert min(saturated) > 0.8, saturated
    assert min(stds) > 0.9, stds  # outputs pile up at ±1


def test_small_normal_init_makes_tanh_activations_vanish() -> None:
    stds, _ = deep_tanh_stats({"scheme": "normal", "std": 0.01})
    assert stds[-1] < 1e-6 < stds[0], stds


def first_hidden_weight(initialization: Any, fan_in: int = 400, fan_out: int = 300) -> torch.Tensor:
    """The weight matrix (fan_out × fan_in) of the first hidden layer."""
    return (
        network(fan_in, 2, initialization=initialization, network={"hidden_layers": [fan_out]})
        .linears[0]
        .weight
    )


@pytest.mark.parametrize(
    ("initialization", "variance"),
    [
        ("lecun_normal", 1 / 400),
        ("xavier_normal", 2 / (400 + 300)),
        ("xavier_uniform", 2 / (400 + 300)),
        ("he_normal", 2 / 400),
        ("he_uniform", 2 / 400),
        ({"scheme": "normal", "std": 0.2}, 0.04),
        ({"scheme": "uniform", "limit": 0.3}, 0.09 / 3),
    ],
    ids=["lecun_normal", "xavier_normal", "xavier_uniform", "he_normal", "he_uniform", "normal", "uniform"],
)
def test_weight_variance_matches_the_scheme(initialization: Any, variance: float) -> None:
    weight = first_hidden_weight(initialization).detach()
    assert abs(weight.mean().item()) < 0.05 * math.sqrt(variance)
    assert weight.var().item() == pytest.approx(variance, rel=0.03)


def test_lecun_differs_from_xavier_when_fans_differ() -> None:
    lecun = first_hidden_weight("lecun_normal", 100, 900).var().item()
    xavier = first_hidden_weight("xavier_normal", 100, 900).var().item()
    assert lecun == pytest.approx(1 / 100, rel=0.05) and xavier == pytest.approx(2 / 1000, rel=0.05)


def test_orthogonal_init_gives_orthonormal_rows() -> None:
    weight = first_hidden_weight("orthogonal", 64, 32).detach()
    torch.testing.assert_close(weight @ weight.T, torch.eye(32), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "initialization", ["xavier_uniform", "he_normal", "zeros", {"scheme": "normal", "std": 1}]
)
def test_biases_start_at_zero(initialization: Any) -> None:
    model = network(10, 3, initialization=initialization, network={"hidden_layers": [8, 8]})
    assert all(torch.all(layer.bias == 0) for layer in model.linear_layers())


def test_default_init_keeps_pytorch_biases_and_weights() -> None:
    model = network(10, 3, initialization="default", network={"hidden_layers": [8, 8]})
    assert all(layer.bias.abs().sum() > 0 for layer in model.linear_layers())
    bound = 1 / math.sqrt(10)  # PyTorch's nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert model.linears[0].weight.abs().max() <= bound


def test_zeros_init_leaves_hidden_units_of_a_layer_identical_after_training() -> None:
    spec = make_spec(
        activation="sigmoid",
        initialization="zeros",
        network={"hidden_layers": [6, 5]},
        optimizer={"name": "sgd", "learning_rate": 0.5},
        training={"epochs": 5},
    )
    trainer = Trainer(spec, None, [])
    assert trainer.run().status == "succeeded"
    for layer in trainer.model.linear_layers()[:-1]:
        weight, bias = layer.weight.detach(), layer.bias.detach()
        assert_same_rows(weight, weight[:1])
        assert_same_rows(bias, bias[:1])
    # training did move the weights: the symmetry, not a frozen network, keeps the units identical
    assert trainer.model.linears[0].weight.abs().sum() > 0
    output = trainer.model.output.weight.detach()
    assert_same_rows(output, output[:, :1])


def assert_same_rows(values: torch.Tensor, first: torch.Tensor) -> None:
    """Every row (or column) equals the first up to float32 rounding.

    Identical units get identical updates in exact arithmetic; CPU kernels (AVX2, AVX-512, the plain
    ones of ATEN_CPU_CAPABILITY=default) round sums of different rows differently, by ~1e-7 of the
    values. Units that really differ (xavier) differ by the size of the values themselves.
    """
    scale = values.abs().max().item()
    torch.testing.assert_close(values, first.expand_as(values), rtol=1e-5, atol=1e-5 * scale)


def test_xavier_init_does_not_keep_units_identical() -> None:
    model = network(4, 3, activation="sigmoid", network={"hidden_layers": [6]})
    weight = model.linears[0].weight.detach()
    assert not torch.equal(weight, weight[:1].expand_as(weight))


def test_hidden_block_order_is_linear_norm_activation() -> None:
    model = network(
        5, 2, activation="sigmoid", normalization={"layers": "batch"}, network={"hidden_layers": [7]}
    )
    x = torch.randn(32, 5, generator=torch.Generator().manual_seed(2))
    model.train()
    [layer] = internals_of(model, x)
    # batch norm sits before the activation: the net input is normalized over the batch
    torch.testing.assert_close(layer.net_input.mean(0), torch.zeros(7), atol=1e-5, rtol=0)
    torch.testing.assert_close(layer.output, torch.sigmoid(layer.net_input))


def trained_batch_norm_model(**overrides: Any) -> tuple[MLP, torch.Tensor]:
    """An iris net with batch norm after a few epochs, and the scaled test inputs."""
    spec = make_spec(normalization={"layers": "batch"}, network={"hidden_layers": [8, 8]}, **overrides)
    trainer = Trainer(spec, None, [])
    trainer.run()
    return trainer.model, trainer.data.X_test


def test_batch_norm_eval_uses_running_statistics_so_a_batch_of_one_works() -> None:
    model, X = trained_batch_norm_model()
    model.eval()
    with torch.no_grad():
        whole = model(X)
        singles = torch.cat([model(X[i : i + 1]) for i in range(len(X))])
    torch.testing.assert_close(singles, whole)
    norm = model.hidden.norms[0]
    assert norm.running_mean.abs().sum() > 0 and not torch.allclose(norm.running_var, torch.ones(8))
    model.train()
    with torch.no_grad():
        assert not torch.allclose(model(X[:8])[:1], model(X[:1].repeat(2, 1))[:1])


def test_batch_norm_momentum_is_pytorch_momentum_one_minus_delta() -> None:
    momentum = 0.3  # δ = 0.7: m̃_k = 0.7 m̃_{k-1} + 0.3 m_k
    model = network(
        5, 2, normalization={"layers": "batch", "momentum": momentum}, network={"hidden_layers": [4]}
    )
    norm = model.hidden.norms[0]
    norm.running_mean.fill_(2.0)
    x = torch.randn(64, 5, generator=torch.Generator().manual_seed(3))
    model.train()
    with torch.no_grad():
        batch_mean = model.linears[0](x).mean(0)
        model(x)
    torch.testing.assert_close(norm.running_mean, (1 - momentum) * 2.0 + momentum * batch_mean)
    assert norm.eps == make_spec().normalization.epsilon


def test_layer_norm_output_does_not_depend_on_the_batch() -> None:
    model = network(5, 3, normalization={"layers": "layer"}, network={"hidden_layers": [6, 6]})
    x = torch.randn(20, 5, generator=torch.Generator().manual_seed(4))
    model.train()
    with torch.no_grad():
        alone = torch.cat([model(x[i : i + 1]) for i in range(len(x))])
        together = model(x)
        [first, _] = internals_of(model, x)
    torch.testing.assert_close(alone, together)
    # normalized over the units of each example
    torch.testing.assert_close(first.net_input.mean(1), torch.zeros(20), atol=1e-5, rtol=0)


def test_dropout_is_active_in_training_and_off_in_eval() -> None:
    model = network(5, 3, generalization={"dropout": 0.5}, network={"hidden_layers": [64]})
    plain = network(5, 3, network={"hidden_layers": [64]})
    plain.load_state_dict(model.state_dict())
    x = torch.randn(16, 5, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        model.train()
        first, second = model(x), model(x)
        assert not torch.allclose(first, second)
        hidden = model.hidden.dropout(torch.ones(1000, 64))  # type: ignore[misc]
        assert 0.45 < (hidden == 0).float().mean().item() < 0.55
        assert hidden.max().item() == pytest.approx(2.0)  # kept units are scaled by 1/(1 - p)
        model.eval()
        plain.eval()
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
        torch.testing.assert_close(model(x), plain(x), rtol=0, atol=0)


def test_no_dropout_module_when_dropout_is_zero() -> None:
    assert network(5, 3).hidden.dropout is None

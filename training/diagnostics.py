"""Per-layer diagnostics, sampled on a few steps per epoch and read from the device once per epoch."""

from __future__ import annotations

from typing import Any

import torch

from training.network import MLP, LayerInternals
from training.spec import RELU_TYPE, SIGMOID_TYPE, Activation

# A sigmoid-type unit is effectively saturated once |net input| > 3 (σ'(3) ≈ 0.045, near zero).
SATURATION_THRESHOLD = 3.0


class LayerDiagnostics:
    """Accumulates gradient norms and activation statistics per linear layer over an epoch."""

    def __init__(self, model: MLP, activation: Activation) -> None:
        self.model = model
        self.names = model.layer_names()
        self.track_saturation = activation in SIGMOID_TYPE
        self.track_dead = activation in RELU_TYPE
        self.start_epoch()

    def start_epoch(self) -> None:
        """Reset the sums and remember the weights, to measure this epoch's update."""
        layers = self.model.linear_layers()
        self.start_weights = [layer.weight.detach().clone() for layer in layers]
        self.samples = 0
        self.sums = torch.zeros(5, len(layers), device=layers[0].weight.device)

    def sample(self, internals: list[LayerInternals], outputs: torch.Tensor) -> None:
        """Add one step's statistics; call after backward, before the optimizer step."""
        layers = self.model.linear_layers()
        grads = [layer.weight.grad if layer.weight.grad is not None else layer.weight * 0 for layer in layers]
        outs = [item.output for item in internals] + [outputs.detach()]
        nets = [item.net_input for item in internals]
        rows = [
            torch.stack(torch._foreach_norm(grads)),
            torch.stack([a.mean() for a in outs]),
            torch.stack([a.std(unbiased=False) for a in outs]),
        ]
        zero = torch.zeros((), device=outputs.device)
        if self.track_saturation:
            rows.append(torch.stack([(n.abs() > SATURATION_THRESHOLD).float().mean() for n in nets] + [zero]))
        else:
            rows.append(torch.zeros(len(layers), device=outputs.device))
        if self.track_dead:  # a ReLU unit is dead on this batch when its net input is ≤ 0 for every example
            rows.append(torch.stack([(n <= 0).all(dim=0).float().mean() for n in nets] + [zero]))
        else:
            rows.append(torch.zeros(len(layers), device=outputs.device))
        self.sums += torch.stack(rows)
        self.samples += 1

    def end_epoch(self) -> list[dict[str, Any]]:
        """One dict per linear layer, input side first (one host sync)."""
        layers = self.model.linear_layers()
        weights = [layer.weight.detach() for layer in layers]
        deltas = torch._foreach_sub(weights, self.start_weights)
        norms = torch.stack(
            [
                torch.stack(torch._foreach_norm(weights)),
                torch.stack(torch._foreach_norm(deltas)),
                torch.stack(torch._foreach_norm(self.start_weights)),
            ]
        )
        means = (self.sums / max(self.samples, 1)).tolist()
        weight_norm, delta_norm, start_norm = norms.tolist()
        hidden = len(layers) - 1
        entries = []
        for i, name in enumerate(self.names):
            sampled = self.samples > 0
            entries.append(
                {
                    "name": name,
                    "grad_norm": means[0][i] if sampled else None,
                    "weight_norm": weight_norm[i],
                    "update_ratio": delta_norm[i] / start_norm[i] if start_norm[i] > 0 else None,
                    "activation_mean": means[1][i] if sampled else None,
                    "activation_std": means[2][i] if sampled else None,
                    "saturated_fraction": means[3][i]
                    if sampled and self.track_saturation and i < hidden
                    else None,
                    "dead_fraction": means[4][i] if sampled and self.track_dead and i < hidden else None,
                }
            )
        return entries

"""The optimizer step of a replica group: each replica's own optimizer, stepped together.

Optimizers are element-wise, so stepping the replicas' parameters side by side (or stacked in one leaf)
with the same settings is stepping each replica on its own. Each replica's optimizer keeps its state
(its state_dict goes into its checkpoints) and its schedule (which sets its learning rate).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from training.optim import Call, fused_calls, run_calls, step_optimizer

Shared = Sequence[tuple[torch.Tensor, Sequence[nn.Parameter]]]  # a stacked leaf and its rows' parameters


def _settings(optimizer: torch.optim.Optimizer, group: dict[str, Any]) -> dict[str, Any]:
    """A parameter group's settings a constructor takes (not a scheduler's initial_lr)."""
    accepted = inspect.signature(type(optimizer)).parameters
    return {k: v for k, v in group.items() if k in accepted and k != "params"}


def hyperparameters(optimizer: torch.optim.Optimizer) -> str:
    """The optimizer's class and its parameter groups' settings (learning rates included)."""
    groups = [
        sorted((k, repr(v)) for k, v in _settings(optimizer, g).items()) for g in optimizer.param_groups
    ]
    return repr((type(optimizer), groups))


def _like(first: torch.optim.Optimizer, params: Sequence[Sequence[torch.Tensor]]) -> torch.optim.Optimizer:
    """An optimizer of first's class and settings over `params` (a list per parameter group of first's)."""
    groups = [
        {**_settings(first, group), "params": list(chosen)}
        for group, chosen in zip(first.param_groups, params, strict=True)
        if chosen
    ]
    return type(first)(groups, **_settings(first, first.param_groups[0]))


def _own_counters(optimizers: Sequence[torch.optim.Optimizer]) -> None:
    """Give every parameter its own step counter again (a stacked leaf's rows shared one)."""
    for optimizer in optimizers:
        for state in optimizer.state.values():
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.dim() == 0:
                    state[key] = value.clone()


class JointOptimizers:
    """Steps the replicas' own optimizers as few torch optimizers as their settings allow: one for all
    replicas whose optimizer class and settings (learning rates included) agree, over the replicas'
    parameter groups side by side, sharing each parameter's state dict with the replica's optimizer.

    `only`, when given, limits it to those parameters (by id).
    """

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer], only: set[int] | None = None) -> None:
        _own_counters(optimizers)
        self.optimizers = optimizers
        by_settings: dict[str, list[torch.optim.Optimizer]] = {}
        for optimizer in optimizers:
            by_settings.setdefault(hyperparameters(optimizer), []).append(optimizer)
        self.joint: list[torch.optim.Optimizer] = []
        for same in by_settings.values():
            if len(same) == 1 and only is None:
                self.joint.append(same[0])
                continue
            chosen = [
                [p for o in same for p in o.param_groups[i]["params"] if only is None or id(p) in only]
                for i in range(len(same[0].param_groups))
            ]
            if not any(chosen):
                continue
            joint = _like(same[0], chosen)
            stepped = {id(p) for params in chosen for p in params}
            for optimizer in same:
                for group in optimizer.param_groups:
                    for param in group["params"]:
                        if id(param) in stepped:
                            # one state dict, two owners; made here when still empty, so that the state
                            # the joint step creates is the replica's too (its checkpoints, its next stack)
                            joint.state[param] = optimizer.state[param]
            self.joint.append(joint)

    def step(self) -> None:
        """One step of every replica."""
        for optimizer in self.joint:
            step_optimizer(optimizer)
        _stepped(self.optimizers)


def _agree(states: Sequence[dict[str, Any]]) -> bool:
    """The replicas' states for one leaf's rows can stack: all empty, or the same keys and step counts."""
    keys = {tuple(sorted(s)) for s in states}
    if len(keys) > 1:
        return False
    for key, value in states[0].items():
        if not isinstance(value, torch.Tensor):
            if any(s[key] != value for s in states):
                return False
        elif value.dim() == 0 and any(not torch.equal(s[key], value) for s in states):
            return False
    return True


class LeafOptimizers:
    """One torch optimizer over the stacked leaves, for replicas whose optimizers agree in class, settings
    and step counts (a sweep over seeds): a leaf's state stacks its rows' states, and each row's state
    becomes views of it (as its parameter is), so the replica's own optimizer still holds its state.
    Parameters a replica keeps to itself (batch norm's) step through JointOptimizers.
    """

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer], shared: Shared) -> None:
        first = optimizers[0]
        _own_counters(optimizers)
        self.optimizers, self.shared = optimizers, shared
        group_of = {id(p): i for i, g in enumerate(first.param_groups) for p in g["params"]}
        by_group: list[list[torch.Tensor]] = [[] for _ in first.param_groups]
        for leaf, rows in shared:
            by_group[group_of[id(rows[0])]].append(leaf)
        self.joint = _like(first, by_group)
        for leaf, rows in shared:
            states = [o.state[p] for o, p in zip(optimizers, rows, strict=True)]
            if states[0]:
                self.joint.state[leaf] = {
                    k: torch.stack([s[k] for s in states]) if _per_element(v, rows[0]) else _copy(v)
                    for k, v in states[0].items()
                }
        self.linked = False
        self.calls: list[Call] | None = None
        in_leaves = {id(p) for _, rows in shared for p in rows}
        own = {
            id(p) for o in optimizers for g in o.param_groups for p in g["params"] if id(p) not in in_leaves
        }
        self.rest = JointOptimizers(optimizers, only=own) if own else None

    @staticmethod
    def fit(optimizers: Sequence[torch.optim.Optimizer], shared: Shared) -> bool:
        """Whether the replicas' optimizers can step as one over the leaves."""
        if len({hyperparameters(o) for o in optimizers}) > 1:
            return False
        groups = [{id(p): i for i, g in enumerate(o.param_groups) for p in g["params"]} for o in optimizers]
        for _, rows in shared:
            if len({g[id(p)] for g, p in zip(groups, rows, strict=True)}) > 1:
                return False
            if not _agree([o.state[p] for o, p in zip(optimizers, rows, strict=True)]):
                return False
        return True

    def step(self) -> None:
        """One step of every replica; after the first, each row's state is a view of its leaf's."""
        if self.calls is not None:
            run_calls(self.calls)
        else:
            step_optimizer(self.joint)
        if self.rest is not None:
            self.rest.step()
        if not self.linked:  # optimizers create their state on the first step, then update it in place
            self._link()
            self.linked = True
            _stepped(self.optimizers)
            # The joint's tensors (leaves, their gradients, its state) and settings stay while it lives (a
            # schedule changes a rate between epochs, and then the group builds a new one): its kernel
            # calls are made once.
            self.calls = fused_calls(self.joint)

    def _link(self) -> None:
        for leaf, rows in self.shared:
            state = self.joint.state[leaf]
            for r, (optimizer, param) in enumerate(zip(self.optimizers, rows, strict=True)):
                optimizer.state[param] = {k: v[r] if _per_element(v, leaf) else v for k, v in state.items()}


def _stepped(optimizers: Sequence[torch.optim.Optimizer]) -> None:
    """Note on each replica's optimizer that it stepped, as its own step() would: else its schedule warns
    that it steps before the optimizer ever did."""
    for optimizer in optimizers:
        optimizer._opt_called = True  # type: ignore[attr-defined]


def _per_element(value: Any, param: torch.Tensor) -> bool:
    """A state tensor with a value per element of the parameter (moments, buffers), not a step counter."""
    return isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape == param.shape


def _copy(value: Any) -> Any:
    return value.clone() if isinstance(value, torch.Tensor) else value


def stacked_optimizers(
    optimizers: Sequence[torch.optim.Optimizer], shared: Shared
) -> LeafOptimizers | JointOptimizers:
    """Over the leaves where the replicas' optimizers agree, else side by side."""
    if LeafOptimizers.fit(optimizers, shared):
        return LeafOptimizers(optimizers, shared)
    return JointOptimizers(optimizers)

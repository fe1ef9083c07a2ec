"""Peak memory of a job, estimated from its spec before it runs (no torch: the API refuses with it).

The model follows what `training.data.prepare` and `training.loop.fit` hold at once; its coefficients
were checked against measured peaks (tests/training/test_memory.py) and it errs on the high side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from training.spec.dataset import (
    BuiltinDatasetSpec,
    DownloadedDatasetSpec,
    MNIST1DDatasetSpec,
    SequenceDatasetSpec,
    SyntheticDatasetSpec,
)
from training.spec.job import JobSpec
from training.spec.network import (
    CNNNetwork,
    InputScaling,
    LayerNormalization,
    MLPNetwork,
    Pooling,
    RNNCell,
    RNNNetwork,
)
from training.spec.optimizer import SGD, Adagrad, Adam, AdamW, Momentum, Nesterov, RMSprop

FLOAT = 4  # every tensor of a job is float32
MiB = 1 << 20
RUNTIME_BYTES = 8 * MiB  # allocator slack and kernel workspaces of any job, beyond the imports
EVAL_CHUNK = 8192  # rows evaluated at once (training.loop.EVAL_CHUNK)
BUILTIN_ROWS = {"digits": 1797, "iris": 150, "wine": 178, "breast_cancer": 569, "diabetes": 442}
DOWNLOADED_ROWS = {"mnist": 70_000, "fashion_mnist": 70_000, "cifar10": 60_000}  # train + official test
# Bytes per number of X at the peak of generating it: float64 arrays and their temporaries.
GENERATION_BYTES = {"adding": 16, "parity": 24, "sine_sequence": 24}
SYNTHETIC_GENERATION_BYTES = 48  # the 2-D generators (scikit-learn's shuffle and add noise in copies)
READ_BYTES = 16  # files and uploads: read in their own dtype (up to 8 bytes), then converted to float32
RNN_GATES = {RNNCell.rnn: 1, RNNCell.lstm: 4, RNNCell.gru: 3}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a job holds at its two peaks: while loading its data, and while training."""

    data_loading: int  # generating or reading, splitting and scaling the data
    data: int  # the scaled splits, held while training
    model: int  # parameters, gradients, optimizer state, the best weights, a checkpoint being written
    activations: int  # the larger of one training step and one evaluation chunk, at the batch size

    @property
    def training(self) -> int:
        """Bytes held while training."""
        return RUNTIME_BYTES + self.data + self.model + self.activations

    @property
    def peak(self) -> int:
        """The job's peak: the larger of its two phases."""
        return max(RUNTIME_BYTES + self.data_loading, self.training)

    @property
    def largest_part(self) -> str:
        """What to shrink first: dataset, network or batch."""
        parts = {
            "dataset": max(self.data_loading, self.data),
            "network": self.model,
            "batch": self.activations,
        }
        return max(parts, key=lambda part: parts[part])


def format_bytes(size: float) -> str:
    """1.5 GiB, 20.0 MiB: sizes as a person reads them."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    raise AssertionError("unreachable")


def dataset_rows(spec: JobSpec) -> int | None:
    """Rows of a built-in or generated dataset; None for files and uploads (known once read)."""
    dataset = spec.dataset
    if isinstance(dataset, SyntheticDatasetSpec | SequenceDatasetSpec):
        return dataset.samples
    if isinstance(dataset, BuiltinDatasetSpec):
        return BUILTIN_ROWS[dataset.name]
    if isinstance(dataset, MNIST1DDatasetSpec):
        return dataset.samples
    if isinstance(dataset, DownloadedDatasetSpec):
        return DOWNLOADED_ROWS[dataset.name]
    return None


def optimizer_slots(spec: JobSpec) -> int:
    """Tensors of the parameters' size the optimizer keeps (momentum buffers, moment estimates)."""
    match spec.optimizer:
        case Adam() | AdamW():
            return 2
        case RMSprop(momentum=momentum):
            return 2 if momentum > 0 else 1
        case Momentum() | Nesterov() | Adagrad():
            return 1
        case SGD():
            return 0
    return 2


def _data_loading(spec: JobSpec, numbers: int, rows: int) -> int:
    """Generation (float64), then float32 table, its splits and the float64 scaling of the train split."""
    if isinstance(spec.dataset, SyntheticDatasetSpec):
        generated = SYNTHETIC_GENERATION_BYTES
    else:
        generated = GENERATION_BYTES.get(str(getattr(spec.dataset, "name", "")), READ_BYTES)
    test_fraction = getattr(spec.dataset, "test_fraction", 0.0)  # benchmarks: their official test set
    train_share = 1.0 - spec.dataset.validation_fraction - test_fraction
    scaling = 16 if spec.normalization.inputs != InputScaling.none else 4
    return int(numbers * max(generated, 12 + scaling * train_share)) + 24 * rows


def _dense_stack(spec: JobSpec, batch: int, inputs: int, widths: list[int]) -> tuple[int, int]:
    """Saved numbers of hidden blocks at this batch, and the widest tensor (for backward's temporaries)."""
    per_unit = 2.0  # linear output and activation
    per_unit += 0.5 if spec.normalization.layers != LayerNormalization.none else 0.0
    per_unit += 0.5 if spec.generalization.dropout > 0 else 0.0
    saved = batch * inputs + int(batch * sum(widths) * per_unit)
    return saved, batch * max([inputs, *widths])


def _step_numbers(spec: JobSpec, batch: int, shape: tuple[int, ...], outputs: int) -> tuple[int, int]:
    """Numbers one training step keeps for backward, and its widest tensor."""
    network = spec.network
    match network:
        case RNNNetwork(cell=cell, hidden_size=size, layers=layers, bidirectional=bidirectional):
            steps, features = shape[0], shape[-1]
            state = batch * steps * size * (2 if bidirectional else 1)
            gates = RNN_GATES[cell]
            # per layer: gates and states of every step; plus backward's temporaries over the sequence
            saved = state * (2 * gates + 1) * layers + 2 * batch * steps * features
            return saved, state * (2 * gates + 2)
        case CNNNetwork(channels=channels, pool=pool, hidden_layers=hidden):
            in_channels, height, width = shape if len(shape) == 3 else (1, math.prod(shape), 1)
            saved, widest = batch * in_channels * height * width, 0
            per_pixel = 2.0 + (0.5 if spec.normalization.layers != LayerNormalization.none else 0.0)
            for out_channels in channels:
                block = batch * out_channels * height * width
                widest = max(widest, block)
                if pool != Pooling.none:
                    height, width = height // 2, width // 2
                pooled = {Pooling.max: 0.75, Pooling.avg: 0.25, Pooling.none: 0.0}[pool]
                saved += int(block * (per_pixel + pooled))
            head, head_widest = _dense_stack(spec, batch, out_channels * height * width, [*hidden, outputs])
            return saved + head, max(widest, head_widest)
        case MLPNetwork(hidden_layers=hidden):
            return _dense_stack(spec, batch, math.prod(shape), [*hidden, outputs])
    raise ValueError(f"unknown network {network!r}")


def _eval_numbers(spec: JobSpec, rows: int, shape: tuple[int, ...], outputs: int) -> int:
    """Numbers alive while one evaluation chunk runs (no graph: a layer's input and output)."""
    chunk = min(EVAL_CHUNK, rows)
    network = spec.network
    match network:
        case RNNNetwork(hidden_size=size, bidirectional=bidirectional):
            return 2 * chunk * shape[0] * max(size * (2 if bidirectional else 1), shape[-1])
        case CNNNetwork(channels=channels):
            pixels = math.prod(shape[1:]) if len(shape) == 3 else math.prod(shape)
            return 2 * chunk * pixels * max(channels)
        case MLPNetwork(hidden_layers=hidden):
            return 2 * chunk * max([math.prod(shape), *hidden, outputs])
    raise ValueError(f"unknown network {network!r}")


def estimate_memory(
    spec: JobSpec, *, rows: int, example_shape: tuple[int, ...], outputs: int, parameters: int
) -> MemoryEstimate:
    """Peak bytes of a job on `rows` examples of `example_shape`: data, model, activations at its batch."""
    numbers = rows * math.prod(example_shape)
    slots = optimizer_slots(spec)
    # parameters, gradients, optimizer slots and the best weights; a checkpoint being written copies
    # weights and slots to the CPU, and a best epoch waiting for its write (checkpoint_seconds) holds another
    model = ((3 + slots) + 2 * (1 + slots)) * parameters * FLOAT
    batch = min(spec.training.batch_size, rows)
    saved, widest = _step_numbers(spec, batch, example_shape, outputs)
    step = (saved + widest) * FLOAT
    evaluation = _eval_numbers(spec, rows, example_shape, outputs) * FLOAT
    return MemoryEstimate(
        data_loading=_data_loading(spec, numbers, rows),
        data=numbers * FLOAT + 8 * rows,
        model=model,
        activations=max(step, evaluation),
    )


def checkpoint_bytes(spec: JobSpec, parameters: int) -> int:
    """Size of one checkpoint file: weights and optimizer slots in float32, plus its small header."""
    return (1 + optimizer_slots(spec)) * parameters * FLOAT + 64 * 1024


def checkpoints_kept(spec: JobSpec, keep_periodic: int) -> int:
    """Checkpoint files a finished job keeps: best, last, and up to `keep_periodic` epoch-N files."""
    every = spec.training.checkpoint_every
    periodic = min(keep_periodic, spec.training.epochs // every) if every else 0
    return 2 + periodic

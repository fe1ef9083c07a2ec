"""Epoch time of training.fit against hand-written PyTorch loops on the same model and data.

    python bench/engine.py [--rounds 3] [--quick]

Prints a table of median seconds per epoch and samples/s relative to the plain on-device loop.
All variants train the same MLP (64-256-256-10, batch 128, Adam lr 1e-3, same init) on the same rows.
fit runs with validation and test fractions 0; it still measures train_loss on (up to 10,000 rows of)
the training split in eval mode once per epoch, and the global gradient norm of every step. The
"+ grad norm" row is the plain fused loop plus that per-step norm alone, to price it.
A second table does the same for a recurrent net: an LSTM (hidden 64) on the adding problem (length 50),
fit against a plain loop over the same module from training.network.build_network.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from training import fit
from training.callbacks import Callback
from training.network import build_network
from training.records import EpochRecord
from training.spec import JobSpec

HIDDEN = [256, 256]
BATCH = 128


def make_spec(dataset: dict, diagnostics_every: int = 10, epochs: int = 1) -> JobSpec:
    """The benchmark spec: MLP 64-256-256-10, Adam, no validation or test split."""
    return JobSpec.model_validate(
        {
            "dataset": {**dataset, "validation_fraction": 0.0, "test_fraction": 0.0},
            "network": {"hidden_layers": HIDDEN},
            "optimizer": {"name": "adam", "learning_rate": 0.001},
            "training": {"epochs": epochs, "batch_size": BATCH, "diagnostics_every": diagnostics_every},
        }
    )


def synthetic_npz(folder: Path, rows: int = 60_000, features: int = 64, classes: int = 10) -> Path:
    """A 60,000 x 64 classification set with a learnable signal."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, features)).astype(np.float32)
    y = (X @ rng.normal(size=(features, classes))).argmax(axis=1)
    path = folder / "synthetic.npz"
    np.savez(path, X=X, y=y)
    return path


class EpochTimer(Callback):
    """Collects fit's per-epoch seconds."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_epoch_end(self, record: EpochRecord) -> None:
        self.seconds.append(record.seconds or 0.0)


def time_fit(spec: JobSpec, epochs: int) -> list[float]:
    """Per-epoch seconds of training.fit."""
    timer = EpochTimer()
    fit(
        spec.model_copy(update={"training": spec.training.model_copy(update={"epochs": epochs})}),
        None,
        [timer],
    )
    return timer.seconds


def _data(spec: JobSpec) -> tuple[torch.Tensor, torch.Tensor, nn.Module]:
    from training.data import prepare

    torch.manual_seed(0)
    splits = prepare(spec.dataset, spec.normalization.inputs, 0, torch.device("cpu"))
    model = build_network(spec, splits.input_shape, splits.outputs)
    return splits.X_train, splits.y_train, model


def time_plain(spec: JobSpec, epochs: int, fused: bool = False, grad_norm: bool = False) -> list[float]:
    """A plain loop: on-device permutation batches, loss accumulated as a tensor, read once per epoch.

    grad_norm: also take the global gradient norm of every step, summed on the device (what fit records).
    """
    X, y, model = _data(spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused or None)
    loss_fn = F.cross_entropy if y.dtype == torch.int64 else F.mse_loss
    batch = spec.training.batch_size
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        total, norms = torch.zeros(()), torch.zeros(())
        order = torch.randperm(len(X))
        for i in range(0, len(X), batch):
            index = order[i : i + batch]
            loss = loss_fn(model(X[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_norm:
                grads = [p.grad for p in model.parameters() if p.grad is not None]
                norms += torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            optimizer.step()
            total += loss.detach()
        (total + norms).item()
        seconds.append(time.perf_counter() - start)
    return seconds


def time_dataloader(spec: JobSpec, epochs: int) -> list[float]:
    """The textbook loop: TensorDataset + DataLoader(shuffle=True)."""
    X, y, model = _data(spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=BATCH, shuffle=True)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        total = torch.zeros(())
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
        total.item()
        seconds.append(time.perf_counter() - start)
    return seconds


def variants(dataset: dict, epochs: int) -> dict[str, Callable[[], list[float]]]:
    """Every timed variant on one dataset; each returns per-epoch seconds (first epoch is warm-up)."""
    spec, runs = make_spec(dataset), epochs + 1
    return {
        "plain loop (Adam, foreach)": lambda: time_plain(spec, runs),
        "plain loop (Adam, fused)": lambda: time_plain(spec, runs, fused=True),
        "plain loop (Adam, fused) + grad norm": lambda: time_plain(spec, runs, fused=True, grad_norm=True),
        "DataLoader loop": lambda: time_dataloader(spec, runs),
        "fit, diagnostics every 10 steps (default)": lambda: time_fit(spec, runs),
        "fit, diagnostics every step": lambda: time_fit(make_spec(dataset, 1), runs),
        "fit, no diagnostics": lambda: time_fit(make_spec(dataset, 0), runs),
    }


# ------------------------------------------------------------------------------------- recurrent

RNN_HIDDEN, RNN_LENGTH, RNN_BATCH = 64, 50, 32


def make_rnn_spec(samples: int, diagnostics_every: int = 10, epochs: int = 1) -> JobSpec:
    """The recurrent benchmark spec: LSTM hidden 64 on adding (length 50), Adam, no validation or test."""
    return JobSpec.model_validate(
        {
            "dataset": {
                "name": "adding",
                "length": RNN_LENGTH,
                "samples": samples,
                "validation_fraction": 0.0,
                "test_fraction": 0.0,
            },
            "network": {"type": "rnn", "cell": "lstm", "hidden_size": RNN_HIDDEN},
            "optimizer": {"name": "adam", "learning_rate": 0.001},
            "training": {"epochs": epochs, "batch_size": RNN_BATCH, "diagnostics_every": diagnostics_every},
        }
    )


def rnn_variants(samples: int, epochs: int) -> dict[str, Callable[[], list[float]]]:
    """The recurrent variants; each returns per-epoch seconds (first epoch is warm-up)."""
    runs = epochs + 1
    return {
        "plain loop (Adam, fused)": lambda: time_plain(make_rnn_spec(samples), runs, fused=True),
        "fit, diagnostics every 10 steps (default)": lambda: time_fit(make_rnn_spec(samples), runs),
        "fit, no diagnostics": lambda: time_fit(make_rnn_spec(samples, 0), runs),
    }


def print_rnn_table(rounds: int, quick: bool) -> None:
    """Median epoch of fit against the plain loop for the LSTM."""
    samples, epochs = (1000, 2) if quick else (4000, 3)
    label = f"adding, {samples:,} x {RNN_LENGTH}"
    print(f"LSTM hidden {RNN_HIDDEN}, adding length {RNN_LENGTH}, batch {RNN_BATCH}, Adam lr 1e-3\n")
    header = f"{'dataset':<24}{'variant':<44}{'s/epoch':>10}{'samples/s':>12}{'vs plain':>10}"
    print(header)
    print("-" * len(header))
    timed = rnn_variants(samples, epochs)
    measured: dict[str, list[float]] = {name: [] for name in timed}
    for _ in range(rounds):
        for name, run in timed.items():
            measured[name].extend(run()[1:])
    baseline = statistics.median(measured["plain loop (Adam, fused)"])
    for name, seconds in measured.items():
        median = statistics.median(seconds)
        print(f"{label:<24}{name:<44}{median:>10.4f}{samples / median:>12,.0f}{baseline / median:>9.2f}x")
    print()


def main() -> None:
    """Run every variant in interleaved rounds and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions of every variant")
    parser.add_argument("--quick", action="store_true", help="fewer epochs (a smoke run)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own, one per core)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = Path(tempfile.mkdtemp())
    datasets = {
        "digits (1,437 rows)": ({"name": "digits"}, 4 if args.quick else 12),
        "synthetic 60,000 x 64": ({"path": str(synthetic_npz(folder))}, 2 if args.quick else 3),
    }
    network = "-".join(map(str, [64, *HIDDEN, 10]))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, MLP {network}, batch {BATCH}")
    print(f"median epoch over {args.rounds} interleaved rounds, first epoch of each run dropped\n")
    header = f"{'dataset':<24}{'variant':<44}{'s/epoch':>10}{'samples/s':>12}{'vs plain':>10}"
    print(header)
    print("-" * len(header))
    for label, (dataset, epochs) in datasets.items():
        rows = len(_data(make_spec(dataset))[0])
        timed = variants(dataset, epochs)
        samples: dict[str, list[float]] = {name: [] for name in timed}
        for _ in range(args.rounds):
            for name, run in timed.items():
                samples[name].extend(run()[1:])
        baseline = statistics.median(samples["plain loop (Adam, foreach)"])
        for name, seconds in samples.items():
            median = statistics.median(seconds)
            print(f"{label:<24}{name:<44}{median:>10.4f}{rows / median:>12,.0f}{baseline / median:>9.2f}x")
        print()
    print_rnn_table(args.rounds, args.quick)


if __name__ == "__main__":
    main()

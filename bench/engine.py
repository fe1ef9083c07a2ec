"""Epoch time of training.fit against hand-written PyTorch loops on the same model and data.

    python bench/engine.py [--rounds 3] [--quick] [--threads 1] [--clock wall|cpu] [--only digits|...]

Prints a table of median seconds per epoch and samples/s relative to two baselines. All variants train
the same MLP (inputs-256-256-10, batch 128, Adam lr 1e-3, same init) on the same rows, on the device,
each batch the rows of a fresh random permutation (no DataLoader but in its own row).

What each plain loop does per step: forward, cross-entropy, zero_grad(set_to_none), backward, Adam step,
and the loss added to an on-device running sum; per epoch: one read of that sum.
  "plain loop (Adam, fused)"   -- the reference of the speed target (`vs fused`).
  "... + eval"                 -- plus, at the end of each epoch, the model in eval mode over the same
                                  training sample fit measures (the training split, or a fixed 10,000 of
                                  its rows) in one inference_mode pass: loss and accuracy, read together
                                  with the running loss. A user comparing runs needs this per-epoch
                                  measure of the model, and fit takes it by contract (train_loss), so
                                  this is the fair baseline (`vs fused+eval`).
  "... + eval + grad norm"     -- plus the global gradient norm of every step, summed on the device.
What fit does beyond "+ eval": the pre-clip global gradient norm of every step (mean and max per epoch),
running accuracy, per-layer diagnostics (gradient norms and activation statistics every 10th step by
default, dead units from the eval pass, weight norms and update ratios per epoch), the learning-rate
schedule hook, early-stopping bookkeeping, the epoch record and its callbacks. (fit evaluates in
1,024-row chunks on a CPU where the loop takes one pass: the engine's choice, faster for these widths.)
Validation and test fractions are 0 so that no variant evaluates other splits. fit's epoch is timed from
one epoch record to the next, so all of that is inside it. The variants take turns epoch by epoch (fit
runs in a thread that waits after each record), so a change of load hits them alike; every round starts
them afresh and drops their first epoch (warm-up). "+ eval + grad norm" against "+ eval" prices the norm.
--clock cpu times process CPU seconds instead of wall seconds: with --threads 1 on a shared machine it
leaves out the time other processes hold the core.
The MNIST-scale row (60,000 x 784) trains on MNIST when the dataset cache holds it
(`trainctl datasets fetch mnist`), else on generated data of that shape.
A second table does the same for a recurrent net: an LSTM (hidden 64) on the adding problem (length 50),
fit against a plain loop over the same module from training.network.build_network.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from training import fit
from training.callbacks import Callback
from training.metrics import TRAIN_SAMPLE
from training.network import build_network
from training.records import EpochRecord
from training.spec import JobSpec

HIDDEN = [256, 256]
Epochs = Generator[float, None, None]  # a variant's epoch seconds, one per next()
BATCH = 128
NO_SPLITS = {"validation_fraction": 0.0, "test_fraction": 0.0}


def make_spec(dataset: dict, diagnostics_every: int = 10, epochs: int = 1) -> JobSpec:
    """The benchmark spec: MLP inputs-256-256-10, Adam, no validation split (nor test, but MNIST's own)."""
    splits = {"validation_fraction": 0.0} if dataset.get("name") == "mnist" else NO_SPLITS
    return JobSpec.model_validate(
        {
            "dataset": {**dataset, **splits},
            "network": {"hidden_layers": HIDDEN},
            "optimizer": {"name": "adam", "learning_rate": 0.001},
            "training": {"epochs": epochs, "batch_size": BATCH, "diagnostics_every": diagnostics_every},
        }
    )


def synthetic_npz(folder: Path, rows: int = 60_000, features: int = 64, classes: int = 10) -> Path:
    """A rows x features classification set with a learnable signal."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, features)).astype(np.float32)
    y = (X @ rng.normal(size=(features, classes))).argmax(axis=1)
    path = folder / f"synthetic-{rows}x{features}.npz"
    np.savez(path, X=X, y=y)
    return path


CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCK["wall"]


def fit_epochs(spec: JobSpec, epochs: int) -> Epochs:
    """training.fit's epoch seconds one at a time: fit runs in a thread that waits after each epoch record.

    An epoch is timed from the moment fit may go on to its next record, so everything fit does per epoch
    (evaluation, records, callbacks, checkpoint bookkeeping) falls inside one; the first includes setup.
    """
    go, done, stop, seconds = threading.Semaphore(0), threading.Semaphore(0), threading.Event(), []
    spec = spec.model_copy(update={"training": spec.training.model_copy(update={"epochs": epochs})})

    class Turns(Callback):
        def __init__(self) -> None:
            self.start = clock()

        def on_epoch_end(self, record: EpochRecord) -> None:
            seconds.append(clock() - self.start)
            done.release()
            if record.epoch < epochs:
                go.acquire()
                self.start = clock()

        def should_stop(self) -> bool:
            return stop.is_set()

    def run() -> None:
        go.acquire()
        fit(spec, None, [Turns()])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        for _ in range(epochs):
            go.release()
            done.acquire()
            yield seconds[-1]
    finally:  # closed early: fit cancels at its next step
        stop.set()
        go.release()
        thread.join()


def _data(spec: JobSpec) -> tuple[torch.Tensor, torch.Tensor, nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """Training rows, the model (the same initialization as fit's), and the training sample fit evaluates."""
    from training.data import prepare

    torch.manual_seed(0)
    splits = prepare(spec.dataset, spec.normalization.inputs, 0, torch.device("cpu"))
    model = build_network(spec, splits.input_shape, splits.outputs)
    return splits.X_train, splits.y_train, model, splits.train_sample(TRAIN_SAMPLE, 0)


def plain_epochs(
    spec: JobSpec, fused: bool = False, grad_norm: bool = False, evaluate: bool = False
) -> Epochs:
    """A plain loop's epoch seconds: on-device permutation batches, loss summed as a tensor, read per epoch.

    grad_norm: also take the global gradient norm of every step, summed on the device (what fit records).
    evaluate: also measure loss and accuracy of the training sample in eval mode after each epoch.
    """
    X, y, model, (X_sample, y_sample) = _data(spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused or None)
    loss_fn = F.cross_entropy if y.dtype == torch.int64 else F.mse_loss
    batch = spec.training.batch_size
    while True:
        start = clock()
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
        read = [total, norms]
        if evaluate:
            model.eval()
            with torch.inference_mode():
                out = model(X_sample)
                read.append(loss_fn(out, y_sample))
                if y.dtype == torch.int64:
                    read.append((out.argmax(dim=1) == y_sample).float().mean())
        torch.stack(read).tolist()
        yield clock() - start


def dataloader_epochs(spec: JobSpec) -> Epochs:
    """The textbook loop's epoch seconds: TensorDataset + DataLoader(shuffle=True)."""
    X, y, model, _ = _data(spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=BATCH, shuffle=True)
    while True:
        start = clock()
        model.train()
        total = torch.zeros(())
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
        total.item()
        yield clock() - start


Variants = dict[str, Callable[[], Epochs]]


def measure(timed: Variants, rounds: int, epochs: int) -> dict[str, list[float]]:
    """Epoch seconds of every variant, taking turns epoch by epoch (load changes hit all alike); each
    round starts every variant afresh and drops its first epoch (warm-up)."""
    measured: dict[str, list[float]] = {name: [] for name in timed}
    for _ in range(rounds):
        runs = {name: start() for name, start in timed.items()}
        for epoch in range(epochs + 1):
            for name, run in runs.items():
                seconds = next(run)
                if epoch > 0:
                    measured[name].append(seconds)
        for run in runs.values():
            run.close()  # fit's thread has ended (or ends) before the next round starts
    return measured


FUSED, FUSED_EVAL = "plain loop (Adam, fused)", "plain loop (Adam, fused) + eval"


def variants(dataset: dict, epochs: int) -> Variants:
    """Every timed variant on one dataset."""
    spec, runs = make_spec(dataset), epochs + 1
    return {
        "plain loop (Adam, torch default: for-loop)": lambda: plain_epochs(spec),
        FUSED: lambda: plain_epochs(spec, fused=True),
        FUSED_EVAL: lambda: plain_epochs(spec, fused=True, evaluate=True),
        "plain loop (Adam, fused) + eval + grad norm": lambda: plain_epochs(
            spec, fused=True, grad_norm=True, evaluate=True
        ),
        "DataLoader loop": lambda: dataloader_epochs(spec),
        "fit, diagnostics every 10 steps (default)": lambda: fit_epochs(spec, runs),
        "fit, diagnostics every step": lambda: fit_epochs(make_spec(dataset, 1), runs),
        "fit, no diagnostics": lambda: fit_epochs(make_spec(dataset, 0), runs),
    }


HEADER = f"{'dataset':<24}{'variant':<46}{'s/epoch':>9}{'samples/s':>11}{'vs fused':>10}{'vs fused+eval':>15}"


def print_rows(label: str, rows: int, measured: dict[str, list[float]]) -> None:
    """Median epoch of every variant, and its samples/s relative to the fused loop without and with eval."""
    medians = {name: statistics.median(seconds) for name, seconds in measured.items()}
    fused, fused_eval = medians[FUSED], medians.get(FUSED_EVAL)
    for name, median in medians.items():
        with_eval = f"{fused_eval / median:>14.2f}x" if fused_eval else f"{'':>15}"
        print(f"{label:<24}{name:<46}{median:>9.4f}{rows / median:>11,.0f}{fused / median:>9.2f}x{with_eval}")
    print()


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


def rnn_variants(samples: int, epochs: int) -> Variants:
    """The recurrent variants."""
    runs = epochs + 1
    return {
        FUSED: lambda: plain_epochs(make_rnn_spec(samples), fused=True),
        FUSED_EVAL: lambda: plain_epochs(make_rnn_spec(samples), fused=True, evaluate=True),
        "fit, diagnostics every 10 steps (default)": lambda: fit_epochs(make_rnn_spec(samples), runs),
        "fit, no diagnostics": lambda: fit_epochs(make_rnn_spec(samples, 0), runs),
    }


def print_rnn_table(rounds: int, quick: bool) -> None:
    """Median epoch of fit against the plain loop for the LSTM."""
    samples, epochs = (1000, 2) if quick else (4000, 3)
    label = f"adding, {samples:,} x {RNN_LENGTH}"
    print(f"LSTM hidden {RNN_HIDDEN}, adding length {RNN_LENGTH}, batch {RNN_BATCH}, Adam lr 1e-3\n")
    print(HEADER)
    print("-" * len(HEADER))
    print_rows(label, samples, measure(rnn_variants(samples, epochs), rounds, epochs))


def mnist_scale(folder: Path) -> tuple[str, dict]:
    """MNIST itself when the dataset cache holds it; otherwise generated data of its shape."""
    from training.download import REMOTE_FILES, DatasetCache, is_cached

    if all(is_cached(remote, DatasetCache.from_env()) for remote in REMOTE_FILES["mnist"]):
        return "MNIST", {"name": "mnist"}
    return "generated", {"path": str(synthetic_npz(folder, features=784))}


def main() -> None:
    """Run every variant in interleaved rounds and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions of every variant")
    parser.add_argument("--quick", action="store_true", help="fewer epochs (a smoke run)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own, one per core)")
    parser.add_argument(
        "--only", choices=["digits", "synthetic", "mnist", "lstm"], help="one table row group"
    )
    parser.add_argument("--clock", choices=list(CLOCK), default="wall", help="wall or process CPU seconds")
    args = parser.parse_args()
    global clock
    clock = CLOCK[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = Path(tempfile.mkdtemp())
    groups = {
        "digits": lambda: ("digits", {"name": "digits"}, 4 if args.quick else 12),
        "synthetic": lambda: ("synthetic", {"path": str(synthetic_npz(folder))}, 2 if args.quick else 3),
        "mnist": lambda: (*mnist_scale(folder), 2 if args.quick else 3),
    }
    chosen = [args.only] if args.only else [*groups, "lstm"]
    datasets = {
        label: (dataset, epochs) for label, dataset, epochs in (groups[g]() for g in chosen if g in groups)
    }
    network = "-".join(map(str, ["inputs", *HIDDEN, 10]))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, MLP {network}, batch {BATCH}")
    print(
        f"median epoch ({args.clock} clock), {args.rounds} rounds of variants taking turns epoch by epoch\n"
    )
    print(HEADER)
    print("-" * len(HEADER))
    for name, (dataset, epochs) in datasets.items():
        X = _data(make_spec(dataset))[0]
        label = f"{name} {len(X):,} x {X[0].numel()}"
        print_rows(label, len(X), measure(variants(dataset, epochs), args.rounds, epochs))
    if "lstm" in chosen:
        print_rnn_table(args.rounds, args.quick)


if __name__ == "__main__":
    main()

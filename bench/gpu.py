"""The CUDA path, checked end to end in one short run (issue 15). On a CUDA machine:

    .venv/bin/python bench/gpu.py

(1) a job end to end through a real worker on cuda; (2) a replica group against its jobs one by one;
(3) training.precision "bf16"; (4) a SIGKILLed job resumed from its checkpoint equals an uninterrupted
run (deterministic algorithms, CUBLAS_WORKSPACE_CONFIG); (5) an out-of-memory job fails alone, with an
actionable message, and the worker takes the next job; (6) peak memory and utilization per job.

`--dry-run` runs the same checks on the CPU (all but 5, which needs a GPU to run out of) so the script
itself is tested where there is no GPU. Exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from training.checkpoint import prefixed, read_checkpoint  # noqa: E402
from training.device import make_deterministic  # noqa: E402
from training.group import fit_group  # noqa: E402
from training.loop import fit  # noqa: E402
from training.spec import JobSpec  # noqa: E402


def spec(device: str, **training: Any) -> JobSpec:
    """A digits MLP [64, 64] on `device`."""
    return JobSpec.model_validate(
        {
            "dataset": {"name": "digits"},
            "network": {"hidden_layers": [64, 64]},
            "generalization": {"dropout": 0.1},
            "training": {"epochs": 3, "batch_size": 32, "device": device, **training},
        }
    )


class Usage:
    """Peak memory and mean utilization of what runs inside the block (GPU, or this process's CPU)."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.samples: list[float] = []
        self._done = threading.Event()

    def __enter__(self) -> Usage:
        self.started, self.cpu = time.perf_counter(), time.process_time()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            threading.Thread(target=self._sample, daemon=True).start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(0.1):
            try:
                self.samples.append(float(torch.cuda.utilization()))
            except Exception:  # pynvml missing: utilization is not known
                return

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self.seconds = time.perf_counter() - self.started
        if self.cuda:
            torch.cuda.synchronize()
            self.memory_mb = torch.cuda.max_memory_allocated() / 2**20
            self.utilization = sum(self.samples) / len(self.samples) if self.samples else None
        else:
            self.memory_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            self.utilization = 100 * (time.process_time() - self.cpu) / max(self.seconds, 1e-9)

    def row(self, name: str) -> str:
        use = f"{self.utilization:.0f} %" if self.utilization is not None else "n/a (no pynvml)"
        kind = "GPU peak allocated" if self.cuda else "process peak RSS"
        return f"| {name} | {self.seconds:.2f} s | {kind} {self.memory_mb:,.0f} MiB | {use} |"


def check_end_to_end(device: str, usage: list[str]) -> str:
    """(1) and (5): jobs through the API and a real worker."""
    from service import Deployment

    with tempfile.TemporaryDirectory(prefix="trainctl-gpu-") as folder:
        root = Path(folder)
        env = {"TRAINCTL_WORKER_CUDA_MEMORY_FRACTION": "0.002"} if device.startswith("cuda") else {}
        deployment = Deployment(root, f"sqlite:///{root}/trainctl.db", None, env)
        try:
            deployment.start_worker(concurrency=1, threads=1)
            ids = []
            # device auto: the job goes to this deployment's queue, and the worker resolves it (cuda there)
            if device.startswith("cuda"):  # 8.5 M parameters with Adam: more than 0.2 % of the card
                big = spec("auto").model_dump(mode="json")
                big["network"]["hidden_layers"] = [2048, 2048, 2048]
                ids.append(deployment.submit(big))
            ids.append(deployment.submit(spec("auto").model_dump(mode="json")))
            deployment._wait(lambda: _finished(deployment, ids), 300, "jobs did not finish in 300 s")
            with deployment.sessions() as session:
                from core.models import Job

                jobs = {job.id: job for job in session.query(Job).filter(Job.id.in_(ids))}
        finally:
            deployment.close()
    last = jobs[ids[-1]]
    assert last.status == "succeeded", f"the job failed: {last.error}"
    assert last.result is not None and last.result["device"].startswith(device), last.result
    message = f"job succeeded on {last.result['device']} in {last.result['seconds']:.2f} s"
    if len(ids) == 2:
        oom = jobs[ids[0]]
        assert oom.status == "failed" and oom.error and "out of memory" in oom.error, oom.error
        message += f"; the out-of-memory job failed alone: {oom.error[:120]}"
    return message


def _finished(deployment: Any, ids: list[str]) -> bool:
    from core.models import Job

    with deployment.sessions() as session:
        statuses = [job.status for job in session.query(Job).filter(Job.id.in_(ids))]
    return len(statuses) == len(ids) and all(s in ("succeeded", "failed", "cancelled") for s in statuses)


def check_group(device: str, usage: list[str], replicas: int) -> str:
    """(2): R seeds stacked against the same R jobs one after another."""
    specs = [spec(device, seed=s) for s in range(replicas)]
    fit(spec(device, epochs=1))  # the first run pays one-time costs (imports, kernels): not part of either
    with Usage(device) as alone:
        for one in specs:
            fit(one)
    with Usage(device) as together:
        results = fit_group(specs)
    assert all(r.status == "succeeded" for r in results), [r.error for r in results]
    usage += [alone.row(f"{replicas} jobs one by one"), together.row(f"{replicas} jobs as one group")]
    return f"{replicas} replicas stacked: {alone.seconds / together.seconds:.2f}× faster than one by one"


def check_bf16(device: str, usage: list[str]) -> str:
    """(3): bfloat16 autocast trains, to about the loss of float32."""
    with Usage(device) as half:
        low = fit(spec(device, precision="bf16"))
    full = fit(spec(device))
    usage.append(half.row("bf16 job"))
    assert low.status == "succeeded" and low.final and full.final, low.error
    assert low.final.val_loss is not None and full.final.val_loss is not None
    ratio = low.final.val_loss / full.final.val_loss
    assert 0.8 < ratio < 1.25, f"bf16 val_loss {low.final.val_loss} against float32 {full.final.val_loss}"
    return f"bf16 val_loss {low.final.val_loss:.4f}, float32 {full.final.val_loss:.4f}"


def check_resume(device: str, usage: list[str]) -> str:
    """(4): SIGKILL a run after its second epoch, resume it, and compare with an uninterrupted run."""
    job = spec(device, epochs=5)
    with tempfile.TemporaryDirectory(prefix="trainctl-gpu-resume-") as folder:
        killed, whole = Path(folder) / "killed", Path(folder) / "whole"
        (Path(folder) / "spec.json").write_text(job.model_dump_json())
        command = [sys.executable, __file__, "--child", str(Path(folder) / "spec.json"), str(killed)]
        child = subprocess.Popen(command, start_new_session=True)
        metrics = killed / "metrics.jsonl"
        deadline = time.monotonic() + 300
        while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
            assert child.poll() is None and time.monotonic() < deadline, "the run ended before the kill"
            time.sleep(0.01)
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        subprocess.run([*command, "--resume"], check=True)
        fit(job, whole)
        left = prefixed(read_checkpoint(killed / "checkpoints" / "last.safetensors")[0], "model.")
        right = prefixed(read_checkpoint(whole / "checkpoints" / "last.safetensors")[0], "model.")
        same = all(torch.equal(left[k], right[k]) for k in right)
        result = json.loads((killed / "result.json").read_text())
    assert result["epochs_run"] == 5 and same, "the resumed weights differ from the uninterrupted run's"
    return "killed after epoch 2, resumed: final weights bit-identical to the uninterrupted run"


def main() -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--dry-run", action="store_true", help="run the checks on the CPU")
    parser.add_argument("--replicas", type=int, default=8)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    make_deterministic()
    if args.child:  # the run check (4) kills
        fit(JobSpec.model_validate_json(Path(args.child[0]).read_text()), args.child[1], resume=args.resume)
        return 0
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device here: run with --dry-run for the CPU-side checks")
        return 2
    device = "cpu" if args.dry_run else "cuda"
    card = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {os.cpu_count()} cores (dry run)"
    usage: list[str] = []
    checks: list[tuple[str, Callable[[], str]]] = [
        ("1+5 end to end through a worker", lambda: check_end_to_end(device, usage)),
        ("2 replica group", lambda: check_group(device, usage, args.replicas)),
        ("3 bf16", lambda: check_bf16(device, usage)),
        ("4 resume after SIGKILL", lambda: check_resume(device, usage)),
    ]
    failed = 0
    print(f"trainctl GPU checks on {card}, torch {torch.__version__}\n")
    for name, check in checks:
        try:
            print(f"PASS {name}: {check()}")
        except (AssertionError, subprocess.CalledProcessError, SystemExit) as error:
            failed += 1
            print(f"FAIL {name}: {error}")
    if device == "cpu":
        print("SKIP 5 out of memory: needs a GPU to run out of")
    print("\n6 memory and utilization per job\n\n| job | wall | memory | utilization |\n|---|---|---|---|")
    print("\n".join(usage))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

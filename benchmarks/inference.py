"""Inference benchmark: the native core, the NumPy backend and ONNX Runtime on the same models.

Run `python benchmarks/inference.py` (the coordinator's `make bench-inference`). The models are
hil.models' MobileNet-v2-style classifier at 224x224 (width 1.0) and U-Net-style cloud mask at
256x256, with seeded random weights. Every configuration (model x runtime x threads) runs in a
process of its own, so that its peak memory is its own:

- latency: `--iterations` timed runs after `--warmup` untimed ones (the NumPy backend
  `--numpy-iterations` after one), median and p99 of the per-run times. The processes of one
  model stay loaded and take turns over `--rounds` rounds, each running a batch, so that load
  from elsewhere on a shared machine falls on every configuration alike;
- peak memory: the growth of the process's peak resident set (VmHWM in /proc/self/status) from
  just before the runtime is imported (NumPy and the model file's bytes already in memory) to
  after load, warm-up and all timed runs: import + load + inference, the runtime's footprint;
- GFLOP/s = 2 x MACs / median latency, against the machine's peak estimated as cores x clock x
  FLOPs per cycle (2 FMA units x 8 float32 lanes x 2 for AVX2/FMA; x 16 lanes for AVX-512), the
  clock being /proc/cpuinfo's "cpu MHz" (no turbo: an estimate, said so in the output).

ONNX Runtime runs with intra_op_num_threads = threads, inter_op_num_threads = 1, sequential
execution and all graph optimisations; the NumPy backend gets its BLAS thread count from
OPENBLAS_NUM_THREADS/OMP_NUM_THREADS = threads. Outputs of the three runtimes on one input are
compared (max abs difference against ONNX Runtime) as a sanity check. Markdown tables at the end
can be pasted into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS = {
    "mobilenet_v2": ("MobileNet-v2 1.0, 224x224", "image", (1, 3, 224, 224)),
    "cloud_mask_unet": ("U-Net cloud mask, 256x256", "bands", (1, 4, 256, 256)),
}
RUNTIMES = ("native", "numpy", "onnxruntime")
TARGET_ORT_RATIO = 1.5
TARGET_NUMPY_SPEEDUP = 5.0


def build_models(directory: Path) -> dict[str, Path]:
    sys.path.insert(0, str(ROOT))
    from hil.models import cloud_mask_unet, mobilenet_v2

    paths = {}
    for name, builder in (("mobilenet_v2", mobilenet_v2), ("cloud_mask_unet", cloud_mask_unet)):
        path = directory / f"{name}.onnx"
        path.write_bytes(builder().SerializeToString())
        paths[name] = path
    return paths


# -- worker: one configuration in its own process ----------------------------------------------


def _rss_peak_bytes() -> int:
    """This process's peak resident set: VmHWM, which starts afresh at exec (getrusage's
    ru_maxrss does not: Linux carries the parent's peak into a child across fork and exec)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(args: argparse.Namespace) -> None:
    """Load one configuration, warm it up, then time runs whenever the parent says "run N"."""
    model_bytes = Path(args.model).read_bytes()
    _, input_name, shape = MODELS[args.model_name]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    baseline = _rss_peak_bytes()
    load_start = time.perf_counter()
    info: dict[str, object] = {}
    if args.runtime == "onnxruntime":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = onnxruntime.InferenceSession(
            model_bytes, options, providers=["CPUExecutionProvider"]
        )

        def run() -> np.ndarray:
            return session.run(None, {input_name: x})[0]
    else:
        sys.path.insert(0, str(ROOT))
        from flight.inference import load

        session = load(model_bytes, backend=args.runtime, num_threads=args.threads)
        output_name = session.info.outputs[0].name
        info.update(
            simd=session.info.simd,
            macs=session.info.macs,
            arena_bytes=session.info.arena_bytes,
            tensor_bytes=session.info.tensor_bytes,
            weight_bytes=session.info.weight_bytes,
            operators=session.info.operators,
        )

        def run() -> np.ndarray:
            return session.run({input_name: x})[output_name]

    del model_bytes
    info["load_s"] = time.perf_counter() - load_start
    output = None
    for _ in range(args.warmup):
        output = run()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "stop":
            break
        times = []
        for _ in range(int(command[1])):
            t0 = time.perf_counter_ns()
            output = run()
            times.append((time.perf_counter_ns() - t0) / 1e6)
        print(json.dumps({"times_ms": times}), flush=True)
    np.save(args.output_npy, output)
    info["peak_bytes"] = _rss_peak_bytes() - baseline
    print(json.dumps(info), flush=True)


# -- parent ------------------------------------------------------------------------------------


class Worker:
    """One configuration in its own process, timing runs on request."""

    def __init__(
        self, args, model_name: str, path: Path, runtime: str, threads: int, scratch: Path
    ) -> None:
        self.key = (model_name, runtime, threads)
        self.npy = scratch / f"{model_name}-{runtime}-{threads}.npy"
        env = dict(os.environ)
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
        command = [
            sys.executable, __file__, "--worker", "--model", str(path),
            "--model-name", model_name, "--runtime", runtime, "--threads", str(threads),
            "--output-npy", str(self.npy),
            "--warmup", str(1 if runtime == "numpy" else args.warmup),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.times: list[float] = []
        self._reply()  # loaded and warmed up

    def _reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            what = "/".join(map(str, self.key))
            raise SystemExit(f"{what} failed (exit status {self.process.returncode})")
        return json.loads(line)

    def run(self, count: int) -> None:
        self.process.stdin.write(f"run {count}\n")
        self.process.stdin.flush()
        self.times += self._reply()["times_ms"]

    def finish(self) -> dict:
        self.process.stdin.write("stop\n")
        self.process.stdin.flush()
        result = self._reply()
        self.process.wait()
        result["times_ms"] = self.times
        result["output"] = np.load(self.npy)
        return result


def measure(args, model_name: str, path: Path, runtimes, thread_counts, scratch: Path) -> dict:
    """Every configuration of one model, in interleaved rounds: each round runs a batch of every
    configuration in turn (starting one further along each round)."""
    workers = [
        Worker(args, model_name, path, runtime, threads, scratch)
        for threads in thread_counts
        for runtime in runtimes
    ]
    numpy_every = max(1, args.rounds // max(1, args.numpy_iterations))
    for index in range(args.rounds):
        start = index % len(workers)
        for w in workers[start:] + workers[:start]:
            if w.key[1] == "numpy":
                if index % numpy_every == 0:
                    w.run(max(1, args.numpy_iterations // args.rounds))
            else:
                w.run(max(1, args.iterations // args.rounds))
            time.sleep(0.05)  # let the last runtime's spinning threads go idle first
    return {w.key: w.finish() for w in workers}


def cpu_facts() -> dict[str, object]:
    facts: dict[str, object] = {"model": platform.processor() or platform.machine(), "mhz": None}
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key == "model name":
                    facts["model"] = value.strip()
                elif key == "cpu mhz" and facts["mhz"] is None:
                    facts["mhz"] = float(value)
                elif key in ("flags", "features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    facts["avx2_fma"] = {"avx2", "fma"} <= flags
    facts["avx512"] = "avx512f" in flags
    facts["cores"] = os.cpu_count() or 1
    return facts


def peak_gflops(facts: dict[str, object], lanes: int) -> float | None:
    if not facts["mhz"]:
        return None
    return float(facts["cores"]) * float(facts["mhz"]) / 1e3 * 2 * lanes * 2


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--model-name", help=argparse.SUPPRESS)
    parser.add_argument("--runtime", help=argparse.SUPPRESS)
    parser.add_argument("--output-npy", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument(
        "--iterations", type=int, default=200, help="timed runs of native and ONNX Runtime"
    )
    parser.add_argument(
        "--numpy-iterations", type=int, default=20, help="timed runs of the NumPy backend"
    )
    parser.add_argument("--rounds", type=int, default=20, help="rounds the runs are spread over")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs first")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES), help="comma-separated")
    parser.add_argument(
        "--thread-counts", default=None, help="comma-separated (default: 1 and all cores)"
    )
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    import onnx
    import onnxruntime

    facts = cpu_facts()
    cores = int(facts["cores"])
    thread_counts = (
        [int(t) for t in args.thread_counts.split(",")]
        if args.thread_counts
        else sorted({1, cores})
    )
    models = args.models.split(",")
    runtimes = args.runtimes.split(",")
    now = datetime.datetime.now(datetime.UTC)
    print(
        f"machine: {facts['model']}, {cores} cores, {platform.machine()}, "
        f"cpu MHz {facts['mhz']}, avx2+fma {facts['avx2_fma']}, avx512f {facts['avx512']}"
    )
    print(
        f"python:  {platform.python_implementation()} {sys.version.split()[0]}, numpy "
        f"{np.__version__}, onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}"
    )
    print(f"date:    {now:%Y-%m-%d %H:%M} UTC")
    sys.path.insert(0, str(ROOT))
    try:
        from flight.inference._native import ffi, lib

        version = ffi.string(lib.pn_version()).decode()
        level = ffi.string(lib.pn_simd_name(lib.pn_simd_level())).decode()
        print(f"core:    {version}, runs at {level}")
    except ImportError as error:
        print(f"core:    not built ({error})")
    avx2_peak = peak_gflops(facts, 8)
    avx512_peak = peak_gflops(facts, 16) if facts["avx512"] else None
    if avx2_peak:
        print(
            f"peak:    {avx2_peak:.0f} GFLOP/s AVX2/FMA ({cores} cores x {facts['mhz']:.0f} MHz "
            "x 2 FMA x 8 lanes x 2)"
            + (f", {avx512_peak:.0f} GFLOP/s AVX-512" if avx512_peak else "")
            + "; an estimate: the nominal clock, no turbo"
        )
    print(
        f"runs:    {args.iterations} timed after {args.warmup} warm-up (NumPy "
        f"{args.numpy_iterations} after 1), each configuration in its own process, the runs "
        f"interleaved over {args.rounds} rounds\n"
    )

    results: dict[tuple[str, str, int], dict] = {}
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        paths = build_models(scratch)
        for model_name in models:
            measured = measure(
                args, model_name, paths[model_name], runtimes, thread_counts, scratch
            )
            results.update(measured)
            for (_, runtime, threads), result in measured.items():
                times = result["times_ms"]
                print(
                    f"  measured {model_name:16} {runtime:12} {threads} thread(s): median "
                    f"{statistics.median(times):9.2f} ms over {len(times)} runs",
                    flush=True,
                )
    report(results, models, runtimes, thread_counts, facts)


def report(results, models, runtimes, thread_counts, facts) -> None:
    cores = int(facts["cores"])
    print()
    for model_name in models:
        title, _, shape = MODELS[model_name]
        macs = next(
            (r["macs"] for (m, rt, _), r in results.items() if m == model_name and "macs" in r),
            None,
        )
        print(
            f"### {title} (input {'x'.join(map(str, shape))}"
            + (f", {macs / 1e9:.3f} GMAC per run)" if macs else ")")
        )
        print()
        print(
            "| runtime | threads | median (ms) | p99 (ms) | runs | GFLOP/s | % of AVX2 peak "
            "| peak memory (MB) | max abs diff vs ORT |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for threads in thread_counts:
            reference = results.get((model_name, "onnxruntime", threads))
            for runtime in runtimes:
                r = results.get((model_name, runtime, threads))
                if r is None:
                    continue
                times = r["times_ms"]
                median = statistics.median(times)
                gflops = 2 * macs / (median / 1e3) / 1e9 if macs else float("nan")
                share = peak_gflops(facts, 8)
                share = f"{100 * gflops / share * cores / threads:.0f}%" if share else "-"
                diff = (
                    float(np.abs(r["output"] - reference["output"]).max())
                    if reference is not None
                    else float("nan")
                )
                label = runtime + (
                    f" ({r['simd']})" if r.get("simd") and runtime == "native" else ""
                )
                print(
                    f"| {label} | {threads} | {median:.2f} | {percentile(times, 99):.2f} | "
                    f"{len(times)} | {gflops:.1f} | {share} | {r['peak_bytes'] / 1e6:.1f} | "
                    f"{diff:.2e} |"
                )
        print()
        native = results.get((model_name, "native", 1), {})
        if native.get("arena_bytes"):
            print(
                f"native plan: arena {native['arena_bytes'] / 1e6:.1f} MB (one buffer per "
                f"tensor would be {native['tensor_bytes'] / 1e6:.1f} MB), packed weights "
                f"{native['weight_bytes'] / 1e6:.1f} MB; operators {native['operators']}"
            )
            print()
    print(
        "| model | threads | native / ORT (<= 1.5) | NumPy / native (>= 5) | "
        "peak memory native / ORT (< 1) |"
    )
    print("|---|---:|---:|---:|---:|")
    verdicts = []
    for model_name in models:
        for threads in thread_counts:
            native = results.get((model_name, "native", threads))
            ort = results.get((model_name, "onnxruntime", threads))
            numpy_run = results.get((model_name, "numpy", threads))
            if native is None:
                continue
            n_median = statistics.median(native["times_ms"])
            cells = []
            if ort is not None:
                ratio = n_median / statistics.median(ort["times_ms"])
                cells.append(f"{ratio:.2f}")
                if threads == 1:
                    verdicts.append(
                        (
                            f"{model_name}: native <= {TARGET_ORT_RATIO}x ORT single-thread",
                            ratio <= TARGET_ORT_RATIO,
                            f"{ratio:.2f}x",
                        )
                    )
            else:
                cells.append("-")
            if numpy_run is not None:
                speedup = statistics.median(numpy_run["times_ms"]) / n_median
                cells.append(f"{speedup:.1f}")
                verdicts.append(
                    (
                        f"{model_name}: native >= {TARGET_NUMPY_SPEEDUP}x NumPy, "
                        f"{threads} thread(s)",
                        speedup >= TARGET_NUMPY_SPEEDUP,
                        f"{speedup:.1f}x",
                    )
                )
            else:
                cells.append("-")
            if ort is not None:
                memory = native["peak_bytes"] / ort["peak_bytes"]
                cells.append(f"{memory:.2f}")
                verdicts.append(
                    (
                        f"{model_name}: native peak memory < ORT, {threads} thread(s)",
                        memory < 1,
                        f"{memory:.2f}x",
                    )
                )
            else:
                cells.append("-")
            print(f"| {model_name} | {threads} | " + " | ".join(cells) + " |")
    print()
    for what, met, value in verdicts:
        print(f"- {'MET' if met else 'NOT MET'}: {what} ({value})")


if __name__ == "__main__":
    main()

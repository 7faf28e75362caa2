"""Shared helpers of the almost-linear benchmarks (fast_vs_exact.py, phase_transition.py,
crossover.py): drive the `lorafast` CLI (INTERFACE.md) with timeouts, read its
safetensors outputs with numpy, measure gradient errors, fit log-log slopes and record
the machine, settings, command, date and load average next to every result.

Every run is one `lorafast` process; its JSON `seconds` field times the whole LoRA
attention forward + backward (projections, attention, adapter gradients), not file I/O.
A run that fails, times out or is predicted to be too slow becomes a row with a note,
never an exception: these scripts are re-run on faster and slower builds.
"""
import csv
import datetime
import json
import math
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_BINARY = ROOT / "build" / "lorafast"

_NP_OF_DTYPE = {"F64": "<f8", "F32": "<f4"}


# ---------------------------------------------------------------- files

def read_safetensors(path):
    """{name: float64 array} of a safetensors file (F32/F64 tensors only)."""
    blob = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    header.pop("__metadata__", None)
    data = memoryview(blob)[8 + n:]
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        a = np.frombuffer(data[begin:end], dtype=_NP_OF_DTYPE[info["dtype"]])
        out[name] = a.reshape(info["shape"]).astype(np.float64)
    return out


def gradient_error(path, ref_path):
    """Relative Frobenius error over all d_* tensors together (INTERFACE.md --eps)."""
    got, ref = read_safetensors(path), read_safetensors(ref_path)
    names = sorted(k for k in ref if k.startswith("d_"))
    if sorted(k for k in got if k.startswith("d_")) != names:
        raise ValueError(f"{path}: gradient tensors differ from {ref_path}")
    num = sum(float(np.sum((got[k] - ref[k]) ** 2)) for k in names)
    den = sum(float(np.sum(ref[k] ** 2)) for k in names)
    return math.sqrt(num / den) if den > 0 else math.sqrt(num)


# ---------------------------------------------------------------- the CLI

class RunFailed(Exception):
    """A lorafast run that exited non-zero or timed out; str() is a one-line note."""


class Lorafast:
    """The `lorafast` binary with a fixed thread count and a scratch directory."""

    def __init__(self, binary, threads, workdir=None, omp_wait_policy="inherit"):
        self.binary = str(binary)
        self.threads = threads
        self.env = omp_env(omp_wait_policy)
        if not os.access(self.binary, os.X_OK):
            sys.exit(f"no lorafast binary at {self.binary} (build it, or pass --lorafast)")
        self._tmp = tempfile.TemporaryDirectory(prefix="lorafast-bench-", dir=workdir)
        self.tmp = Path(self._tmp.name)
        self.log = []  # every command run, for the sidecar

    def path(self, name):
        return str(self.tmp / name)

    def run(self, args, timeout=None, want_json=True):
        cmd = [self.binary] + [str(a) for a in args] + ["--threads", str(self.threads)]
        self.log.append(" ".join(cmd[1:]))
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env)
        except subprocess.TimeoutExpired:
            raise RunFailed(f"timeout after {timeout:.0f} s: lorafast {' '.join(cmd[1:3])}")
        if proc.returncode != 0:
            msg = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise RunFailed(f"exit {proc.returncode}: {msg}")
        if not want_json:
            return time.perf_counter() - t0
        return json.loads(proc.stdout)

    def case(self, name, gain, seed, out=None):
        out = out or self.path(f"case_{abs(hash((name, gain, seed)))}.safetensors")
        self.run(["case", "--name", name, "--weight-gain", repr(float(gain)), "--seed", seed, "--out", out],
                 want_json=False)
        return out

    @staticmethod
    def model_flags(heads, causal, eps=None, degree=None):
        flags = ["--heads", heads] + (["--causal"] if causal else [])
        if eps is not None:
            flags += ["--eps", repr(float(eps))]
        if degree is not None:
            flags += ["--degree", degree]
        return flags

    def phase(self, case, heads, causal, eps=None, method=None):
        """`phase --json`; with `method` (fast or chained) the degree reported is that
        method's own certified degree (the default, auto, reports the cheaper one's)."""
        flags = ["--method", method] if method else []
        return self.run(["phase", "--in", case, "--json"] + self.model_flags(heads, causal, eps) + flags,
                        timeout=600)

    def grad(self, case, heads, causal, method, eps=None, degree=None, dtype="f32", out=None, timeout=None):
        """One `grad --json` run; returns its JSON with `out` (the gradients file) added."""
        out = out or self.path("grads.safetensors")
        res = self.run(["grad", "--in", case, "--out", out, "--method", method, "--dtype", dtype, "--json"]
                       + self.model_flags(heads, causal, eps, degree), timeout=timeout)
        res["out"] = out
        return res

    def timed_grad(self, case, heads, causal, method, eps=None, degree=None, min_time=0.5, max_reps=10,
                   timeout=None):
        """Best-of-reps wall time of the attention gradient (the host is shared: the
        minimum is the least disturbed run). Repeats while the total is under min_time
        (so a run longer than min_time runs once), at most max_reps times."""
        runs, total = [], 0.0
        while len(runs) < max_reps and (not runs or total < min_time):
            res = self.grad(case, heads, causal, method, eps, degree, timeout=timeout)
            runs.append(res)
            total += res["seconds"]
        best = min(runs, key=lambda r: r["seconds"])
        return dict(best, reps=len(runs), seconds_all=[r["seconds"] for r in runs])


def omp_env(policy):
    """Environment for child processes. On an oversubscribed host, GNU OpenMP's default
    spin-waiting makes short parallel runs 10-30x slower (a spinning thread steals the
    core of the one doing the work); OMP_WAIT_POLICY=passive avoids that."""
    env = dict(os.environ)
    if policy != "inherit":
        env["OMP_WAIT_POLICY"] = policy.upper()
    return env


def add_common_args(ap):
    ap.add_argument("--lorafast", default=str(DEFAULT_BINARY), help="path to the lorafast binary")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--omp-wait-policy", choices=["inherit", "passive", "active"], default="inherit",
                    help="OMP_WAIT_POLICY of the timed processes (passive: fairer on a loaded host)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out-dir", default=str(HERE / "results"))


def add_replot_args(ap, name):
    """--name (the output file stem) and --replot (redraw the PNG from the JSON)."""
    ap.add_argument("--name", default=name, help="output file stem")
    ap.add_argument("--replot", action="store_true", help="redraw the PNG from the JSON of a previous run")


def previous_run(args):
    """(results directory, Provenance of the run whose JSON --replot redraws)."""
    out = Path(args.out_dir)
    return out, Provenance.from_json(out / f"{args.name}.json")


def case_name(L, E, heads=2, causal=True, rank=4, adapted="qv"):
    return f"grad/{'causal' if causal else 'bidir'}/N1/L{L}/E{E}/H{heads}/R{rank}/{adapted}"


def max_head(phase_json, key):
    return max(h[key] for h in phase_json["heads"])


def gain_for_score_bound(lf, name, target, seed, heads, causal, key="centred_score_bound"):
    """Weight gain W whose case has max-over-heads `key` == target. W scales W_q, W_k
    and their LoRA B, so Q and K scale by W and both score bounds by exactly W^2."""
    ref = lf.phase(lf.case(name, 1.0, seed), heads, causal)
    return math.sqrt(target / max_head(ref, key))


# ---------------------------------------------------------------- analysis

def loglog_slope(points, top=3):
    """Least-squares slope of log t against log L over the `top` largest L (None if < 2)."""
    pts = sorted((L, t) for L, t in points if t is not None and t > 0)[-top:]
    if len(pts) < 2:
        return None
    x = np.log([p[0] for p in pts])
    y = np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


# ---------------------------------------------------------------- provenance

def machine_info(lf):
    """CPU, cores, OpenBLAS core (from `lorafast bench`, which links it), torch, python."""
    info = {"cpu": platform.processor() or "unknown", "cores": os.cpu_count(), "threads": lf.threads,
            "python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform(),
            "OMP_WAIT_POLICY": lf.env.get("OMP_WAIT_POLICY")}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        res = lf.run(["bench", "--json", "--seq-len", 64, "--reps", 1, "--gemm-size", 64], timeout=60)
        info.update({k: v for k, v in res["machine"].items() if k.startswith("openblas")})
    except (RunFailed, KeyError, ValueError) as e:
        info["openblas"] = f"unknown ({e})"
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        info["git_commit"] = commit
    except OSError:
        pass
    return info


def torch_version():
    try:
        out = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                             text=True, timeout=120)
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


class Provenance:
    """Machine, settings, command, date and load averages of one script run."""

    def __init__(self, script, args, lf):
        self.started = time.time()
        self.record = {
            "script": f"bench/{script}",
            "command": " ".join(["python3", f"bench/{script}"] + sys.argv[1:]),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "settings": {k: v for k, v in vars(args).items()},
            "loadavg_before": list(os.getloadavg()),
        }
        self.record["machine"] = machine_info(lf)
        if self.record["loadavg_before"][0] > 0.5:
            print(f"warning: load average {self.record['loadavg_before'][0]:.1f} before the run; "
                  "other work on the host inflates the timings", file=sys.stderr)

    @classmethod
    def from_json(cls, path):
        """A finished record read back (for --replot)."""
        prov = cls.__new__(cls)
        prov.record = json.loads(Path(path).read_text())
        prov.started = time.time()
        return prov

    def finish(self, **extra):
        self.record["loadavg_after"] = list(os.getloadavg())
        self.record["runtime_seconds"] = round(time.time() - self.started, 1)
        self.record.update(extra)
        return self.record

    def caption(self):
        """One line for figure footers."""
        m = self.record["machine"]
        la = self.record["loadavg_before"]
        omp = f", OMP_WAIT_POLICY={m['OMP_WAIT_POLICY']}" if m.get("OMP_WAIT_POLICY") else ""
        return (f"{m['cpu']}, {m['threads']} threads{omp}, {self.record['date']}, load avg before "
                f"{la[0]:.1f}/{la[1]:.1f}/{la[2]:.1f}, after {self.record.get('loadavg_after', [float('nan')])[0]:.1f}"
                f" | {self.record['command']}")


def write_csv(path, rows, columns):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({c: _fmt(row.get(c)) for c in columns})


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def write_json(path, record):
    Path(path).write_text(json.dumps(record, indent=2, default=str) + "\n")


class Budget:
    """Wall-clock budget of a whole script: later, lower-priority points are skipped
    (with a note) once it runs out, so a slow build still finishes and writes results."""

    def __init__(self, seconds):
        self.deadline = time.time() + seconds if seconds and seconds > 0 else None

    def left(self):
        return math.inf if self.deadline is None else self.deadline - time.time()

    def allows(self, predicted):
        return predicted <= self.left()


def progress(msg):
    print(msg, file=sys.stderr, flush=True)

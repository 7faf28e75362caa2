"""Data-parallel `lorafast finetune` under mpirun (README "Several processes (MPI)").

On the shipped default model and corpus, in f64, a few updates each:
- 2 processes x --batch 2 train the adapter of 1 process x --batch 4, with the same
  losses; rank 0 alone prints and writes (rank 1 runs in a directory of its own,
  which stays empty); two identical 2-process runs are bit-identical;
- 3 processes x --batch 1 train the adapter of 1 process x --batch 3;
- a checkpoint of 2 processes x --batch 2 resumes with 1 process x --batch 4 and
  ends at the adapter of an uninterrupted run; with a global batch of 2, or on 3
  processes, it refuses;
- an unreadable data file, on every rank or on rank 1 only (its own command line),
  ends the job with one error line naming the rank, and nothing written; other
  commands refuse to run as several processes;
- instruction data (prompt-completion examples of different lengths, packed): the
  same equivalence, each rank's loss over the predicted tokens of every rank;
- a build without MPI refuses mpirun's processes (run instead of the above there).
Skipped, saying why, when mpirun is absent.

Tolerance: the two sides train on the same windows; their gradients differ only in
the order of the sums (each rank's mean over its 2 windows, the ranks' sum halved,
against one mean over 4), a few roundings of ~1e-16 per update; AdamW's update
m / sqrt(v) keeps them relative, so 1e-12 relative (norm of the difference over the
norm of the adapter) is ~1000x the expected error after 4 updates, while one window
taken by the wrong rank changes the adapter at 1e-2 or more.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lfcase  # noqa: E402
from lfcase import check  # noqa: E402

harness = lfcase.Harness(__doc__)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "data", "lora_and_adam.txt")
MODEL = os.path.join(ROOT, "models", "default")
# Root in a container: --allow-run-as-root; 2 ranks on however many cores are free
# (--oversubscribe, no binding); shared memory without the single-copy mechanism
# containers lack.
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none",
          "--mca", "btl", "self,vader", "--mca", "btl_vader_single_copy_mechanism", "none"]
RUN = ["finetune", "--model", MODEL, "--data", CORPUS, "--dtype", "f64", "--seq-len", 32, "--steps", 4,
       "--lr", 1e-2, "--eval-every", 2, "--threads", 1, "--save-every", 0]
TOLERANCE = 1e-12


def mpi_build(binary):
    """None when these tests can run, else why they are skipped."""
    if shutil.which("mpirun") is None:
        return "skipped: no mpirun (Debian: openmpi-bin)"
    rc, out, _ = lfcase.run_lorafast(binary, ["--version"])
    check(rc == 0 and "several processes over MPI:" in out, "--version: %r" % out)
    return None if "MPI: yes" in out else "skipped: this build has no MPI"


def mpirun(binary, ranks, cwd, timeout=120):
    """`mpirun` in `cwd` of one process per entry of `ranks`, each its arguments or
    (arguments, working directory): (exit code, stdout, stderr)."""
    command = list(MPIRUN)
    for i, rank in enumerate(ranks):
        rank_args, rank_cwd = rank if isinstance(rank, tuple) else (rank, cwd)
        command += ([":"] if i else []) + ["-np", "1", "--wdir", rank_cwd, binary] + [str(a) for a in rank_args]
    proc = subprocess.run(command, capture_output=True, timeout=timeout, cwd=cwd)
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


def mpirun_ok(binary, ranks, cwd):
    rc, out, err = mpirun(binary, ranks, cwd)
    check(rc == 0, "mpirun exit %d: %s" % (rc, err.strip()[-1500:]))
    return out, err


def run_ok(binary, args, cwd):
    rc, out, err = lfcase.run_lorafast(binary, args, cwd=cwd, timeout=120)
    check(rc == 0, "exit %d for %s: %s" % (rc, " ".join(map(str, args)), err.strip()[-800:]))
    return out, err


def adapter(out):
    tensors = lfcase.read_safetensors(os.path.join(out, "adapter_model.safetensors"))
    return np.concatenate([tensors[name].ravel() for name in sorted(tensors)])


def losses(out):
    with open(os.path.join(out, "train_log.csv")) as f:
        rows = [line.split(",") for line in f.read().splitlines()[1:]]
    return np.array([float(r[1]) for r in rows]), [float(r[4]) for r in rows if r[4]]


def rel(got, want):
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def two_ranks(binary, d, name, args):
    """2 processes x args: rank 0 in d/name-0 writing out/, rank 1 in d/name-1."""
    dirs = [os.path.join(d, "%s-%d" % (name, r)) for r in (0, 1)]
    for x in dirs:
        os.makedirs(x)
    out, err = mpirun_ok(binary, [(RUN + args + ["--out", "out"], x) for x in dirs], d)
    return os.path.join(dirs[0], "out"), dirs[1], out, err


@harness.test
def two_processes_train_one_process_adapter(binary):
    skip = mpi_build(binary)
    if skip:
        return skip
    with tempfile.TemporaryDirectory() as d:
        one = os.path.join(d, "one")
        run_ok(binary, RUN + ["--batch", 4, "--out", one], d)
        out, rank1_dir, stdout, stderr = two_ranks(binary, d, "a", ["--batch", 2])
        again, _, _, _ = two_ranks(binary, d, "b", ["--batch", 2])
        check(os.listdir(rank1_dir) == [], "rank 1 wrote %s" % os.listdir(rank1_dir))
        check(sorted(os.listdir(out)) == sorted(os.listdir(one)), "files %s, one process %s"
              % (sorted(os.listdir(out)), sorted(os.listdir(one))))
        check(stdout.count("steps 1-4 of 4") == 1 and stderr.count("step 4/4") == 1,
              "not one summary and one progress display: %r / %r" % (stdout, stderr[-500:]))
        err = rel(adapter(out), adapter(one))
        check(err <= TOLERANCE, "adapter of 2 x 2 vs 1 x 4: %.3g relative" % err)
        (train2, val2), (train1, val1) = losses(out), losses(one)
        loss_err = float(np.max(np.abs(train2 - train1) / np.abs(train1)))
        check(loss_err <= TOLERANCE and len(val2) == 2 and np.allclose(val2, val1, rtol=TOLERANCE, atol=0),
              "losses %s vs %s, val %s vs %s" % (train2, train1, val2, val1))
        for name in ("adapter_model.safetensors", "checkpoint.safetensors"):
            with open(os.path.join(out, name), "rb") as a, open(os.path.join(again, name), "rb") as b:
                check(a.read() == b.read(), "%s differs between two identical 2-process runs" % name)
        return "adapter %.2g, losses %.2g relative; repeat bit-identical" % (err, loss_err)


@harness.test
def three_processes_train_one_process_adapter(binary):
    skip = mpi_build(binary)
    if skip:
        return skip
    with tempfile.TemporaryDirectory() as d:
        one = os.path.join(d, "one")
        run_ok(binary, RUN + ["--batch", 3, "--out", one], d)
        mpirun_ok(binary, [RUN + ["--batch", 1, "--out", "three"]] * 3, d)
        err = rel(adapter(os.path.join(d, "three")), adapter(one))
        check(err <= TOLERANCE, "adapter of 3 x 1 vs 1 x 3: %.3g relative" % err)
        return "%.2g relative" % err


@harness.test
def two_process_checkpoint_resumes_with_one(binary):
    skip = mpi_build(binary)
    if skip:
        return skip
    with tempfile.TemporaryDirectory() as d:
        whole = os.path.join(d, "whole")
        run_ok(binary, RUN + ["--batch", 4, "--out", whole], d)
        out, _, _, _ = two_ranks(binary, d, "a", ["--batch", 2, "--stop-after", 2])
        check(len(losses(out)[0]) == 2, "the 2-process run did not stop after 2 updates")
        resume = ["finetune", "--model", MODEL, "--data", CORPUS, "--out", out, "--resume", "--threads", 1]
        rc, _, err = lfcase.run_lorafast(binary, resume + ["--batch", 2], cwd=d)
        check(rc == 3 and "--batch 4, not 2" in err, "resume with another global batch: exit %d, %r" % (rc, err))
        rc, _, err = mpirun(binary, [resume] * 3, d)
        check(rc != 0 and "does not split over 3 processes" in err, "resume on 3 processes: exit %d, %r" % (rc, err))
        run_ok(binary, resume + ["--batch", 4], d)
        err = rel(adapter(out), adapter(whole))
        check(err <= TOLERANCE, "resumed adapter vs uninterrupted: %.3g relative" % err)
        check(len(losses(out)[0]) == 4, "train_log.csv after the resume")
        return "%.2g relative" % err


@harness.test
def unreadable_data_ends_the_job_with_one_line(binary):
    skip = mpi_build(binary)
    if skip:
        return skip
    with tempfile.TemporaryDirectory() as d:
        args = list(RUN)
        args[args.index(CORPUS)] = os.path.join(d, "missing.txt")
        rc, _, err = mpirun(binary, [args + ["--out", "out"]] * 2, d)
        lines = [line for line in err.splitlines() if line.startswith("lorafast: error:")]
        check(rc != 0 and len(lines) == 1 and "missing.txt" in lines[0] and ": rank " in lines[0],
              "exit %d, error lines %s" % (rc, lines))
        check(not os.path.exists(os.path.join(d, "out")), "the failed job wrote %s" % os.path.join(d, "out"))
        # Rank 1 alone cannot read its file: rank 0 waits for it, writing nothing.
        rc, _, err = mpirun(binary, [RUN + ["--batch", 2, "--out", "out"], args + ["--out", "out"]], d)
        lines = [line for line in err.splitlines() if line.startswith("lorafast: error:")]
        check(rc != 0 and len(lines) == 1 and lines[0].startswith("lorafast: error: rank 1: ")
              and "missing.txt" in lines[0], "rank 1's file: exit %d, error lines %s" % (rc, lines))
        rank1_line = lines[0]
        check(not os.path.exists(os.path.join(d, "out")), "rank 0 wrote %s" % os.path.join(d, "out"))
        rc, _, err = mpirun(binary, [["eval", "--model", MODEL, "--data", CORPUS]] * 2, d)
        lines = [line for line in err.splitlines() if line.startswith("lorafast: error:")]
        check(rc != 0 and len(lines) == 1 and "eval runs in one process" in lines[0], "eval: %d %s" % (rc, lines))
        return rank1_line


def instruction_model(d):
    """A tiny random GPT-2 beside a byte-level BPE tokenizer of its vocabulary."""
    import gptcase  # imports torch: only this test needs it
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["Question: what is %d? Answer: it is %d." % (i, i) for i in range(50)],
                            trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                special_tokens=["<|endoftext|>"]))
    path = os.path.join(d, "model")
    config, tensors = gptcase.random_model(np.random.default_rng(0), 2, 2, 16, tok.get_vocab_size(), 64)
    gptcase.write_model_dir(path, config, tensors)
    tok.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|endoftext|>", "tokenizer_class": "PreTrainedTokenizerFast"}, f)
    return path


@harness.test
def instruction_rows_split_with_the_global_token_count(binary):
    """Prompt-completion examples of different lengths, packed (the default): each
    rank's loss is divided by the predicted tokens of all ranks' rows."""
    skip = mpi_build(binary)
    if skip:
        return skip
    with tempfile.TemporaryDirectory() as d:
        model, data = instruction_model(d), os.path.join(d, "rows.jsonl")
        with open(data, "w") as f:
            for i in range(24):
                f.write(json.dumps({"prompt": "Question: what is %d?" % i,
                                    "completion": " Answer:" + " it is %d." % i * (1 + i % 5)}) + "\n")
        args = ["finetune", "--model", model, "--data", data, "--dtype", "f64", "--seq-len", 64, "--steps", 3,
                "--lr", 1e-2, "--val-fraction", 0, "--eval-every", 0, "--threads", 1]
        one = os.path.join(d, "one")
        run_ok(binary, args + ["--batch", 4, "--out", one], d)
        mpirun_ok(binary, [args + ["--batch", 2, "--out", "two"]] * 2, d)
        err = rel(adapter(os.path.join(d, "two")), adapter(one))
        loss_err = float(np.max(np.abs(losses(os.path.join(d, "two"))[0] / losses(one)[0] - 1)))
        check(err <= TOLERANCE and loss_err <= TOLERANCE, "adapter %.3g, losses %.3g relative" % (err, loss_err))
        return "adapter %.2g, losses %.2g relative" % (err, loss_err)


@harness.test
def build_without_mpi_refuses_mpirun(binary):
    if shutil.which("mpirun") is None:
        return "skipped: no mpirun (Debian: openmpi-bin)"
    if mpi_build(binary) is None:
        return "skipped: this build has MPI"
    with tempfile.TemporaryDirectory() as d:
        rc, _, err = mpirun(binary, [RUN + ["--batch", 2, "--out", "out"]] * 2, d)
        check(rc != 0 and "this build has no MPI" in err and not os.path.exists(os.path.join(d, "out")),
              "exit %d: %r" % (rc, err[-500:]))
        return "refused"


if __name__ == "__main__":
    sys.exit(harness.main())

"""The OpenMP wait policy the program runs under (tools/cli/omp_wait_policy.cpp).

libgomp's default spin-waiting made 2-thread runs 2-6x slower on a host with other
load, so the program re-executes itself with GOMP_SPINCOUNT=10000 unless the user set
OMP_WAIT_POLICY or GOMP_SPINCOUNT. `lorafast bench --json` records both in its machine
block; each case runs a tiny bench under a controlled environment and checks the
recorded values, that the arguments survived the re-execution, and exit 0.
"""

import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lfcase  # noqa: E402
from lfcase import check  # noqa: E402

harness = lfcase.Harness(__doc__)

BENCH = ["bench", "--seq-len", "9", "--head-dim", "4", "--heads", "1", "--reps", "1", "--gemm-size", "32",
         "--threads", "2", "--json"]


def recorded_policy(binary, **settings):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(settings)
    rc, stdout, stderr = lfcase.run_lorafast(binary, BENCH, env=env)
    check(rc == 0, "exit %d: %s" % (rc, stderr[:200]))
    out = json.loads(stdout)
    check([r["seq_len"] for r in out["results"]] == [9], "arguments lost: %s" % out["results"])
    check(out["machine"]["threads"] == 2, "--threads lost: %s" % out["machine"])
    return out["machine"]["omp_wait_policy"], out["machine"]["gomp_spincount"]


@harness.test
def unset_runs_a_short_spin(binary):
    got = recorded_policy(binary)
    check(got == (None, "10000"), "recorded (OMP_WAIT_POLICY, GOMP_SPINCOUNT) = %r" % (got,))


@harness.test
def user_policy_is_kept(binary):
    got = recorded_policy(binary, OMP_WAIT_POLICY="active")
    check(got == ("active", None), "recorded (OMP_WAIT_POLICY, GOMP_SPINCOUNT) = %r" % (got,))


@harness.test
def user_spin_count_is_kept(binary):
    got = recorded_policy(binary, GOMP_SPINCOUNT="1000")
    check(got == (None, "1000"), "recorded (OMP_WAIT_POLICY, GOMP_SPINCOUNT) = %r" % (got,))


if __name__ == "__main__":
    sys.exit(harness.main())

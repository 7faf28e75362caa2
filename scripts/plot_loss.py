#!/usr/bin/env python3
"""Plot a lorafast train_log.csv (finetune or pretrain) as a loss-curve PNG.

    python3 scripts/plot_loss.py OUT/train_log.csv OUT/loss_curve.png [--title TEXT]

Training loss per update (thin) with its moving average, and the validation loss
where it was measured. Needs matplotlib (Debian: python3-matplotlib); without it,
prints one line on stderr and exits with status 3 (`lorafast finetune` then notes
that it skipped the plot).
"""

import argparse
import csv
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("png")
    parser.add_argument("--title", default="lorafast training loss")
    args = parser.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_loss.py: matplotlib is not installed (apt-get install python3-matplotlib)", file=sys.stderr)
        return 3
    with open(args.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        print("plot_loss.py: %s has no rows" % args.csv, file=sys.stderr)
        return 3
    steps = [int(r["step"]) for r in rows]
    loss = [float(r["loss"]) for r in rows]
    window = max(1, len(loss) // 20)
    smooth = [sum(loss[max(0, i - window + 1):i + 1]) / (i + 1 - max(0, i - window + 1)) for i in range(len(loss))]
    val = [(int(r["step"]), float(r["val_loss"])) for r in rows if r.get("val_loss")]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    ax.plot(steps, loss, color="tab:blue", alpha=0.3, linewidth=0.8, label="train (per update)")
    ax.plot(steps, smooth, color="tab:blue", linewidth=1.8, label="train (moving average of %d)" % window)
    if val:
        ax.plot([s for s, _ in val], [v for _, v in val], "o-", color="tab:orange", label="validation")
    ax.set_xlabel("update")
    ax.set_ylabel("cross-entropy (nats per byte)")
    ax.set_title(args.title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Plots a soak run (tests/soak.rs): RSS, open descriptors, cursor pins and ops/s over
time, one PNG each, with the faults marked (elections dashed, kills red, restarts green).

usage: plot.py RUN_DIR OUT_DIR
  RUN_DIR holds samples.csv and events.csv (target/soak after a run).
Needs matplotlib: tests/peers/install.sh puts it in $PEERS/plot-venv.
"""
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

run_dir, out_dir = sys.argv[1], sys.argv[2]
os.makedirs(out_dir, exist_ok=True)

with open(os.path.join(run_dir, "samples.csv")) as f:
    rows = list(csv.DictReader(f))
with open(os.path.join(run_dir, "events.csv")) as f:
    events = list(csv.DictReader(f))
with open(os.path.join(run_dir, "abandoned.csv")) as f:
    abandoned = sorted(float(r["t_s"]) for r in csv.DictReader(f))
# The proxy's pin idle bound (src/pins.rs CURSOR_PIN_TTL, 15 min) plus its 30 s sweep tick.
PIN_BOUND_S = 15 * 60 + 30

t = [float(r["t_s"]) / 60 for r in rows]
STYLE = {"election": ("tab:blue", "--"), "kill": ("tab:red", "-"), "restart": ("tab:green", ":")}

PLOTS = [
    ("rss.png", "proxy RSS (MiB)", lambda r: float(r["rss_kib"]) / 1024),
    ("fds.png", "proxy open file descriptors", lambda r: float(r["fds"])),
    ("pins.png", "pinned cursors", lambda r: float(r["pinned_cursors"])),
    ("ops.png", "requests per second (proxy)", lambda r: float(r["ops_per_s"])),
]

for name, label, value in PLOTS:
    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=100)
    ax.plot(t, [value(r) for r in rows], lw=1, color="black", label=label)
    if name == "pins.png":
        ts = [float(r["t_s"]) for r in rows]
        within = [sum(1 for a in abandoned if x - PIN_BOUND_S < a <= x) for x in ts]
        ax.plot(t, within, lw=1, color="tab:orange",
                label="abandoned cursors last used within the pin bound")
    seen = set()
    for e in events:
        color, ls = STYLE.get(e["kind"], ("grey", "-"))
        ax.axvline(float(e["t_s"]) / 60, color=color, ls=ls, lw=0.9, alpha=0.8,
                   label=e["kind"] if e["kind"] not in seen else None)
        seen.add(e["kind"])
    ax.set_xlabel("minutes")
    ax.set_ylabel(label)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, name))
    plt.close(fig)
    print(os.path.join(out_dir, name))

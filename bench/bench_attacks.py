"""What each attack of issue 18 reaches, and how fast it poisons (benchmark of issue 18).

Two parts, each on its own or both (``--part``):

- ``timing``: each attack at its defaults stamps 50,000 random 32x32 images in train mode (and
  its covers, where it has them), best of three runs timed with ``time.perf_counter`` in this
  process (slices run on both cores: ``patterns.in_threads``); goal <= 2 s each.
  Label-consistent's PGD is timed apart, per 1,000 images on an untrained ``gtsrb_cnn`` proxy.
- ``asr``: for each attack on ``synthetic_signs`` and ``digits`` with ``source: all`` (dirty-label
  attacks at 10 % of the whole training set, SIG and label-consistent at 10 % of the target class,
  the adaptive attacks at their default rates and at 10 %), ``--seeds`` seeds each, the undefended
  trial's clean accuracy and ASR, their means and 95 % t-intervals, and the clean-accuracy drop
  against the same seed's 0 % model; beside BackdoorBench's GTSRB figures at the closest ratio
  (``shared/reference/backdoorbench_gtsrb.csv``, PreAct-ResNet18, no defense). Trials run in process
  through the artifact store (a 0 % model and a proxy are trained once per seed).

Run: ``python bench/bench_attacks.py [--part timing|asr|both] [--seeds 3] [--epochs 8] [--datasets digits ...]
[--attacks blend ...]``.
"""

from __future__ import annotations

import argparse
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPOSITORY = Path(__file__).resolve().parents[1]
REFERENCE = REPOSITORY.parent / "shared" / "reference" / "backdoorbench_gtsrb.csv"

ATTACKS = ("yellow_square", "blend", "sig", "wanet", "adaptive_blend", "adaptive_patch", "label_consistent")
BACKDOORBENCH_NAMES = {"yellow_square": "badnet", "blend": "blended", "sig": "sig", "wanet": "wanet",
                       "label_consistent": "lc"}
DATASETS = {
    # Ten GTSRB-like classes at 200 training images each: the all-to-one setting at laptop scale.
    "synthetic_signs": ("{name: synthetic_signs, per_class: 200, test_per_class: 30, classes: [speed_limit_20, "
                        "speed_limit_30, speed_limit_50, speed_limit_60, speed_limit_70, speed_limit_80, stop, yield, "
                        "no_entry, priority_road]}"),
    "digits": "{name: digits}",
}


def time_poisoning(n: int = 50_000, size: int = 32, repeats: int = 3) -> pd.DataFrame:
    """Seconds to stamp ``n`` random uint8 images (size x size x 3) per attack at its defaults: the
    best of ``repeats`` runs (as ``timeit`` reports; this VM's memory speed varies by half between
    runs) and their median."""
    from tasks.registry import registry

    x = np.random.default_rng(0).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    y = np.zeros(n, dtype=np.int64)
    rows = []
    for name in ATTACKS:
        method = registry().attacks[name]
        params = method.Params()
        modes = ["test"] if name == "label_consistent" else ["train"]
        if method.adds_covers:
            modes.append("cover")
        for mode in modes:
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                method.stamp(params, x, mode=mode, rng=np.random.default_rng(0), seed=0, y=y)
                seconds.append(time.perf_counter() - start)
            rows.append({"attack": name, "mode": mode + (" (trigger only)" if name == "label_consistent" else ""),
                         "images": n, "seconds": min(seconds), "median_s": float(np.median(seconds))})
    rows.append(_time_pgd(x[:1000], y[:1000]))
    return pd.DataFrame(rows)


def _time_pgd(x: np.ndarray, y: np.ndarray) -> dict:
    from tasks.attacks.label_consistent import LabelConsistentParams, pgd
    from tasks.models import build_model

    model = build_model("gtsrb_cnn", x.shape[1:], 10)
    params = LabelConsistentParams()
    start = time.perf_counter()
    pgd(model, x, y, params.eps, params.steps)
    return {"attack": "label_consistent", "mode": f"PGD ({params.steps} steps, gtsrb_cnn proxy)", "images": len(x),
            "seconds": time.perf_counter() - start}


def space_text(dataset: str, seeds: int, epochs: int, attacks: tuple[str, ...] = ATTACKS) -> str:
    """The benchmark's search space on ``dataset``: the 0 % model and one block per poisoning rule,
    of the ``attacks`` named."""
    seed_list = list(range(seeds))
    blocks = [("yellow_square", "blend", "wanet"), ("sig", "label_consistent"), ("adaptive_blend", "adaptive_patch")]
    rates = ["[10]", "[10]", "[default, 10]"]
    lines = [f"  - attack: {{trigger: [{', '.join(k for k in kept)}], poison_pct: {rate}}}"
             for block, rate in zip(blocks, rates) if (kept := [name for name in block if name in attacks])]
    text = textwrap.dedent(f"""
        name: bench_attacks_{dataset}
        dataset: {DATASETS[dataset]}
        model: gtsrb_cnn
        train: {{epochs: {epochs}, batch_size: 32}}
        seeds: {seed_list}
        attack: {{source: all, target: 1}}
        blocks:
          - attack: {{trigger: [yellow_square], poison_pct: [0]}}
    """)
    return text + "\n".join(lines) + "\n"


def run_asr(seeds: int, epochs: int, datasets: tuple[str, ...] = tuple(DATASETS),
            attacks: tuple[str, ...] = ATTACKS) -> pd.DataFrame:
    """Clean accuracy and ASR of every undefended trial of the benchmark's spaces, one row per trial."""
    from orchestrator.pipeline import execute_trial
    from orchestrator.search_space import load_search_space
    from orchestrator.storage import open_storage
    from orchestrator.store import artifact_store

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-attacks-") as scratch:
        store = artifact_store(open_storage(Path(scratch) / "runs"))
        for dataset in datasets:
            space = Path(scratch) / f"{dataset}.yaml"
            space.write_text(space_text(dataset, seeds, epochs, attacks))
            _, trials = load_search_space(space)
            for number, trial in enumerate(trials, start=1):
                start = time.perf_counter()
                row = execute_trial(trial, store, space.stem)
                print(f"[{dataset} {number}/{len(trials)}] {row['trigger']} {row['poison_pct']} % seed {row['seed']}: "
                      f"clean {row['clean_acc_before']:.3f} asr {row['asr_before']:.3f} ({time.perf_counter() - start:.0f} s)",
                      flush=True)
                rows.append({"dataset": dataset, **{k: row[k] for k in (
                    "trigger", "poison_pct", "poison_base", "seed", "n_poisoned", "n_cover", "clean_acc_before",
                    "asr_before", "attack_psnr_mean", "attack_ssim_mean")}})
    return pd.DataFrame(rows)


def summarise(trials: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, attack, rate): mean and 95 % t-interval of ASR and of the clean-accuracy drop (pp)."""
    from scipy import stats

    clean = trials[trials["poison_pct"] == 0].set_index(["dataset", "seed"])["clean_acc_before"]
    attacked = trials[trials["poison_pct"] > 0].copy()
    attacked["drop_pp"] = 100 * (clean.reindex(list(zip(attacked["dataset"], attacked["seed"]))).to_numpy()
                                 - attacked["clean_acc_before"].to_numpy())
    attacked["asr_pct"] = 100 * attacked["asr_before"]

    def interval(values: pd.Series) -> str:
        values = values.dropna()
        mean = values.mean()
        if len(values) < 2:
            return f"{mean:.1f}"
        half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
        return f"{mean:.1f} [{mean - half:.1f}, {mean + half:.1f}]"

    reference = pd.read_csv(REFERENCE) if REFERENCE.exists() else pd.DataFrame()
    rows = []
    for (dataset, trigger, pct), part in attacked.groupby(["dataset", "trigger", "poison_pct"], sort=False):
        share = float(part["n_poisoned"].mean())
        row = {"dataset": dataset, "attack": trigger, "poison %": pct, "base": part["poison_base"].iloc[0],
               "poisons": round(share), "covers": round(float(part["n_cover"].mean())),
               "ASR %": interval(part["asr_pct"]), "clean drop pp": interval(part["drop_pp"]),
               "PSNR dB": f"{part['attack_psnr_mean'].mean():.1f}", "seeds": len(part)}
        name = BACKDOORBENCH_NAMES.get(trigger.split("(")[0])
        if name and not reference.empty:
            cells = reference[(reference["backbone"] == "preactresnet18") & (reference["attack_name"] == name)
                              & (reference["defense_name"] == "no defense") & (reference["test_asr"] >= 0)]
            if not cells.empty:
                best = cells.iloc[(cells["ratio"] - 0.1).abs().argsort().iloc[0]]
                row["BackdoorBench GTSRB ASR % (ratio)"] = f"{100 * best['test_asr']:.1f} ({best['ratio']:g})"
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("timing", "asr", "both"), default="both")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--datasets", nargs="+", choices=tuple(DATASETS), default=list(DATASETS))
    parser.add_argument("--attacks", nargs="+", choices=ATTACKS, default=list(ATTACKS),
                        help="the attacks of the asr part (its 0 %% model is always trained)")
    args = parser.parse_args()
    from tasks.runtime import configure_tensorflow

    configure_tensorflow(1)
    pd.set_option("display.width", 200, "display.max_columns", 20)
    if args.part in ("timing", "both"):
        timing = time_poisoning()
        print("\nPoisoning time (goal: <= 2 s per 50,000 images; PGD reported apart):")
        print(timing.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if args.part in ("asr", "both"):
        trials = run_asr(args.seeds, args.epochs, tuple(args.datasets), tuple(args.attacks))
        print("\nASR and clean-accuracy drop, undefended, source: all (mean [95 % CI] over seeds):")
        print(summarise(trials).to_string(index=False))


if __name__ == "__main__":
    main()

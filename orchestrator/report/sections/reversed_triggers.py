"""The figure of the detection section that shows what a trigger-reversing inspection found: per
backdoored model, a triggered test input (the attack's real trigger) beside the reversed trigger of
the attack's target class and of each other class it flagged.

Drawn from the artifact store, not the rows: the rows name the ``inspection`` and ``poison``
artifacts a step used (``<label>_key``). Any model inspection whose stored arrays include ``masks``
(k, h, w) in [0, 1] and ``patterns`` (k, h, w, c) on 0-255 gets it (Neural Cleanse does); a report
written without access to the store, or whose artifacts are gone, has the table and no figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from orchestrator.report import figures
from orchestrator.report.methods import MODEL_INSPECTION, kind_sql
from orchestrator.report.model import Figure, ReportContext
from orchestrator.report.sections.benign import wrap_label

MAX_MODELS = 6  # rows of the figure: one model per attack setting and configuration, the first seed's
MAX_OTHER_FLAGGED = 2  # flagged classes besides the target shown per model
NEEDED = {"inspection_key", "target_flagged", "target_rank", "flagged_classes", "trial_id"}


def models_to_draw(context: ReportContext) -> pd.DataFrame:
    """One backdoored model per (dataset, model, attack setting, configuration) with an inspection:
    its lowest seed; at most :data:`MAX_MODELS` rows, each with the ``poison_key`` and ``inspection_key``."""
    columns = context.columns("stages")
    if not NEEDED <= columns or "poison_key" not in context.columns("results"):
        return pd.DataFrame()
    order = "s.dataset, s.model, s.trigger, s.poison_pct, s.pipeline, s.position, s.seed"
    frame = context.frame(
        f"SELECT s.dataset, s.model, s.trigger, s.poison_pct, s.seed, s.target, s.pipeline, s.position, s.defense, "
        f"s.inspection_key, s.target_flagged, s.target_rank, s.flagged_classes, s.asr_before, r.poison_key "
        f"FROM stages s JOIN results r USING (trial_id) WHERE {kind_sql(columns)} = '{MODEL_INSPECTION}' "
        f"AND s.poison_pct > 0 AND s.inspection_key IS NOT NULL ORDER BY {order}")
    if frame.empty:
        return frame
    # Repair variants share one inspection: drawn once.
    frame = frame.drop_duplicates("inspection_key")
    return frame.drop_duplicates(["dataset", "model", "trigger", "poison_pct", "pipeline", "position"]).head(MAX_MODELS)


def reversed_trigger_figure(context: ReportContext) -> Figure | None:
    """The figure, or None when no drawable inspection is stored (or the report cannot read the store)."""
    if context.read_artifact is None:
        return None
    from tasks.defenses.kinds import INSPECTION
    from tasks.poison import POISON

    panels, drawn = [], set()
    for model in models_to_draw(context).itertuples(index=False):
        inspection = context.read_artifact(INSPECTION, model.inspection_key)
        poisoned = context.read_artifact(POISON, model.poison_key)
        arrays = inspection.inspected.arrays if inspection is not None else {}
        if poisoned is None or not {"masks", "patterns"} <= set(arrays) or not len(poisoned.x_test_triggered):
            continue
        # Configurations that differ only after the inspection (Neural Cleanse's repair) found the same triggers.
        found = hash((arrays["masks"].tobytes(), arrays["patterns"].tobytes()))
        if found in drawn:
            continue
        drawn.add(found)
        target = int(inspection.target)
        flagged = [int(c) for c in np.flatnonzero(inspection.inspected.flagged) if c != target][:MAX_OTHER_FLAGGED]
        scores = inspection.inspected.scores
        verdict = "flagged" if inspection.inspected.flagged[target] else "not flagged"
        mask = np.round(255 * np.asarray(arrays["masks"][target])).astype(np.uint8)[..., None]
        images = [("real trigger (a test input)", poisoned.x_test_triggered[0]),
                  (f"target {target}: mask", mask),
                  (f"× pattern: score {scores[target]:.2f},\n{verdict}, ranked {int(model.target_rank)}",
                   stamp_image(arrays["masks"][target], arrays["patterns"][target]))]
        images += [(f"class {c}: score {scores[c]:.2f},\nflagged", stamp_image(arrays["masks"][c], arrays["patterns"][c]))
                   for c in flagged]
        title = (f"{model.dataset} / {model.model}, {model.trigger} {model.poison_pct:g} %, seed {model.seed}, "
                 f"{model.pipeline}")
        panels.append((title, images))
    if not panels:
        return None
    return _draw(panels)


def stamp_image(mask: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    """What the reversed trigger puts on an image, on black: ``mask * pattern`` as uint8 (h, w, c)."""
    from tasks.defenses.neural_cleanse import stamp_reversed

    return stamp_reversed(np.zeros((1, *np.shape(pattern)), np.uint8), np.asarray(mask), np.asarray(pattern))[0]


def _draw(panels: list[tuple[str, list[tuple[str, np.ndarray]]]]) -> Figure:
    columns = max(len(images) for _, images in panels)
    with figures.panels(len(panels) * columns, max_columns=columns, panel_size=(2.2, 2.5),
                        name="reversed_triggers") as (figure, axes):
        for row, (title, images) in enumerate(panels):
            for column in range(columns):
                axis = axes[row * columns + column]
                axis.set_xticks([]), axis.set_yticks([]), axis.grid(False)
                if column >= len(images):
                    axis.set_visible(False)
                    continue
                caption, image = images[column]
                axis.imshow(image.squeeze() if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255,
                            interpolation="nearest")
                axis.set_title(caption, fontsize=8)
                if column == 0:
                    axis.set_xlabel(wrap_label(title, 38, after=" "), fontsize=7.5)
        svg = figures.to_svg(figure)
    return Figure("reversed_triggers", "Reversed triggers beside the real one", svg,
                  "Per backdoored model (the first seed of each attack setting and configuration): left, a test "
                  "input carrying the attack's real trigger; then the mask the inspection reversed for the attack's "
                  "target class (white = 1) and that mask × its pattern on black, and the same for up to two other "
                  "classes it flagged. "
                  "A reversed trigger that looks like the real one, small and in its place, found the backdoor; "
                  "score: the class's suspicion (Neural Cleanse: its anomaly index).")

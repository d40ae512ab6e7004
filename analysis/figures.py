"""The figures people judge a MURA model by, drawn the same way in the notebook and in the static report.

Built on matplotlib's object API (no pyplot state), so they render headless and in Jupyter alike.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis.curves import SliceCurves
from mura.calibration import CalibrationBin

OVERALL = "overall"


def _short(group: str) -> str:
    return group.removeprefix("XR_").lower()


def _values(rows: Sequence[dict], key: str) -> np.ndarray:
    return np.array([np.nan if row.get(key) is None else row[key] for row in rows], dtype=float)


def _interval_bars(axes: Axes, x: np.ndarray, rows: Sequence[dict], figure: str) -> None:
    """Each row's 95 % interval of `figure` as an error bar, drawn from its bounds (a percentile interval need not
    be centred on the point); nothing where a row has no interval."""
    low, high = _values(rows, f"{figure}_low"), _values(rows, f"{figure}_high")
    if np.isnan(low).all():
        return
    axes.errorbar(x, (low + high) / 2, yerr=(high - low) / 2, fmt="none", ecolor="black", capsize=3, label="95 % CI")


def study_metrics_chart(rows: Sequence[dict]) -> Figure:
    """Study-level kappa per body part, with its 95 % interval, beside the MURA paper's model and best radiologist;
    and AUROC with its interval."""
    groups = [row["group"] for row in rows]
    x = np.arange(len(groups))
    figure = Figure(figsize=(11, 4), layout="constrained")
    kappa, auroc = figure.subplots(1, 2, width_ratios=[2, 1])
    series = [("this model", "kappa", "tab:blue"), ("MURA paper", "paper_kappa", "tab:gray")]
    series.append(("best radiologist", "radiologist_kappa", "tab:orange"))
    for offset, (label, key, color) in zip((-0.27, 0.0, 0.27), series, strict=True):
        kappa.bar(x + offset, _values(rows, key), width=0.27, label=label, color=color)
    _interval_bars(kappa, x - 0.27, rows, "kappa")
    kappa.set_xticks(x, [_short(g) for g in groups], rotation=30)
    kappa.set_ylabel("Cohen's kappa (study level)")
    kappa.axhline(0, color="black", linewidth=0.8)
    kappa.set_ylim(top=1.2)  # room above the bars for the legend
    kappa.legend(loc="upper left", ncols=4, fontsize="small")
    kappa.set_title("Study-level kappa")
    auroc.bar(x, _values(rows, "auroc"), color="tab:blue")
    _interval_bars(auroc, x, rows, "auroc")
    auroc.axhline(0.5, color="gray", linestyle="--", linewidth=0.8, label="chance")
    auroc.set_xticks(x, [_short(g) for g in groups], rotation=30)
    auroc.set_ylim(0, 1.2)
    auroc.set_yticks(np.linspace(0, 1, 6))
    auroc.set_title("Study-level AUROC")
    auroc.legend(loc="upper left", ncols=2, fontsize="small")
    return figure


def roc_figure(curves: Sequence[SliceCurves]) -> Figure:
    figure = Figure(figsize=(6, 5.5), layout="constrained")
    axes = figure.subplots()
    for curve in curves:
        overall = curve.group == OVERALL
        axes.plot(
            curve.fpr,
            curve.tpr,
            label=_short(curve.group),
            linewidth=2.5 if overall else 1.2,
            color="black" if overall else None,
            zorder=3 if overall else 2,
        )
    axes.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=0.8)
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    axes.set_title("Image-level ROC per body part (TFMA)")
    axes.legend(fontsize="small", loc="lower right")
    return figure


def reliability_figure(curves: Sequence[SliceCurves]) -> Figure:
    """Predicted probability against the observed fraction of abnormal images, with how many images each bin has."""
    figure = Figure(figsize=(6, 6.5), layout="constrained")
    diagram, histogram = figure.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    for curve in curves:
        overall = curve.group == OVERALL
        filled = [b for b in curve.calibration if b.images]
        diagram.plot(
            [b.mean_prediction for b in filled],
            [b.fraction_abnormal for b in filled],
            marker="o",
            markersize=5 if overall else 3,
            linewidth=2.5 if overall else 0.8,
            alpha=1.0 if overall else 0.5,
            color="black" if overall else None,
            label=_short(curve.group),
        )
        if overall:
            width = curve.calibration[0].upper - curve.calibration[0].lower
            histogram.bar(
                [b.lower for b in curve.calibration],
                [b.images for b in curve.calibration],
                width=width,
                align="edge",
                color="tab:blue",
                edgecolor="white",
            )
    diagram.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=0.8, label="perfect")
    diagram.set_ylabel("fraction abnormal")
    diagram.set_ylim(-0.02, 1.02)
    diagram.set_title("Reliability (calibration), image level")
    diagram.legend(fontsize="x-small", ncol=2)
    histogram.set_xlabel("predicted probability of abnormal")
    histogram.set_ylabel("images")
    histogram.set_xlim(0, 1)
    return figure


def confusion_figure(curves: Sequence[SliceCurves], threshold: float) -> Figure:
    columns = 4
    rows = -(-len(curves) // columns)
    figure = Figure(figsize=(2.6 * columns, 2.5 * rows), layout="constrained")
    grid = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for axes, curve in zip(grid, curves, strict=False):
        c = curve.counts
        matrix = np.array([[c.tn, c.fp], [c.fn, c.tp]])
        axes.imshow(matrix, cmap="Blues", vmin=0)
        for (i, j), value in np.ndenumerate(matrix):
            color = "white" if value > matrix.max() / 2 else "black"
            axes.text(j, i, f"{value:.0f}", ha="center", va="center", color=color, fontsize=11)
        axes.set_xticks([0, 1], ["normal", "abnormal"], fontsize="small")
        axes.set_yticks([0, 1], ["normal", "abnormal"], fontsize="small")
        axes.set_title(_short(curve.group), fontsize="medium")
        axes.set_xlabel("predicted", fontsize="small")
        axes.set_ylabel("true", fontsize="small")
    for axes in grid[len(curves) :]:
        axes.set_axis_off()
    figure.suptitle(f"Image-level confusion matrices at the model's global threshold, {threshold:.3f} (TFMA)")
    return figure


def calibration_figure(splits: dict[str, tuple[Sequence[CalibrationBin], Sequence[CalibrationBin]]]) -> Figure:
    """A reliability diagram per split (name -> bins before, bins after the model's calibration)."""
    figure = Figure(figsize=(5.2 * len(splits), 5), layout="constrained")
    for axes, (split, (before, after)) in zip(
        np.atleast_1d(figure.subplots(1, len(splits))), splits.items(), strict=True
    ):
        for bins, label, color in ((before, "before", "tab:orange"), (after, "after", "tab:blue")):
            filled = [b for b in bins if b.images]
            axes.plot(
                [b.mean_prediction for b in filled],
                [b.fraction_abnormal for b in filled],
                marker="o",
                color=color,
                label=f"{label} calibration",
            )
        axes.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=0.8, label="perfect")
        axes.set_xlim(0, 1)
        axes.set_ylim(-0.02, 1.02)
        axes.set_xlabel("predicted probability of abnormal")
        axes.set_ylabel("fraction abnormal")
        axes.set_title(f"Reliability, {split} split (images)")
        axes.legend(fontsize="small", loc="upper left")
    return figure


@dataclass(frozen=True)
class Case:
    """One misread image: what it is, how sure the model was, and where it looked."""

    title: str
    image: np.ndarray  # [h, w] grayscale, as stored
    model_input: np.ndarray  # [size, size], what the model saw
    heatmap: np.ndarray  # [size, size] in [0, 1], Grad-CAM


def cases_figure(cases: Sequence[Case], title: str) -> Figure:
    """Each case as the image and, beside it, the model's input under its Grad-CAM heatmap."""
    figure = Figure(figsize=(5.0, 2.6 * max(len(cases), 1)), layout="constrained")
    figure.suptitle(title)
    if not cases:
        axes = figure.subplots()
        axes.text(0.5, 0.5, "none", ha="center", va="center")
        axes.set_axis_off()
        return figure
    grid = np.atleast_2d(figure.subplots(len(cases), 2))
    for (image_axes, cam_axes), case in zip(grid, cases, strict=True):
        image_axes.imshow(case.image, cmap="gray")
        image_axes.set_title(case.title, fontsize="small", loc="left")
        cam_axes.imshow(case.model_input, cmap="gray")
        cam_axes.imshow(case.heatmap, cmap="jet", alpha=0.4, vmin=0, vmax=1)
        cam_axes.set_title("Grad-CAM", fontsize="small")
        for axes in (image_axes, cam_axes):
            axes.set_axis_off()
    return figure


def split_shares_figure(counts: dict[str, dict[str, float]], title: str) -> Figure:
    """Each value's share of its split, splits side by side: a shifted distribution is seen at a glance."""
    values = sorted({value for per_split in counts.values() for value in per_split})
    x = np.arange(len(values))
    width = 0.8 / max(len(counts), 1)
    figure = Figure(figsize=(max(5.0, 1.1 * len(values) + 2), 3.5), layout="constrained")
    axes = figure.subplots()
    for n, (split, per_split) in enumerate(counts.items()):
        total = sum(per_split.values()) or 1.0
        axes.bar(
            x + (n - (len(counts) - 1) / 2) * width, [per_split.get(v, 0) / total for v in values], width, label=split
        )
    axes.set_xticks(x, [_short(v) for v in values], rotation=30 if len(values) > 3 else 0)
    axes.set_ylabel("share of the split")
    axes.set_title(title)
    axes.legend(fontsize="small")
    return figure


def drift_figure(
    training: pd.DataFrame, served: pd.DataFrame, measured: Mapping[str, tuple[float, float]], drifted: Collection[str]
) -> Figure:
    """Each drift feature's distribution on the training side beside the served one, on shared bins (categories:
    their shares side by side), titled with its distance and threshold (`measured`); a drifted one in red."""
    names = [name for name in training.columns if name in served.columns]
    columns = 3
    rows = -(-len(names) // columns)
    figure = Figure(figsize=(4.2 * columns, 3.0 * rows), layout="constrained")
    for axes, name in zip(figure.subplots(rows, columns, squeeze=False).flat, names, strict=False):
        train, serve = _flat(training[name]), _flat(served[name])
        if train.dtype.kind in "fi" and serve.dtype.kind in "fi":
            bins = np.histogram_bin_edges(np.concatenate([train, serve]), bins=20)
            axes.hist([train, serve], bins=bins, density=True, label=["training", "served"], color=["C0", "C1"])
        else:
            categories = sorted(set(train) | set(serve))
            x = np.arange(len(categories))
            for offset, values, label, colour in ((-0.2, train, "training", "C0"), (0.2, serve, "served", "C1")):
                shares = [np.mean(values == category) if len(values) else 0.0 for category in categories]
                axes.bar(x + offset, shares, width=0.4, label=label, color=colour)
            axes.set_xticks(x, [_short(str(category)) for category in categories], rotation=45, fontsize=7)
        flagged = name in drifted
        title = f"{name}{' DRIFTED' if flagged else ''}"
        if name in measured:
            value, threshold = measured[name]
            title = f"{name}: {value:.3f} {'>' if flagged else '<='} {threshold:g}{' DRIFTED' if flagged else ''}"
        axes.set_title(title, color="red" if flagged else "black", fontsize=10)
        axes.tick_params(labelsize=7)
    for axes in list(figure.axes)[len(names) :]:
        axes.set_visible(False)
    figure.axes[0].legend(fontsize=8)
    figure.suptitle("What the model was trained on and what it was asked about")
    return figure


def _flat(column: pd.Series) -> np.ndarray:
    """A column's values, list cells (the sampled intensities) spread out, missing ones dropped."""
    values = column.dropna()
    if len(values) and isinstance(values.iloc[0], list):
        return np.concatenate([np.asarray(value, dtype=float) for value in values])
    return values.to_numpy()

"""The per-body-part report and notebooks, on the shared pipeline run; the curve arithmetic and Grad-CAM by hand;
which pipeline run a report reads when there are several."""

import csv
import dataclasses
import os
import re
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.container import BarContainer, ErrorbarContainer
from ml_metadata.proto import metadata_store_pb2
from nbclient import NotebookClient
from PIL import Image, ImageOps
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, roc_curve

from analysis.curves import Counts, roc_points
from analysis.figures import study_metrics_chart
from analysis.metadata import open_store, pipeline_runs
from analysis.report import Analysis, analyse, render_html
from analysis.run_outputs import find_run_outputs
from analysis.summaries import PipelineSummary, read_ingestion_summary
from cli.main import main
from cli.runs import _print_results
from components.modules.export import model_facts
from components.study_evaluator import IMAGE_PREDICTIONS_CSV
from components.tfma_gate import OVERALL
from mura.calibration import calibrate, rebin_calibration
from mura.config import TrainConfig, metadata_location
from mura.layout import BODY_PARTS
from mura.misreads import MISREAD_KINDS, misread
from mura.model_card import CARD_DIR, CARD_HTML
from mura.operating_points import choose_operating_points
from mura.study_gate import decide
from mura.study_metrics import ImagePrediction, study_table
from tests.conftest import TINY_TRAIN, tiny_settings
from tests.test_study_metrics import drawn_studies

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_roc_points_run_from_the_origin_to_one_one() -> None:
    # 2 positives, 2 negatives; at 0.5: one positive caught, no false positive; at 0.1: everything positive.
    fpr, tpr = roc_points([Counts(tp=1, fp=0, tn=2, fn=1), Counts(tp=2, fp=2, tn=0, fn=0)])
    assert (fpr, tpr) == ([0.0, 0.0, 1.0], [0.0, 0.5, 1.0])


def test_rebinning_sums_images_labels_and_predictions_per_bin() -> None:
    buckets = [(float("-inf"), 0, 0, 0), (0.05, 2, 1, 0.1), (0.09, 2, 1, 0.18), (0.95, 4, 4, 3.8), (1.0, 1, 1, 1.0)]
    bins = rebin_calibration(buckets, bins=10)
    assert [b.images for b in bins] == [4, 0, 0, 0, 0, 0, 0, 0, 0, 5]
    assert bins[0].mean_prediction == pytest.approx(0.07) and bins[0].fraction_abnormal == 0.5
    assert bins[9].mean_prediction == pytest.approx(0.96) and bins[9].fraction_abnormal == 1.0
    assert bins[1].mean_prediction is None


def test_misreads_are_the_most_confident_mistakes_of_each_body_part() -> None:
    images = [
        ImagePrediction("s1", "XR_HAND", 1, 0.1, source_path="a", threshold=0.5),
        ImagePrediction("s1", "XR_HAND", 1, 0.4, source_path="b", threshold=0.5),
        ImagePrediction("s2", "XR_HAND", 1, 0.9, source_path="c", threshold=0.5),  # right: not a misread
        ImagePrediction("s3", "XR_HAND", 0, 0.6, source_path="d", threshold=0.5),
        ImagePrediction("s3", "XR_HAND", 0, 0.99, source_path="e", threshold=0.5),
        ImagePrediction("s4", "XR_WRIST", 0, 0.2, source_path="f", threshold=0.15),  # above the wrist's threshold
        ImagePrediction("s5", "XR_WRIST", 1, 0.3, source_path="g", threshold=0.15),  # right at the wrist's
    ]
    worst = misread(images, per_kind=1)
    negatives, positives = MISREAD_KINDS
    assert [i.source_path for i in worst[("XR_HAND", negatives)]] == ["a"]
    assert [i.source_path for i in worst[("XR_HAND", positives)]] == ["e"]
    assert worst[("XR_WRIST", negatives)] == []
    assert [i.source_path for i in worst[("XR_WRIST", positives)]] == ["f"]


def test_the_page_escapes_everything_read_from_the_run() -> None:
    hostile = '<script>alert("x")</script>'
    study_row = {"group": hostile, "studies": 3, "kappa": 0.25, "auroc": None}
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 2.0, 50)
    labels = (rng.random(50) < 0.5).astype(int)
    fitted = calibrate("temperature", logits, labels, [f"s{i}" for i in range(50)])
    facts = model_facts(fitted, choose_operating_points([], ["XR_HAND"], "fixed", 0.5))
    facts["calibration"]["reason"] = hostile
    facts["operating_points"]["parts"][0]["fell_back"] = hostile
    test_calibration = {"images": 50, "before": facts["calibration"]["before"], "after": facts["calibration"]["after"]}
    analysis = Analysis(
        study={"rows": [study_row], "kappa_floor": 0.0, "blessed": False, "calibration": test_calibration},
        image_rows=[{"group": hostile, "examples": 7, "auc": 0.75, "kappa": None, "auc_change": None}],
        curves=[],
        tfma_failures=[hostile],
        images=[],
        pushed_to="",
        model_dir=hostile,
        examples_dir="",
        facts=facts,
        run=hostile,
    )
    figures = {stem: f"{stem}.png" for stem in ("study_metrics", "roc", "reliability", "confusion", "calibration")}
    page = render_html(analysis, {**figures, f"misread_{hostile}": f"{hostile}.png"})
    assert "<script" not in page
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
    # verdict, both tables, the model, the run, the misread figure's src and alt, the calibration's reason and a
    # body part's fall-back
    assert page.count(escaped) + page.count(escaped.replace("&#34;", "&quot;")) == 9
    assert "0.250" in page and "0.750" in page  # numbers as before
    assert f"T = {fitted.chosen.temperature:.4g}" in page and f"{fitted.after.ece:.3f}" in page
    assert re.search(r"<td[^>]*>\s*-\s*</td>", page)  # missing values as "-"
    assert all(f'src="{name}"' in page for name in figures.values())


def gated_study_report(on_lower_bound: bool) -> dict:
    """study_metrics.json as the StudyEvaluator writes it, for studies of a known population, the floor between the
    overall kappa's lower bound and its point (so the two figures give different verdicts)."""
    table = study_table(drawn_studies(240, seed=14), bootstrap_samples=1000)
    floor = round((table[-1].kappa_low + table[-1].kappa) / 2, 3)
    decision = decide(table, floor, on_lower_bound)
    rows = [dataclasses.asdict(row) for row in table]
    measured = plain_facts()["calibration"]
    calibration = {"images": 40, "before": measured["before"], "after": measured["after"]}
    report = {"thresholds": {"global": 0.5}, **decision.to_report(), "bootstrap_samples": 1000, "rows": rows}
    return {**report, "calibration": calibration}


def plain_facts() -> dict:
    """model_facts.json of a model with no calibration fitted and one fixed threshold, 0.5."""
    logits = np.random.default_rng(0).normal(0.0, 2.0, 40)
    fitted = calibrate("none", logits, (logits > 0).astype(int), [f"s{i}" for i in range(40)])
    return model_facts(fitted, choose_operating_points([], ["XR_HAND"], "fixed", 0.5))


def test_the_page_shows_the_intervals_and_which_figure_the_gate_held() -> None:
    study = gated_study_report(on_lower_bound=True)
    analysis = Analysis(study, [], [], [], [], pushed_to="", model_dir="m", examples_dir="", facts=plain_facts())
    figures = {stem: f"{stem}.png" for stem in ("study_metrics", "roc", "reliability", "confusion")}
    page = render_html(analysis, figures)
    overall = study["rows"][-1]
    assert f"[{overall['kappa_low']:.3f}, {overall['kappa_high']:.3f}]" in page
    assert f"[{overall['auroc_low']:.3f}, {overall['auroc_high']:.3f}]" in page
    assert "over 1000 bootstrap resamples" in page
    assert f"held the overall kappa's lower bound of its 95 % interval, {overall['kappa_low']:.3f}" in page
    assert f"against the floor {study['kappa_floor']}: refused" in page
    assert (
        f"study level: lower bound of the 95 % interval of the overall study kappa {overall['kappa_low']:.3f} is not "
        f"above the floor {study['kappa_floor']}" in page
    )
    on_point = render_html(dataclasses.replace(analysis, study=gated_study_report(on_lower_bound=False)), figures)
    assert f"held the overall kappa's point estimate, {overall['kappa']:.3f}" in on_point
    assert f"against the floor {study['kappa_floor']}: passed" in on_point


def error_bars(axes) -> tuple[list[float], list[float], list[float]]:
    """x, low and high of the error bars the axes hold."""
    (bars,) = [c for c in axes.containers if isinstance(c, ErrorbarContainer)]
    segments = bars.lines[2][0].get_segments()
    return [x for (x, _), _ in segments], [low for (_, low), _ in segments], [high for _, (_, high) in segments]


def test_the_study_chart_draws_each_interval_as_an_error_bar_beside_the_papers_kappas() -> None:
    rows = gated_study_report(on_lower_bound=False)["rows"]
    kappa, auroc = study_metrics_chart(rows).axes
    model, paper, radiologist = [c for c in kappa.containers if isinstance(c, BarContainer)]
    assert [bar.get_height() for bar in model] == [row["kappa"] for row in rows]
    assert [bar.get_height() for bar in paper] == [row["paper_kappa"] for row in rows]
    assert [bar.get_height() for bar in radiologist] == [row["radiologist_kappa"] for row in rows]
    x, low, high = error_bars(kappa)
    assert x == pytest.approx([bar.get_x() + bar.get_width() / 2 for bar in model])  # on this model's bars
    assert (low, high) == (
        pytest.approx([r["kappa_low"] for r in rows]),
        pytest.approx([r["kappa_high"] for r in rows]),
    )
    _, low, high = error_bars(auroc)
    assert (low, high) == (
        pytest.approx([r["auroc_low"] for r in rows]),
        pytest.approx([r["auroc_high"] for r in rows]),
    )
    without = [{**row, "kappa_low": None, "kappa_high": None, "auroc_low": None, "auroc_high": None} for row in rows]
    assert not [c for a in study_metrics_chart(without).axes for c in a.containers if isinstance(c, ErrorbarContainer)]


def test_the_run_summary_prints_the_intervals_and_says_the_gate_held_the_lower_bound(capsys) -> None:
    study = gated_study_report(on_lower_bound=True)
    summary = PipelineSummary(
        table=study["rows"],
        bootstrap_samples=study["bootstrap_samples"],
        kappa_floor=study["kappa_floor"],
        blessed=study["blessed"],
        gate_figure=study["gate_figure"],
        gate_kappa=study["gate_kappa"],
        image_table=[],
        tfma_failures=[],
        pushed_to="",
        metrics_dir="metrics",
        evaluation_dir="evaluation",
    )
    _print_results(summary)
    out = capsys.readouterr().out
    overall = study["rows"][-1]
    assert "kappa 95 % CI" in out and f"[{overall['kappa_low']:.3f}, {overall['kappa_high']:.3f}]" in out
    assert "95 % CI: percentile interval over 1000 bootstrap resamples of the studies." in out
    assert (
        f"  lower bound of the 95 % interval of the overall study kappa {overall['kappa_low']:.3f} is not above the "
        f"floor {study['kappa_floor']}" in out
    )


def test_gradcam_maps_cover_the_input_and_peak_at_one() -> None:
    import tensorflow as tf

    from analysis.gradcam import heatmaps
    from mura.model import build_model

    tf.keras.utils.set_random_seed(3)
    model = build_model(TrainConfig(image_size=64, base_weights="none", dense_units=8))
    pixels = np.random.default_rng(0).integers(0, 256, size=(3, 64, 64, 1), dtype=np.uint8)
    maps = heatmaps(model, pixels)
    assert maps.shape == (3, 64, 64)
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    for heatmap in maps:
        assert heatmap.max() == pytest.approx(1.0) or not heatmap.any()


@pytest.fixture(scope="module")
def pipeline_root(pipeline_run) -> str:
    run, _ = pipeline_run
    return run.pipeline_root


def test_the_study_evaluation_keeps_every_test_image_prediction(pipeline_root: str, sample_root: Path) -> None:
    outputs = find_run_outputs(metadata_location(pipeline_root))
    with open(os.path.join(outputs.study_evaluation, IMAGE_PREDICTIONS_CSV)) as handle:
        rows = list(csv.DictReader(handle))
    test_images = sorted(str(p.relative_to(sample_root)) for p in (sample_root / "MURA-v1.1" / "valid").rglob("*.png"))
    assert sorted(row["source_path"] for row in rows) == test_images
    assert all(0.0 <= float(row["probability"]) <= 1.0 and row["label"] in ("0", "1") for row in rows)


def test_the_tfma_curves_agree_with_sklearn_on_the_per_image_predictions(pipeline_root: str) -> None:
    """TFMA's plots and the StudyEvaluator's per-image probabilities describe the same model on the same images."""
    run = analyse(find_run_outputs(metadata_location(pipeline_root)))
    assert {c.group for c in run.curves} == {*BODY_PARTS, OVERALL}
    for curve in run.curves:
        members = [i for i in run.images if curve.group in (OVERALL, i.body_part)]
        labels = np.array([i.label for i in members])
        scores = np.array([i.probability for i in members])
        if len(set(labels)) == 2:  # every ROC point drawn is an operating point of the model on these images
            fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
            achievable = {(round(x, 9), round(y, 9)) for x, y in zip(fpr, tpr, strict=True)}
            assert {(round(x, 9), round(y, 9)) for x, y in zip(curve.fpr, curve.tpr, strict=True)} <= achievable
        assert curve.threshold == pytest.approx(run.threshold, abs=5e-4)  # the plot's nearest to the model's
        tn, fp, fn, tp = confusion_matrix(labels, scores > curve.threshold, labels=[0, 1]).ravel()
        assert curve.counts == Counts(tp=tp, fp=fp, tn=tn, fn=fn), curve.group
        bins = len(curve.calibration)
        assert [b.images for b in curve.calibration] == list(np.histogram(scores, bins=bins, range=(0, 1))[0])
        fraction, mean = calibration_curve(labels, scores, n_bins=bins)
        filled = [b for b in curve.calibration if b.images]
        assert [b.fraction_abnormal for b in filled] == pytest.approx(fraction, abs=1e-6), curve.group
        assert [b.mean_prediction for b in filled] == pytest.approx(mean, abs=1e-5), curve.group


def _invert_one_train_image(data_root: Path) -> None:
    image = sorted((data_root / "MURA-v1.1" / "train").rglob("*.png"))[0]
    with Image.open(image) as original:
        inverted = ImageOps.invert(original.convert("L"))
    inverted.save(image)


def test_the_report_reads_one_pipeline_run_cache_hits_included(pipeline_run, sample_root: Path, tmp_path) -> None:
    """Run 2 repeats run 1 (TFX's cache gives it run 1's examples and model; the Evaluator runs again); run 3 ingests
    changed data and fails in the Trainer. The report reads run 2 whole: not run 3's examples beside run 2's
    evaluation and run 1's model."""
    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

    from pipeline.definition import create_pipeline

    run, summary = pipeline_run
    first = find_run_outputs(run.metadata)
    root = tmp_path / "pipeline"
    shutil.copytree(run.pipeline_root, root)
    rerun = dataclasses.replace(run, pipeline_root=str(root))
    BeamDagRunner().run(create_pipeline(tiny_settings(rerun)))
    shutil.copytree(sample_root, tmp_path / "data")
    _invert_one_train_image(tmp_path / "data")
    changed = dataclasses.replace(rerun, data_root=str(tmp_path / "data"))
    no_weights = dataclasses.replace(TINY_TRAIN, base_weights=str(tmp_path / "missing.h5"))
    with pytest.raises(Exception, match="base_weights file"):
        BeamDagRunner().run(create_pipeline(tiny_settings(changed, train=no_weights)))

    store = open_store(rerun.metadata)
    third, second = pipeline_runs(store)[:2]  # newest first; earlier tests may have re-run the shared store too
    outputs = find_run_outputs(rerun.metadata)
    assert outputs.run == second.name
    in_second = {e.id for e in store.get_executions_by_context(second.id)}
    for name, artifact in outputs.artifacts.items():
        events = store.get_events_by_artifact_ids([artifact.id])
        assert {e.execution_id for e in events if e.type == metadata_store_pb2.Event.OUTPUT} & in_second, name
    assert outputs.examples == first.examples and outputs.model == first.model  # cache hits in run 2
    assert outputs.evaluation != first.evaluation  # the Evaluator ran again in run 2
    # What only needs ingestion reads run 3, its counts from the execution that wrote the examples.
    ingested = find_run_outputs(rerun.metadata, needs=("examples", "data_report"))
    assert ingested.run == third.name and ingested.examples not in (first.examples, None)
    assert read_ingestion_summary(rerun.metadata).split_images == summary.split_images
    assert read_ingestion_summary(rerun.metadata).examples_uri == ingested.examples
    assert find_run_outputs(rerun.metadata, run=first.run).evaluation == first.evaluation


def test_mura_report_writes_a_page_whose_figures_are_valid_pngs(pipeline_root: str, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["report", "--pipeline-root", pipeline_root, "--out", str(out), "--cases", "1"])
    assert result.exit_code == 0, result.output
    page = (out / "index.html").read_text()
    figures = sorted(out.glob("*.png"))
    names = {f.stem for f in figures}
    assert {"study_metrics", "roc", "reliability", "confusion"} <= names
    assert {f"misread_{part}_{kind.replace(' ', '_')}" for part in BODY_PARTS for kind in MISREAD_KINDS} <= names
    for figure in figures:
        assert f'src="{figure.name}"' in page
        assert figure.read_bytes().startswith(PNG_SIGNATURE)
        with Image.open(figure) as image:
            image.verify()
        with Image.open(figure) as image:
            assert min(image.size) > 100 and len(image.getcolors(1 << 24)) > 2  # drawn on, not blank
    assert "Pushed to" in page and "XR_WRIST" in page
    pushed_card = Path(find_run_outputs(metadata_location(pipeline_root)).pushed_to) / CARD_DIR / CARD_HTML
    assert '<a href="model_card.html">' in page and (out / CARD_HTML).read_text() == pushed_card.read_text()


def test_mura_report_of_a_folder_that_never_ran_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["report", "--pipeline-root", str(tmp_path), "--out", str(tmp_path / "r")])
    assert result.exit_code != 0
    assert "no ML Metadata store" in result.output


@pytest.mark.parametrize(("notebook", "min_figures"), [("body_part_analysis.ipynb", 5), ("data_validation.ipynb", 2)])
def test_notebooks_run_headless_and_draw_their_figures(
    notebook: str, min_figures: int, pipeline_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = nbformat.read(NOTEBOOKS / notebook, as_version=4)
    assert all(
        not cell.get("outputs") and not cell.get("execution_count") for cell in stored.cells if cell.cell_type == "code"
    )
    assert any("parameters" in cell.metadata.get("tags", []) for cell in stored.cells)
    monkeypatch.setenv("MURA_RUN_PIPELINE_ROOT", pipeline_root)
    NotebookClient(
        stored, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    outputs = [output for cell in stored.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) >= min_figures

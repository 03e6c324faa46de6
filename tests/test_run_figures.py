"""Per-run figures drawn from a synthetic run directory on disk."""

from __future__ import annotations

import matplotlib.pyplot as plt

from rnn_sparsity.plots.run import draw_run_figures, loss_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ALL_FIGURES = {"loss.png", "output_vs_target.png", "J_heatmap.png", "eigenvalues.png"}


def test_draws_all_four_figures_into_the_figures_dir(tmp_path, synthetic_run):
    run_dir = synthetic_run(tmp_path / "run", strength=0.01, sparsity=0.5)

    written = draw_run_figures(run_dir)

    assert {path.name for path in written} == ALL_FIGURES
    for path in written:
        assert path.parent == run_dir / "figures"
        assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert not plt.get_fignums()


def test_without_analysis_only_loss_and_weights_are_drawn(tmp_path, synthetic_run):
    run_dir = synthetic_run(tmp_path / "run", analysis=False)

    written = draw_run_figures(run_dir)

    assert {path.name for path in written} == {"loss.png", "J_heatmap.png"}
    assert sorted(p.name for p in (run_dir / "figures").iterdir()) == ["J_heatmap.png", "loss.png"]


def test_failed_run_draws_nothing(tmp_path, synthetic_run):
    assert draw_run_figures(synthetic_run(tmp_path / "run", status="failed")) == []


def test_loss_figure_marks_the_stage_change(tmp_path, synthetic_run):
    run_dir = synthetic_run(tmp_path / "run", strength=0.01)  # adam for steps < 20, then lbfgs

    fig = loss_figure(run_dir)
    ax = fig.axes[0]
    vertical_lines = [line for line in ax.lines if len(set(line.get_xdata())) == 1]
    boundaries = [line.get_xdata()[0] for line in vertical_lines]
    labels = [text.get_text().strip() for text in ax.texts]
    plt.close(fig)

    assert boundaries == [20]
    assert labels == ["adam", "lbfgs"]
    assert ax.get_yscale() == "log"

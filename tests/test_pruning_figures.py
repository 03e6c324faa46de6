"""The pruner group's sweep outputs (plots/pruning.py): methods compared at matched sparsity, the lottery's
rounds, and J's spectra by method, from a synthetic runs table and tiny run directories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rnn_sparsity import artifacts
from rnn_sparsity.plots.common import SPECTRUM_KEYS
from rnn_sparsity.aggregate import distinct_outputs
from rnn_sparsity.plots.pruning import (matched_table, matched_target, remaining_ticks, rounds_table,
                                        spectrum_panels, sweep_outputs)
from rnn_sparsity.pruners.lottery import Lottery
from rnn_sparsity.pruners.schedule import Magnitude, NoPruner

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
L1 = "l1 (proximal)"
TARGETS = {"magnitude": "rnn_sparsity.pruners.schedule.Magnitude", L1: "rnn_sparsity.pruners.schedule.NoPruner",
           "lottery": "rnn_sparsity.pruners.lottery.Lottery"}


def run(method, seed, sparsity, task_loss, **columns):
    return {"run_dir": f"/nowhere/{method}/{seed}/{sparsity}", "status": "completed", "method": method, "seed": seed,
            "sparsity": sparsity, "task_loss": task_loss, "pruner._target_": TARGETS[method], **columns}


def sweep() -> pd.DataFrame:
    """Magnitude prunes to s = 0.5 and 0.9 (two seeds each) and l1 at λ = 0 and 0.01; a failed run, and
    a run without task_loss, which the task_loss means leave out."""
    rows = [run("magnitude", seed, s, loss, mask_sparsity=s, **{"pruner.sparsity": s})
            for s, losses in ((0.5, (0.2, 0.4)), (0.9, (0.6, 1.0))) for seed, loss in enumerate(losses)]
    rows += [run(L1, seed, s, loss, **{"regularizer.strength": lam})
             for lam, cells in ((0.0, ((0.0, 0.1), (0.02, 0.3))), (0.01, ((0.4, 0.5), (0.6, 0.7))))
             for seed, (s, loss) in enumerate(cells)]
    rows.append(run(L1, 2, 0.52, np.nan, **{"regularizer.strength": 0.01}))
    rows.append({**run("magnitude", 2, 0.5, 9.0, **{"pruner.sparsity": 0.5}), "status": "failed"})
    return pd.DataFrame(rows)


KEYS = ["regularizer.strength", "pruner.sparsity"]


def group(table: pd.DataFrame, method: str, key: str, value: float) -> pd.Series:
    """The one row of `table` of `method` at `key` = value."""
    rows = table[(table["method"] == method) & (table[key] == value)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_the_matched_table_holds_each_groups_seeds_and_means():
    table = matched_table(sweep(), KEYS)
    assert len(table) == 4  # the failed run is no group's
    assert table.columns[:4].tolist() == ["method", *KEYS, "n_seeds"]
    magnitude = group(table, "magnitude", "pruner.sparsity", 0.9)
    assert magnitude["n_seeds"] == 2
    assert magnitude["mean_sparsity"] == pytest.approx(0.9) and magnitude["sd_sparsity"] == pytest.approx(0.0)
    assert magnitude["mean_task_loss"] == pytest.approx(0.8)
    assert magnitude["sd_task_loss"] == pytest.approx(np.std([0.6, 1.0], ddof=1))
    assert group(table, "magnitude", "pruner.sparsity", 0.5)["mean_task_loss"] == pytest.approx(0.3)  # not the failed 9
    l1 = group(table, L1, "regularizer.strength", 0.01)
    assert l1["n_seeds"] == 3  # the run without task_loss still counts for its sparsity
    assert l1["mean_sparsity"] == pytest.approx(np.mean([0.4, 0.6, 0.52]))
    assert l1["mean_task_loss"] == pytest.approx(0.6)  # over the two runs that report it
    assert group(table, L1, "regularizer.strength", 0.0)["mean_sparsity"] == pytest.approx(0.01)


def test_one_method_without_a_pruner_has_nothing_to_compare(tmp_path):
    l1_only = sweep().query("method == @L1")
    assert matched_table(l1_only, KEYS) is None
    assert sweep_outputs(l1_only, KEYS, tmp_path) == []
    assert not any(tmp_path.rglob("*"))


def test_one_pruning_method_is_compared_with_itself_across_sparsities(tmp_path):
    written = sweep_outputs(sweep().query("method == 'magnitude'"), KEYS, tmp_path)
    names = [p.relative_to(tmp_path).as_posix() for p in written]
    assert names == ["matched_sparsity.csv", "figures/matched_sparsity.png"]
    assert pd.read_csv(written[0])["n_seeds"].tolist() == [2, 2]
    assert written[1].read_bytes().startswith(PNG_SIGNATURE)


def lottery_run(seed: int, final: float, rounds: int = 2) -> dict:
    """A lottery run's metrics: round r prunes to 1 − (1 − s)^(r/L); each round r >= 1 has its control."""
    metrics = {}
    for r in range(rounds + 1):
        mask = 1 - (1 - final) ** (r / rounds)
        kinds = ("round", "reinit") if r else ("round",)
        for kind in kinds:
            loss = 0.1 + mask + (0.2 if kind == "reinit" else 0.0) + 0.01 * seed
            metrics.update({f"{kind}{r}_mask_sparsity": mask, f"{kind}{r}_task_loss": loss,
                            f"{kind}{r}_sparsity": mask})
    return run("lottery", seed, final, metrics[f"round{rounds}_task_loss"], mask_sparsity=final,
               **{"pruner.sparsity": final}, **metrics)


def test_the_lottery_table_has_a_row_per_run_round_and_kind():
    runs = pd.DataFrame([lottery_run(seed, s) for s in (0.5, 0.9) for seed in (0, 1)] + sweep().to_dict("records"))
    table = rounds_table(runs, KEYS)
    assert len(table) == 4 * 5  # rounds 0, 1, 2 and the controls of rounds 1, 2
    assert not table.duplicated(["run_dir", "round", "kind"]).any()
    assert set(table["method"]) == {"lottery"}
    assert table.groupby("kind").size().to_dict() == {"reinit": 8, "ticket": 12}
    for _, row in table.iterrows():
        assert row["remaining"] == pytest.approx((1 - row["pruner.sparsity"]) ** (row["round"] / 2))
        control = 0.2 * (row["kind"] == "reinit")
        assert row["task_loss"] == pytest.approx(1.1 - row["remaining"] + control + 0.01 * row["seed"])
    assert "regularizer.strength" not in table  # a key no lottery run has


def write_spectrum_run(run_dir: Path, radius: float) -> str:
    """A run directory whose analysis.npz holds a spectrum of J: 4 eigenvalues on a circle, 3 samples."""
    values = radius * np.exp(1j * np.linspace(0, 2 * np.pi, 4, endpoint=False))
    history = np.stack([values * f for f in (0.5, 0.8, 1.0)])
    artifacts.write_arrays(Path(run_dir) / artifacts.ANALYSIS, {"eig_steps": np.array([0, 10, 20]),
                                                                  "eig_values": history, "final_eigenvalues": values})
    return str(run_dir)


def test_the_spectra_compare_each_methods_run_nearest_a_sparsity_all_reach(tmp_path):
    runs = sweep()
    runs = runs[runs["status"] == "completed"].reset_index(drop=True)
    # l1 reaches 0.52 and 0.6, within 0.05 of magnitude's 0.5 (0.9: no l1 run near it): the target is 0.52
    assert matched_target(runs) == pytest.approx(0.52)
    for i in runs.index:
        if runs.loc[i, "sparsity"] != 0.52:  # l1's run at 0.52 has no spectrum: its next nearest (0.6) stands in
            runs.loc[i, "run_dir"] = write_spectrum_run(tmp_path / f"run{i}", 1.0 + i / 10)
    panels = spectrum_panels(runs, matched_target(runs))
    assert [(run["method"], run["sparsity"], run["seed"]) for run, _ in panels] == [(L1, 0.6, 1), ("magnitude", 0.5, 0)]
    assert set(SPECTRUM_KEYS) <= set(panels[0][1])
    out = tmp_path / "out"
    written = sweep_outputs(runs, KEYS, out)
    assert out / "figures" / "spectra_by_method.png" in written
    assert (out / "figures" / "spectra_by_method.png").read_bytes().startswith(PNG_SIGNATURE)


def test_the_lottery_figure_is_drawn_and_named(tmp_path):
    runs = pd.DataFrame([lottery_run(seed, s) for s in (0.5, 0.9) for seed in (0, 1)])
    written = sweep_outputs(runs, KEYS, tmp_path)
    names = [p.relative_to(tmp_path).as_posix() for p in written]
    assert names == ["matched_sparsity.csv", "figures/matched_sparsity.png", "lottery_rounds.csv",
                     "figures/lottery_rounds.png"]  # no spectra: the run dirs do not exist
    assert len(pd.read_csv(tmp_path / "lottery_rounds.csv")) == 20


def test_log_ticks_are_the_rounds_when_apart_else_one_two_five():
    assert remaining_ticks(np.array([1.0, 0.5, 0.1, 0.5])).tolist() == [0.1, 0.5, 1.0]
    crowded = np.array([1.0, 0.96, 0.5, 0.025])  # 1 and 0.96 too close to label both
    assert remaining_ticks(crowded).tolist() == pytest.approx([0.02, 0.05, 0.1, 0.2, 0.5, 1.0])


class OwnOutputs(NoPruner):
    """A researcher's pruner with sweep outputs of its own."""

    @classmethod
    def sweep_outputs(cls, runs, keys, out) -> list:
        return []


def test_the_aggregator_calls_an_inherited_sweep_output_once_and_a_class_s_own_too():
    """Every built-in pruner inherits the comparison: the aggregator calls it once for all the runs; a
    class with an implementation of its own is called as well."""
    classes = [Lottery, Magnitude, NoPruner, OwnOutputs, Magnitude]
    assert distinct_outputs(classes) == [Lottery, OwnOutputs]


def test_the_matched_sparsity_is_where_every_method_has_a_run_nearest_not_one_method_s_outlier():
    """Pruners land on ⌊s·n⌋/n exactly; one L1 run at 0.98 must not pull the comparison away from 0.949."""
    runs = pd.DataFrame({"method": ["magnitude", "magnitude", "random", L1, L1, L1],
                         "sparsity": [0.80, 0.949, 0.949, 0.943, 0.956, 0.98]})
    assert abs(matched_target(runs) - 0.95) < 0.01  # 0.949 or 0.956: every method within 0.007 of either
    assert matched_target(runs.iloc[[0, 2]]) == pytest.approx(0.8745)  # none within 0.05: the median

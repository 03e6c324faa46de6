"""Teacher-student study 1: data, minibatch training with early stopping, and the sparsity finding."""

import jax
import numpy as np
import pytest
from helpers import build_model, build_task, compose_cfg, parts_of

from rnn_sparsity.config import ConfigError, validate
from rnn_sparsity.experiment import make_run, run, set_precision
from rnn_sparsity.tasks.teachers import teacher_layers

SMALL = ["task=teacher_student", "model=mlp", "model.sizes=[12,32,32,1]", "model.init_scale=0.2",
         "task.n_train=256", "task.n_test=256", "optimizer=sgd", "optimizer.lr=0.005", "optimizer.batch_size=16",
         "regularizer.targets=[W1,W2,W3]", "regularizer.reduction=sum", "analysis.eig_every=160",
         "analysis.figures=false", "progress=false"]


CNN = [o for o in SMALL if not o.startswith("model")] + ["model=cnn"]


def teacher_apply(name, x):
    """The tanh teacher's output through its dense layers (float64)."""
    for layer in teacher_layers(name):
        x = np.tanh(x @ layer.T)
    return x


def test_targets_are_the_teacher_plus_noise_of_the_given_std():
    clean = build_task(compose_cfg(*SMALL, "task.activation=tanh", tiny=False))
    x = clean.inputs[0]
    np.testing.assert_allclose(clean.targets[0], teacher_apply("baseline_cnn", x), atol=1e-12)
    noisy = build_task(compose_cfg(*SMALL, "task.activation=tanh", "task.noise_std=0.1", "task.n_train=20000",
                                  tiny=False))
    residual = noisy.targets[0] - teacher_apply("baseline_cnn", noisy.inputs[0])
    assert np.std(residual) == pytest.approx(0.1, rel=0.03)
    assert not np.allclose(clean.test_inputs, clean.inputs)


def test_each_epoch_visits_every_sample_once_in_a_new_order():
    set_precision("float32")
    _, trainer, _ = make_run(compose_cfg(*SMALL, tiny=False))
    key = jax.random.key(3)
    epoch = [np.asarray(trainer.batch_indices(key, step)) for step in range(16)]
    np.testing.assert_array_equal(np.sort(np.concatenate(epoch)), np.arange(256))
    next_epoch = np.concatenate([np.asarray(trainer.batch_indices(key, step)) for step in range(16, 32)])
    assert not np.array_equal(np.concatenate(epoch), next_epoch)


@pytest.mark.slow  # a minibatch run to early stopping (~10 s cold)
def test_early_stopping_ends_a_run_after_patience_epochs_without_improvement(tmp_path):
    # lr ~ 0: every epoch loss is the same mean over all samples up to rounding (the order differs), so
    # after the first epoch at most a rounding-level improvement or two, then `patience` stale epochs
    metrics = run(compose_cfg(*SMALL, "regularizer=none", "optimizer.lr=1e-12", "optimizer.momentum=0",
                              "optimizer.patience=3", "optimizer.steps=1600", tiny=False), tmp_path)
    assert metrics["stopped_early"] is True and 1 + 3 <= metrics["epochs"] <= 1 + 3 + 2
    assert metrics["steps"] == metrics["epochs"] * 16
    no_patience = run(compose_cfg(*SMALL, "regularizer=none", "optimizer.lr=1e-12", "optimizer.steps=320",
                                  tiny=False), tmp_path / "all")
    assert no_patience["stopped_early"] is False and no_patience["epochs"] == 20


@pytest.mark.slow  # 12 s cold; test_train's proximal-versus-penalty test stays in the default suite
def test_proximal_l1_zeroes_student_weights_and_l2_does_not(tmp_path):
    """The study's finding at a small size: L1 in proximal mode leaves many weights exactly 0, L2 none."""
    base = [*SMALL, "optimizer.steps=3200", "regularizer.mode=proximal", "regularizer.strength=1e-2"]
    l1 = run(compose_cfg(*base, "regularizer=l1", tiny=False), tmp_path / "l1")
    l2 = run(compose_cfg(*base, "regularizer=l2", tiny=False), tmp_path / "l2")
    assert l1["sparsity"] > 0.5 and l2["sparsity"] == 0.0
    assert l1["test_loss"] < 0.5 * l1["initial_loss"]  # still learns the teacher
    assert {"teacher_distance", "test_loss", "sparsity/W1", "sparsity/W3"} <= set(l1)


@pytest.mark.parametrize("override,key", [
    ("task.teacher=wide_cnn", "task.teacher"), ("task.noise_std=-0.1", "task.noise_std"),
    ("model.sizes=[10,32,1]", "model.sizes"), ("model.sizes=[12,32,2]", "model.sizes"),
    ("optimizer.batch_size=1000", "optimizer.batch_size")])
def test_bad_teacher_student_input_fails_with_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(*SMALL, override, tiny=False))
    assert err.value.key == key


def test_a_model_the_task_cannot_train_is_refused():
    with pytest.raises(ConfigError, match="task=teacher_student gives static inputs; model=ctrnn learns sequence") as err:
        validate(compose_cfg("task=teacher_student", tiny=False))
    assert err.value.key == "model.name"


def test_sparsity_counts_exact_and_near_zeros_in_total_and_per_layer():
    from rnn_sparsity.analysis.sparsity import sparsity_metrics

    params = {"W1": np.array([[0.0, 5e-5], [1.0, -2.0]]), "W2": np.array([0.0, 0.0, -3e-5, 0.5])}
    metrics = sparsity_metrics(params, ["W1", "W2"])
    assert metrics["sparsity"] == 3 / 8 and metrics["near_zero_fraction"] == 5 / 8
    assert metrics["sparsity/W1"] == 1 / 4 and metrics["near_zero_fraction/W1"] == 2 / 4
    assert metrics["sparsity/W2"] == 2 / 4 and metrics["near_zero_fraction/W2"] == 3 / 4


@pytest.mark.parametrize("teacher,channels", [("baseline_cnn", "[1,1,1,1]"), ("multichannel_cnn", "[1,4,4,1]")])
def test_cnn_student_with_the_teachers_filters_is_the_teacher(teacher, channels):
    from rnn_sparsity.tasks.teachers import _TEACHERS  # the stated filters, (banks, positions) per layer

    cfg = compose_cfg(*CNN, f"model.channels={channels}", "model.activation=tanh",
                      f"task.teacher={teacher}", "task.activation=tanh", tiny=False)
    validate(cfg)
    task = build_task(cfg)
    with jax.enable_x64(True):
        model = build_model(cfg, 12, 1, jax.numpy.float64)
        params = {f"W{l}": jax.numpy.asarray(banks[0], dtype=float)
                  for l, (banks, _) in enumerate(_TEACHERS[teacher], start=1)}
        outputs, _ = model.apply(params, jax.numpy.asarray(task.inputs))
    np.testing.assert_allclose(np.asarray(outputs), task.targets, atol=1e-12)
    task_part, host = parts_of(cfg).task, {k: np.asarray(v) for k, v in params.items()}
    assert task_part.teacher_distance(host)["teacher_distance"] < 1e-12
    assert task_part.weight_match_distance(host)["weight_match_distance"] == 0.0  # the study's distance agrees


def test_cnn_student_trains_and_bad_kernels_are_refused(tmp_path):
    metrics = run(compose_cfg(*CNN, "optimizer.steps=320", "regularizer=l1",
                              "regularizer.mode=proximal", "regularizer.strength=1e-3", tiny=False), tmp_path)
    assert metrics["status"] == "completed" and metrics["test_loss"] < metrics["initial_loss"]
    assert "teacher_distance" in metrics
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(*CNN, "model.kernels=[3,2,3]", tiny=False))
    assert err.value.key == "model.kernels"


# ------------------------------------------------------------------ the study's definitions (issue 21)
EXPERIMENTS = {  # preset: (teacher, model group, student shape keys, training points)
    "teacher_student_exp3": ("baseline_cnn", "mlp", {"sizes": [12, 256, 32, 1]}, 100_000),
    "teacher_student_exp4": ("baseline_cnn", "mlp", {"sizes": [12, 128, 128, 1]}, 100_000),
    "teacher_student_exp5": ("multichannel_cnn", "mlp", {"sizes": [12, 256, 32, 1]}, 100_000),
    "teacher_student_exp6": ("split_filter_cnn", "cnn", {"channels": [1, 4, 4, 1], "kernels": [3, 2, 2]}, 5120),
}


def compose_preset(preset, *overrides):
    """The preset's config (with its hydra node, for the sweeper's grid)."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="rnn_sparsity.conf", version_base="1.3"):
        return compose(config_name="config", overrides=[f"sweeps={preset}", *overrides], return_hydra_config=True)


def job_cfg(preset, *overrides):
    from omegaconf import open_dict

    cfg = compose_preset(preset, *overrides)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@pytest.mark.parametrize("preset", sorted(EXPERIMENTS))
def test_the_experiment_presets_hold_the_studys_settings_and_grid(preset):
    teacher, model, shape, n_train = EXPERIMENTS[preset]
    cfg = compose_preset(preset)
    assert (cfg.task.teacher, cfg.model.name) == (teacher, model)
    assert all(list(cfg.model[k]) == v for k, v in shape.items())
    assert (cfg.task.n_train, cfg.task.n_test, cfg.optimizer.batch_size) == (n_train, 0, 16)
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.patience) == ("sgd", 0.005, 0.9, 100)
    epoch = n_train // 16
    assert cfg.analysis.eig_every == epoch and cfg.optimizer.steps == 100_000 * epoch  # one chunk an epoch, 1e5 epochs
    assert (cfg.regularizer.strength, cfg.regularizer.reduction, cfg.regularizer.mode) == (1e-5, "sum", "penalty")
    assert cfg.regularizer.weight_decay == 1.0 and list(cfg.regularizer.targets) == ["W1", "W2", "W3"]
    assert (cfg.model.init, cfg.analysis.near_zero, cfg.precision) == ("kaiming_out_xavier_uniform", 1e-4, "float32")
    assert cfg.analysis.history == "epochs"  # one history row per epoch, not 6 250
    grid = {k: v.split(",") for k, v in cfg.hydra.sweeper.params.items()}
    assert grid == {"task.activation": ["relu", "sigmoid", "tanh"], "model.activation": ["relu", "sigmoid", "tanh"],
                    "regularizer": ["none", "l1", "l2"], "model.init_scale": ["0.2", "1"], "seed": ["1", "2", "3", "4", "5"]}
    with_seed = job_cfg(preset, "seed=4", "regularizer=l2")
    assert with_seed.task.data_seed == 4  # the data are drawn from the run's seed
    validate(with_seed)
    validate(job_cfg(preset, "regularizer=none"))  # none ignores the weight decay the preset sets for L2


def test_the_studys_data_are_100k_standard_normal_inputs_per_seed_and_nothing_held_out():
    task = build_task(job_cfg("teacher_student_exp4", "seed=1", "task.activation=sigmoid"))
    x = task.inputs[0]
    assert task.inputs.shape == (1, 100_000, 12) and task.targets.shape == (1, 100_000, 1)
    assert task.test_inputs is None and task.test_targets is None
    assert np.max(np.abs(x.mean(axis=0))) < 0.015  # 4.7 standard errors of the mean (1/√1e5)
    np.testing.assert_allclose(np.cov(x, rowvar=False), np.eye(12), atol=0.025)
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    y = x
    for layer in teacher_layers("baseline_cnn"):
        y = sigmoid(y @ layer.T)
    np.testing.assert_allclose(task.targets[0], y, rtol=1e-6)
    same = build_task(job_cfg("teacher_student_exp4", "seed=1", "task.activation=relu", "model.activation=tanh"))
    other = build_task(job_cfg("teacher_student_exp4", "seed=2"))
    np.testing.assert_array_equal(same.inputs, task.inputs)  # one draw per seed, whatever the cell
    assert not np.allclose(other.inputs[0, :10], x[:10])


@pytest.mark.slow  # two students to compile (~6 s cold)
def test_teacher_and_student_activations_are_separate_keys():
    from rnn_sparsity.experiment import static_key
    from rnn_sparsity.tasks.teacher_student import teacher_data

    cfg = compose_cfg(*SMALL, "task.activation=relu", "model.activation=tanh", tiny=False)
    task = build_task(cfg)
    x, y = teacher_data(cfg.task, 256, np.random.default_rng(cfg.task.data_seed))
    np.testing.assert_allclose(task.targets, y, rtol=1e-6)  # the teacher is relu
    assert np.all(task.targets >= 0)
    with jax.enable_x64(True):
        model = build_model(cfg, 12, 1, jax.numpy.float64)
        params, _ = model.init(jax.random.key(0), {})
        out, _ = model.apply(params, jax.numpy.asarray(task.inputs))
        h = task.inputs[0]
        for name in ("W1", "W2", "W3"):
            h = np.tanh(h @ np.asarray(params[name]).T)
    np.testing.assert_allclose(np.asarray(out)[0], h, rtol=1e-10)  # the student is tanh (negative outputs too)
    other_teacher = compose_cfg(*SMALL, "task.activation=sigmoid", "model.activation=tanh", "task.teacher=split_filter_cnn",
                                tiny=False)
    other_student = compose_cfg(*SMALL, "task.activation=relu", "model.activation=relu", tiny=False)
    keys = [static_key(c, parts_of(c)) for c in (cfg, other_teacher, other_student)]
    assert keys[0] == keys[1]  # the teacher changes only the targets: one compiled trainer, one vmapped batch
    assert keys[0] != keys[2]


def penalty_and_gradient(regularizer, strength, params, *overrides):
    cfg = compose_cfg(f"regularizer={regularizer}", f"regularizer.strength={strength}", "regularizer.targets=[W1,W2]",
                      "regularizer.reduction=sum", *overrides, *SMALL[:3], tiny=False)
    from helpers import build_regularizer

    reg = build_regularizer(cfg, {k: v.shape for k, v in params.items()})
    with jax.enable_x64(True):
        hyper = parts_of(cfg).regularizer.hyper(jax.numpy.float64)
        value, grad = jax.value_and_grad(lambda p: reg.penalty(p, hyper))(params)
    return float(value), {k: np.asarray(v) for k, v in grad.items()}


W = {"W1": np.array([[1.0, -2.0], [0.5, 0.0]]), "W2": np.array([[3.0]])}


def test_l1_penalty_is_lambda_times_the_sum_of_absolute_weights():
    value, grad = penalty_and_gradient("l1", 0.1, W)
    assert value == pytest.approx(0.1 * (1 + 2 + 0.5 + 0 + 3), rel=1e-12)  # 0.65
    np.testing.assert_allclose(grad["W1"][0], [0.1, -0.1])
    decayed, grad_decayed = penalty_and_gradient("l1", 0.1, W, "regularizer.weight_decay=1")
    assert decayed == value and np.array_equal(grad_decayed["W1"], grad["W1"])  # no decay of an L1 run (r = 1)


def test_the_studys_l2_is_lambda_sum_of_squares_in_the_loss_with_sgd_weight_decay_lambda():
    value, grad = penalty_and_gradient("l2", 0.1, W)  # today's: λ Σ w², gradient 2 λ w
    assert value == pytest.approx(0.1 * (1 + 4 + 0.25 + 0 + 9), rel=1e-12)  # 1.425
    np.testing.assert_allclose(grad["W1"], 2 * 0.1 * W["W1"], rtol=1e-12)
    source, grad_source = penalty_and_gradient("l2", 0.1, W, "regularizer.weight_decay=1")
    assert source == pytest.approx(1.425, rel=1e-12)  # the loss holds λ Σ w² only
    np.testing.assert_allclose(grad_source["W1"], 3 * 0.1 * W["W1"], rtol=1e-12)  # + SGD weight_decay=λ: 3 λ w
    np.testing.assert_allclose(grad_source["W2"], [[0.9]], rtol=1e-12)
    half, grad_half = penalty_and_gradient("elastic_net", 0.1, W, "regularizer.weight_decay=2", "regularizer.l1_ratio=0.5")
    assert half == pytest.approx(0.1 * (0.5 * 6.5 + 0.5 * 14.25), rel=1e-12)
    np.testing.assert_allclose(grad_half["W2"], [[0.1 * (0.5 + 0.5 * 2 * 3) + 2 * 0.5 * 0.1 * 3]], rtol=1e-12)


@pytest.mark.parametrize("override,key", [("regularizer.weight_decay=-1", "regularizer.weight_decay"),
                                          ("analysis.near_zero=0", "analysis.near_zero"),
                                          ("model.init=xavier", "model.init")])
def test_bad_study_keys_fail_with_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(*SMALL, "regularizer=l2", override, tiny=False))
    assert err.value.key == key
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(*SMALL, "regularizer=l2", "regularizer.mode=proximal", "regularizer.weight_decay=1", tiny=False))
    assert err.value.key == "regularizer.weight_decay"


def test_the_near_zero_threshold_is_a_key():
    from rnn_sparsity.analysis.sparsity import sparsity_metrics

    params = {"W1": np.array([0.5e-4, -0.5e-4, 2e-4, 1.0]), "W2": np.array([0.0, -2e-4])}
    assert sparsity_metrics(params, ["W1", "W2"], 1e-4)["near_zero_fraction"] == 3 / 6  # 0.5e-4 counts, 2e-4 not
    assert sparsity_metrics(params, ["W1", "W2"], 3e-4)["near_zero_fraction"] == 5 / 6
    for threshold, expected in ((1e-4, 3 / 6), (3e-4, 5 / 6)):
        task = parts_of(compose_cfg(*SMALL, "regularizer.targets=[W1,W2]", f"analysis.near_zero={threshold}",
                                    tiny=False)).task
        assert task.near_zero_fraction(params)["near_zero_fraction"] == expected


@pytest.mark.slow  # a teacher-student run (~8 s cold)
def test_a_run_counts_near_zeros_with_the_key_and_records_their_trajectory(tmp_path):
    from rnn_sparsity.artifacts import read_arrays, read_params
    from rnn_sparsity.plots.teacher_student import near_zero_figure

    cfg = compose_cfg(*SMALL, "regularizer=l1", "regularizer.strength=1e-3", "optimizer.steps=64",
                      "analysis.eig_every=32", "analysis.near_zero=0.02", tiny=False)
    metrics = run(cfg, tmp_path)
    params = read_params(tmp_path)
    flat = np.concatenate([np.ravel(params[k]) for k in ("W1", "W2", "W3")])
    assert metrics["near_zero_fraction"] == np.mean(np.abs(flat) < 0.02)
    assert 0 < metrics["near_zero_fraction"] < 1
    arrays = read_arrays(tmp_path / "analysis.npz")
    np.testing.assert_array_equal(arrays["param_step"], [0, 32, 64])  # before training and after every chunk
    assert arrays["param_near_zero_fraction"].shape == (3,) and "param_weight_match_distance" in arrays
    assert {"weight_match_distance", "teacher_distance"} <= set(metrics)
    assert near_zero_figure(tmp_path) is not None


def test_the_sweep_table_and_figure_of_near_zero_fractions(tmp_path):
    import pandas as pd

    from rnn_sparsity.plots.teacher_student import sweep_outputs

    rows = []
    for i, (reg, fraction) in enumerate((("l1", 0.9), ("l1", 0.7), ("none", 0.0))):
        run_dir = tmp_path / f"run{i}"
        run_dir.mkdir()
        np.savez(run_dir / "analysis.npz", param_step=np.array([0, 10]), param_near_zero_fraction=np.array([0.0, fraction]))
        rows.append({"status": "completed", "run_dir": str(run_dir), "task.teacher": "baseline_cnn",
                     "task.activation": "relu", "model.activation": "tanh", "regularizer.name": reg,
                     "model.init_scale": 0.2, "near_zero_fraction": fraction, "epochs": 10 * (i + 1)})
    written = sweep_outputs(pd.DataFrame(rows), ["regularizer", "seed"], tmp_path / "aggregate")
    assert sorted(p.name for p in written) == ["near_zero_by_cell.csv", "near_zero_trajectories.png"]
    table = pd.read_csv(tmp_path / "aggregate" / "near_zero_by_cell.csv").set_index("regularizer.name")
    assert table.loc["l1", "near_zero_mean"] == pytest.approx(0.8) and table.loc["l1", "near_zero_count"] == 2
    assert table.loc["l1", "mean_epochs"] == pytest.approx(15) and table.loc["none", "near_zero_max"] == 0.0


@pytest.mark.parametrize("activation,kind,spread", [
    ("relu", "normal", lambda fan_in, fan_out: np.sqrt(2 / fan_out)),  # Kaiming normal, mode fan_out
    ("sigmoid", "uniform", lambda fan_in, fan_out: np.sqrt(6 / (fan_in + fan_out))),  # Xavier uniform, gain 1
    ("tanh", "uniform", lambda fan_in, fan_out: 5 / 3 * np.sqrt(6 / (fan_in + fan_out)))])  # gain 5/3
def test_the_studys_init_is_pytorchs_kaiming_fan_out_and_xavier_uniform_times_the_scale(activation, kind, spread):
    cases = [("mlp", ["model.sizes=[12,256,32,1]"], {"W1": (12, 256), "W2": (256, 32)}),
             ("cnn", ["model.channels=[1,4,4,1]"], {"W1": (3, 12), "W2": (8, 8)})]  # a kernel's fans: C_in k, C_out k
    for model, sizes, fans in cases:
        cfg = compose_cfg(*(CNN if model == "cnn" else SMALL), *sizes, f"model.activation={activation}",
                          "model.init=kaiming_out_xavier_uniform", "model.init_scale=0.2", tiny=False)
        with jax.enable_x64(True):
            model_ = build_model(cfg, 12, 1, jax.numpy.float64)
            inits = [model_.init(jax.random.key(k), {})[0] for k in range(1 if model == "mlp" else 40)]
        for name, (fan_in, fan_out) in fans.items():
            w = np.concatenate([np.ravel(p[name]) for p in inits])  # the CNN's kernels pooled over 40 seeds
            scale = 0.2 * spread(fan_in, fan_out)
            if kind == "uniform":  # U(-b, b): inside the bound, std b/√3
                assert np.max(np.abs(w)) <= scale and np.max(np.abs(w)) > 0.8 * scale
                assert np.std(w) == pytest.approx(scale / np.sqrt(3), rel=0.25)
            else:
                assert np.std(w) == pytest.approx(scale, rel=0.25) and np.max(np.abs(w)) > 2 * scale


def test_the_normal_init_is_unchanged():
    cfg = compose_cfg(*SMALL, "model.sizes=[12,256,32,1]", "model.activation=tanh", "model.init_scale=0.2", tiny=False)
    with jax.enable_x64(True):
        params, _ = build_model(cfg, 12, 1, jax.numpy.float64).init(jax.random.key(1), {})
        key = jax.random.split(jax.random.key(1), 3)[1]  # one split of the key per layer (seeded_init)
        expected = 0.2 * np.sqrt(2 / (256 + 32)) * np.asarray(jax.random.normal(key, (32, 256), jax.numpy.float64))
    np.testing.assert_array_equal(np.asarray(params["W2"]), expected)

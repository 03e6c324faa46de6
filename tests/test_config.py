"""Config composition, typing and value checks (DESIGN rule 1)."""

from pathlib import Path

import pytest
from helpers import compose_cfg
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf, open_dict
from omegaconf.errors import ConfigKeyError

import rnn_sparsity
from rnn_sparsity.config import ConfigError, validate

CONF = Path(rnn_sparsity.__file__).parent / "conf"
GROUPS = ["model", "task", "regularizer", "optimizer", "pruner", "analysis"]


def group_options():
    return [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


# options that need a partner from another group (a task that a model can train)
COMPANIONS = {("model", "mlp"): ["task=teacher_student"], ("model", "cnn"): ["task=teacher_student"],
              ("model", "lowrank_linear"): ["task=fast_decay"],
              ("model", "flax"): ["task=teacher_student", "model.module._target_=flax.linen.Dense", "+model.module.features=1"],
              ("model", "flax_rnn"): ["model.cell._target_=flax.linen.MGUCell", "+model.cell.features=8"],
              ("task", "fast_decay"): ["model=lowrank_linear"],
              ("task", "iris"): ["model=mlp", "model.sizes=[4,64,64,3]", "model.output_activation=linear"],
              ("task", "teacher_student"): ["model=mlp"],
              ("task", "digits"): ["model=mlp", "model.sizes=[64,32,10]", "model.output_activation=linear"],
              ("task", "mlp_teacher"): ["model=mlp", "model.sizes=[2,25,25,1]", "model.activation=tanh",
                                        "model.bias=true", "model.output_activation=linear"]}


@pytest.mark.parametrize("group,option", group_options())
def test_every_group_option_composes_and_validates(group, option):
    cfg = compose_cfg(f"{group}={option}", *COMPANIONS.get((group, option), []), tiny=False)
    assert cfg[group].name == option
    validate(cfg)


@pytest.mark.parametrize("preset", sorted(p.relative_to(CONF / "sweeps").with_suffix("").as_posix()
                                           for p in (CONF / "sweeps").rglob("*.yaml")))  # a study's arms: sweeps=<study>/<arm>
def test_every_sweep_preset_composes_with_a_grid(preset):
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="rnn_sparsity.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"sweeps={preset}"], return_hydra_config=True)
    assert cfg.hydra.sweeper.params, "a preset sets its own grid"
    with open_dict(cfg):
        del cfg["hydra"]
    validate(cfg)


def test_defaults_are_the_seed_spec():
    cfg = compose_cfg(tiny=False)
    assert (cfg.model.name, cfg.task.name, cfg.regularizer.name, cfg.optimizer.name, cfg.analysis.name) == (
        "ctrnn", "sine_wave", "l1", "adam_lbfgs", "default")
    assert (cfg.model.n_units, cfg.model.dt, cfg.task.n_freqs) == (200, 0.02, 51)
    assert (cfg.optimizer.lr, cfg.optimizer.steps, cfg.optimizer.lbfgs_steps) == (1e-3, 1000, 2000)
    assert cfg.regularizer.reduction == "mean" and cfg.regularizer.targets is None  # null: the model's weights (J)


def test_types_are_checked_and_unknown_keys_refused():
    with pytest.raises(ConfigCompositionException):
        compose_cfg("model.n_units=many")
    with pytest.raises((ConfigCompositionException, ConfigKeyError)):
        compose_cfg("model.n_unit=5")
    with pytest.raises(ConfigCompositionException):
        compose_cfg("regularizer=l3")


@pytest.mark.parametrize("override,key", [
    ("regularizer.strength=-1", "regularizer.strength"),
    ("model.sparsity=1.5", "model.sparsity"),
    ("model.sparsity=1.0", "model.sparsity"),
    ("optimizer.steps=0", "optimizer.steps"),
    ("optimizer.lr=-0.1", "optimizer.lr"),
    ("model.n_units=0", "model.n_units"),
    ("task.omega_max=0.05", "task.omega_max"),
    ("precision=float16", "precision"),
    ("regularizer.mode=prox", "regularizer.mode"),
    ("optimizer.momentum=1.0", "optimizer.momentum"),
    ("regularizer.activity=-0.1", "regularizer.activity"),
    ("optimizer.lbfgs_tol=-1e-5", "optimizer.lbfgs_tol"),
])
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as info:
        validate(compose_cfg(override))
    assert info.value.key == key
    assert key in str(info.value)


def test_activity_penalty_needs_a_model_with_rates():
    with pytest.raises(ConfigError) as info:
        validate(compose_cfg("task=iris", "model=mlp", "model.sizes=[4,8,3]", "regularizer.activity=0.1", tiny=False))
    assert info.value.key == "regularizer.activity" and "model=mlp" in str(info.value)


@pytest.mark.parametrize("override,key,allowed", [  # floats: every key of every option, in the test below
    ("analysis.fixed_points.tol=nan", "analysis.fixed_points.tol", "finite"),  # null by default: not in that walk
    ("seed=-1", "seed", ">= 0"),
    ("seed=4294967296", "seed", "< 2**32"),
])
def test_a_nan_tolerance_and_bad_seeds_are_refused(override, key, allowed):
    with pytest.raises(ConfigError) as info:
        validate(compose_cfg(override))
    assert info.value.key == key and allowed in info.value.allowed


def test_a_task_seed_below_zero_is_refused_like_the_run_seed():
    with pytest.raises(ConfigError) as info:
        validate(compose_cfg("task=flipflop", "task.data_seed=-1", tiny=False))
    assert info.value.key == "task.data_seed"
    validate(compose_cfg("seed=4294967295"))  # the largest seed JAX keeps apart from the others


def float_keys(node, prefix=""):
    """Dotted keys of every float in a config container (the keys the generic walk must cover)."""
    for name, value in node.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            yield from float_keys(value, f"{key}.")
        elif isinstance(value, float):
            yield key


def assert_non_finite_refused(cfg, keys) -> None:
    for key in keys:
        for bad in (float("inf"), float("-inf"), float("nan")):
            broken = cfg.copy()
            OmegaConf.update(broken, key, bad)
            with pytest.raises(ConfigError) as info:
                validate(broken)
            assert info.value.key == key and "finite" in info.value.allowed


def test_every_float_key_of_the_default_config_refuses_nan_and_inf():
    """No per-key list: set each float the composed config has to inf, -inf and nan in turn."""
    cfg = compose_cfg("analysis=dynamics", tiny=False)
    keys = list(float_keys(OmegaConf.to_container(cfg, resolve=True)))
    assert "optimizer.lr" in keys and "analysis.fixed_points.perturbation_std" in keys
    assert_non_finite_refused(cfg, keys)


@pytest.mark.parametrize("group,option", group_options())
def test_every_float_key_of_every_option_refuses_nan_and_inf(group, option):
    """Each option's own float keys (the others' are the default config's, tested above)."""
    cfg = compose_cfg(f"{group}={option}", *COMPANIONS.get((group, option), []), tiny=False)
    keys = [key for key in float_keys(OmegaConf.to_container(cfg, resolve=True)) if key.startswith(f"{group}.")]
    assert_non_finite_refused(cfg, keys)

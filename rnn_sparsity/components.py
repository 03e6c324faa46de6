"""Components: a model, task, regularizer, optimizer, pruner or analysis is one class in one module, plus a YAML.

A component class declares, next to its code:

    Config         its schema (a dataclass), registered in Hydra's ConfigStore as schema/<group>/<name>,
                   whose `_target_` names the class: `_target_` is how a composed config finds it
    traced         the keys of its config that a sweep varies without recompiling (hyper[group][key])
    check()        its value checks (raise ConfigError), given every component of the run
    probes()       what it wants run between training chunks and after training (contracts.Probe)
    run_figures()  per-run figures it owns: {file name: draw(run_dir) -> Figure | None}
    summary_metrics, unplotted_metrics, sweep_outputs()   what the aggregator does with its metrics
    build()        the runtime record (contracts.Model, Task, Regularizer; stages for an optimizer)

Why `_target_` rather than a registry keyed by name: a researcher's own component in their own package
is found by the dotted path in their YAML (`_target_: my_pkg.tasks.Toy`), with nothing registered or
imported ahead and no name that could clash with ours; the same string is what Hydra's instantiate
would take, so a config says what runs. `resolve(cfg)` imports the classes, types each group against
its schema (an option whose YAML does not name the schema, such as a user's, is checked here: wrong
types and unknown keys are refused, missing keys take the schema's defaults) and returns the
instances. The central files (config, experiment, aggregate) name no component.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from typing import Any, ClassVar, NamedTuple

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

GROUPS = ("model", "task", "regularizer", "optimizer", "pruner", "analysis")


class ConfigError(ValueError):
    """A config value outside its allowed range; the message names key, value and what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"invalid config value {key}={value!r}: {allowed}")


# ------------------------------------------------------------------------------------- check helpers
def check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(key, value, allowed)


def positive(cfg: DictConfig, key: str) -> None:
    """cfg's `key` (dotted, from the root) > 0."""
    value = OmegaConf.select(cfg, key)
    check(value > 0, key, value, "must be > 0")


def non_negative(cfg: DictConfig, key: str, note: str = "") -> None:
    value = OmegaConf.select(cfg, key)
    check(value >= 0, key, value, "must be >= 0" + note)


def one_of(cfg: DictConfig, key: str, options) -> None:
    value = OmegaConf.select(cfg, key)
    check(value in options, key, value, f"must be one of {', '.join(options)}")


def parameter_targets(key: str, named, param_shapes: dict[str, tuple[int, ...]], weights: tuple[str, ...]) -> tuple[str, ...]:
    """The parameters a component acts on: those `named` (its `key`, e.g. regularizer.targets), or the
    model's `weights` where it is null; a name that is not a parameter of the model is refused, the
    message listing those that are."""
    if named is None:
        check(len(weights) > 0, key, None, "null targets the model's weights and this model declares none: "
              f"name some of its parameters: {', '.join(param_shapes)}")
        return tuple(weights)
    targets = tuple(named)
    if any(t not in param_shapes for t in targets):
        raise ConfigError(key, list(targets), f"names must be parameters of the model: {', '.join(param_shapes)}")
    return targets


# -------------------------------------------------------------------------------------------- classes
class Component:
    """Base of every component; `cfg` is the root config, `self.group_cfg` its own group's node."""

    group: ClassVar[str] = ""
    absent: ClassVar[str | None] = None  # the `_target_` of a config that lacks the group (None: it is required)
    Config: ClassVar[type | None] = None
    traced: ClassVar[tuple[str, ...]] = ()
    summary_metrics: ClassVar[tuple[str, ...]] = ()  # metrics summary.csv gives mean/std/n of
    unplotted_metrics: ClassVar[tuple[str, ...]] = ()  # numeric metrics not worth a figure (names or fnmatch patterns)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.group and "Config" in cls.__dict__ and cls.Config is not None:
            ConfigStore.instance().store(group=f"schema/{cls.group}", name=schema_name(cls), node=cls.Config)

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.group_cfg = cfg[self.group]

    def check(self, parts: "Parts") -> None:
        """Value checks of this component's keys (and of how it fits the others); raise ConfigError."""

    def hyper(self, dtype) -> dict[str, Any]:
        """The traced values of this component's config as scalars of the run's dtype."""
        import jax.numpy as jnp

        return {key: jnp.asarray(self.group_cfg[key], dtype) for key in self.traced}

    def probes(self, trainer) -> list:
        """Probes (contracts.Probe) this component wants for a run of `trainer`."""
        return []

    def run_figures(self) -> dict[str, Any]:
        """{file name: draw(run_dir) -> Figure | None} of the per-run figures this component owns."""
        return {}

    @classmethod
    def sweep_outputs(cls, runs, keys, out) -> list:
        """Tables and figures of a whole sweep this component owns (the aggregator calls it with the
        sound runs, the swept keys and its output folder); returns the written paths."""
        return []


def variant(base: type, target: str, name: str) -> type:
    """The schema of a component that shares `base`'s keys: a dataclass subclass of it whose `_target_`
    and `name` defaults name that component (registered under schema/<group>/<name> with it)."""
    module, _, owner = target.rpartition(".")
    schema = dataclasses.make_dataclass(f"{owner}Config", [("_target_", str, dataclasses.field(default=target)),
                                                           ("name", str, dataclasses.field(default=name))],
                                        bases=(base,))
    # where the class will be found by name (`<owner>.Config`), so that it pickles (joblib launcher)
    schema.__module__, schema.__qualname__ = module, f"{owner}.Config"
    return schema


def schema_name(cls: type) -> str:
    """The ConfigStore name of a component's schema: its Config's `name` default."""
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    return fields["name"].default if "name" in fields else cls.__name__.lower()


class ModelComponent(Component):
    group = "model"
    inputs: ClassVar[tuple[str, ...]] = ()  # the data layouts it can learn (TaskComponent.layout)
    has_rates: ClassVar[bool] = False  # it has firing rates for regularizer.activity to penalise
    has_dynamics: ClassVar[bool] = False  # its Model has Dynamics (fixed points, slow points, PCA)
    size_keys: ClassVar[tuple[str, ...]] = ()  # its keys that set the parameter count (memory advice)

    def build(self, task, dtype):
        """contracts.Model for the built task (its n_inputs, n_outputs)."""
        raise NotImplementedError


class TaskComponent(Component):
    group = "task"
    layout: ClassVar[str] = ""  # "sequence" (T, B, n_in) trials | "static" (1, B, n_in) features | ...
    # keys that change only the values of the Task's data arrays (inputs, targets, test_inputs,
    # test_targets: a data seed, the noise on the targets), never their shapes nor anything else the Task
    # holds: runs that differ only in them share a compiled trainer and train as one batch
    data_keys: ClassVar[tuple[str, ...]] = ()

    def build(self, dtype):
        """contracts.Task (reads other groups where its data depend on them, e.g. model.dt)."""
        raise NotImplementedError

    def io(self) -> tuple[int, int] | None:
        """(input width, output width) where known from the config alone, for models that list sizes."""
        return None

    def n_train(self) -> int | None:
        """Training samples (the minibatch axis), where known from the config alone."""
        return None

    def n_conditions(self) -> int:
        """Static inputs the fixed-point analysis can look at (0: a task without conditions)."""
        return 0


class RegularizerComponent(Component):
    group = "regularizer"
    proximal_operator: ClassVar[bool] = True

    @property
    def proximal(self) -> bool:
        """Whether training applies its prox after each update (`mode: proximal`) rather than adding its
        penalty to the loss; a regularizer without a `mode` key is a penalty."""
        return self.group_cfg.get("mode", "penalty") == "proximal"

    def build(self, param_shapes: dict[str, tuple[int, ...]], weights: tuple[str, ...] = ()):
        """contracts.Regularizer for a model whose parameters have these shapes and whose weights
        (contracts.Model.weight_names) are `weights`: what it acts on where not told otherwise."""
        raise NotImplementedError


class OptimizerComponent(Component):
    group = "optimizer"
    minibatches: ClassVar[bool] = False  # it can train on minibatches (first-order)

    def stages(self, proximal: bool) -> list:
        raise NotImplementedError

    def minibatch_options(self) -> dict:
        """The trainer's minibatch schedule (train.Trainer): batch_size (0: full batch), drop_last,
        patience, keep; an optimizer without these keys trains full batch."""
        cfg = self.group_cfg
        return dict(batch_size=int(cfg.get("batch_size", 0)), drop_last=bool(cfg.get("drop_last", False)),
                    patience=int(cfg.get("patience", 0)), keep=str(cfg.get("keep", "best")))


class PrunerComponent(Component):
    group = "pruner"
    # what a config without a pruner group (a run recorded before the group existed) ran: no pruning
    absent: ClassVar[str | None] = "rnn_sparsity.pruners.schedule.NoPruner"

    def build(self, param_shapes: dict[str, tuple[int, ...]], weights: tuple[str, ...] = ()):
        """contracts.Pruner for a model whose parameters have these shapes and whose weights are `weights`
        (what it prunes where `pruner.targets` is null)."""
        raise NotImplementedError

    def method(self) -> str:
        """How this run makes its network sparse, for a comparison across methods (the aggregator's
        matched-sparsity figure): the pruner's name; `none` defers to the regularizer."""
        return str(self.group_cfg.name)


class AnalysisComponent(Component):
    group = "analysis"
    chunk_steps: ClassVar[int] = 100  # steps of a jitted chunk, between which the probes sample

    def trainer_options(self) -> dict:
        """The trainer's chunk length and history rows ("steps": one per step)."""
        return dict(chunk_steps=self.chunk_steps, history="steps")


BASES = {"model": ModelComponent, "task": TaskComponent, "regularizer": RegularizerComponent,
         "optimizer": OptimizerComponent, "pruner": PrunerComponent, "analysis": AnalysisComponent}


class Parts(NamedTuple):
    """The resolved components of one run."""
    model: ModelComponent
    task: TaskComponent
    regularizer: RegularizerComponent
    optimizer: OptimizerComponent
    pruner: PrunerComponent
    analysis: AnalysisComponent


def import_target(key: str, target: Any, base: type) -> type:
    """The class `target` ("module.Class") names, a subclass of `base`, or a ConfigError on `key`."""
    if not isinstance(target, str) or "." not in target:
        raise ConfigError(key, target, f"must name a {base.__name__} subclass as module.Class")
    module_name, _, name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(key, target, f"cannot be imported ({type(err).__name__}: {err})") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(key, target, f"must be a subclass of {base.__module__}.{base.__qualname__}")
    return cls


def component_class(group: str, target: Any) -> type:
    """The class a group's `_target_` names, or a ConfigError saying why it cannot be used."""
    return import_target(f"{group}._target_", target, BASES[group])


def refuse_unknown_keys(node: DictConfig, schema: type, prefix: str) -> None:
    """A key the schema (a dataclass) does not have is refused like a typo, also one added with `+`
    (Hydra's `+key=value` opens the config, so it would otherwise be accepted, recorded and ignored);
    nested dataclass fields are checked the same way, other nested nodes (a Flax module's) are free."""
    fields = {f.name for f in dataclasses.fields(schema)}
    kinds = typing.get_type_hints(schema)  # the fields' types, string annotations resolved
    for key in node:
        name = f"{prefix}.{key}" if prefix else str(key)
        if key == "hydra" and not prefix:  # Hydra's own node, where a caller composed it in
            continue
        if key not in fields:
            raise ConfigError(name, OmegaConf.select(node, str(key), throw_on_missing=False),
                              f"not a key of {schema.__name__}; its keys: {', '.join(fields)}")
        kind = kinds.get(key)
        if dataclasses.is_dataclass(kind) and OmegaConf.is_dict(OmegaConf.select(node, str(key), throw_on_missing=False)):
            refuse_unknown_keys(node[key], kind, name)


def typed(cfg: DictConfig, group: str, cls: type) -> None:
    """Check cfg[group] against cls.Config (types, unknown keys) and fill keys it lacks with the schema's
    defaults, in place. Built-in options name their schema in their YAML (Hydra checked it already)."""
    if cls.Config is None:
        return
    refuse_unknown_keys(cfg[group], cls.Config, group)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls.Config), cfg[group])
    except OmegaConfBaseException as err:
        key = f"{group}.{err.full_key}" if getattr(err, "full_key", None) else group
        raise ConfigError(key, getattr(err, "value", None), str(err).splitlines()[0]) from None
    missing = [k for k in merged if k not in cfg[group]]
    if missing:
        with open_dict(cfg):
            for k in missing:
                cfg[group][k] = merged[k]


def resolve(cfg: DictConfig) -> Parts:
    """The components of a composed config, each typed against its schema."""
    parts = {}
    for group in GROUPS:
        node = cfg.get(group)
        if node is None and BASES[group].absent is not None:  # a group newer than the config's record
            with open_dict(cfg):
                cfg[group] = {"_target_": BASES[group].absent}
            node = cfg[group]
        if node is None:
            raise ConfigError(group, None, f"a run needs a {group} group")
        cls = component_class(group, node.get("_target_"))
        typed(cfg, group, cls)
        parts[group] = cls(cfg)
    return Parts(**parts)

"""Typed config schemas, registered in Hydra's ConfigStore, and the value checks run before any compute.

Every YAML option in `conf/<group>/` names its schema in its defaults list
(`- /schema/<group>@_here_: <name>`), so Hydra
checks types and refuses unknown keys when it composes. Ranges are checked by `validate`, which raises
`ConfigError` naming the key, the value and what is allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf


class ConfigError(ValueError):
    """A config value outside its allowed range; the message names key, value and what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"invalid config value {key}={value!r}: {allowed}")


# ----------------------------------------------------------------------------------------- groups
@dataclass
class CTRNNConfig:
    name: str = "ctrnn"
    n_units: int = 200  # N, number of rate units
    sparsity: float = 0.0  # s, fraction of J pruned by a fixed Bernoulli mask drawn from the seed
    dt: float = 0.02  # Euler step (time units)
    tau: float = 1.0  # membrane time constant
    gain: float = 1.0  # g, J ~ g N(0, 1/N) at init


@dataclass
class MLPConfig:
    name: str = "mlp"
    sizes: list[int] = field(default_factory=lambda: [12, 128, 128, 1])  # widths, input and output included
    activation: str = "relu"  # relu | sigmoid | tanh, every hidden layer
    output_activation: str = "same"  # same (as hidden) | linear | relu | sigmoid | tanh
    bias: bool = False
    init_scale: float = 1.0  # Kaiming (relu) / Xavier (others) normal std times this


@dataclass
class CNNConfig:
    name: str = "cnn"
    channels: list[int] = field(default_factory=lambda: [1, 1, 1, 1])  # from the input's 1 to the output's 1
    kernels: list[int] = field(default_factory=lambda: [3, 2, 2])  # kernel = stride per layer; product = input length
    activation: str = "relu"  # relu | sigmoid | tanh, every layer
    init_scale: float = 1.0


@dataclass
class LowRankLinearConfig:
    name: str = "lowrank_linear"
    n_units: int = 500  # N
    rank_fraction: float = 0.1  # n = round(N · rank_fraction) columns of U, rows of V
    tau: float = 0.01  # time constant (s)


@dataclass
class FastDecayConfig:
    name: str = "fast_decay"
    alpha: float = 1e5  # weight of the stability loss Σ max(Re γ, 0)²
    beta: float = 0.01  # weight of the smoothness loss


@dataclass
class TeacherStudentConfig:
    name: str = "teacher_student"
    teacher: str = "baseline_cnn"  # baseline_cnn | multichannel_cnn | split_filter_cnn
    activation: str = "relu"  # the teacher's activation after every layer: relu | sigmoid | tanh
    n_train: int = 1024  # training points x ~ N(0, I_12)
    n_test: int = 1024
    noise_std: float = 0.0  # σ of Gaussian noise added to the targets
    data_seed: int = 0  # the data are drawn once from this seed


@dataclass
class MLPTeacherConfig:
    name: str = "mlp_teacher"
    sizes: list[int] = field(default_factory=lambda: [2, 25, 25, 1])  # the teacher's widths (= the student's)
    n_train: int = 10000  # training points u ~ U[-1, 1]^d (full batch)
    n_test: int = 1000
    noise_std: float = 0.0  # σ of Gaussian noise added to the targets
    student_init: str = "copy"  # copy (the teacher + init_perturbation U[-1, 1]) | random (the model's init)
    init_perturbation: float = 0.0  # δ, traced
    teacher_seed: int = 0  # the teacher is drawn from this seed, then made generic
    generic_gap: float = 1e-3  # δ of the genericity conditions (min |θ|, |b| gaps, distance from simple ratios)
    project_every: int = 0  # make the student generic again every n epochs (0: never)
    data_seed: int = 0


@dataclass
class IrisConfig:
    name: str = "iris"
    split_seed: int = 42  # shuffles the 150 samples before the train/test split
    test_fraction: float = 0.2  # 30 test, 120 training samples
    average_window: list[int] = field(default_factory=lambda: [500, 900])  # epochs of window_test_accuracy


@dataclass
class SineWaveConfig:
    name: str = "sine_wave"
    n_freqs: int = 51  # number of tasks (frequencies)
    omega_min: float = 0.1  # lowest angular frequency (rad per time unit)
    omega_max: float = 0.6  # highest angular frequency
    drive_time: float = 8.0  # time driven by the sine before the free-running phase
    train_time: float = 64.0  # free-running phase over which the loss is taken


@dataclass
class FlipFlopConfig:
    name: str = "flipflop"
    n_bits: int = 3  # inputs = outputs = bits
    n_steps: int = 64  # steps per trial
    n_trials: int = 64  # trials in the (fixed) data set
    pulse_prob: float = 0.5  # probability of a ±1 pulse per bit and step (every bit pulses at t = 0)
    data_seed: int = 0  # the trials are drawn once from this seed


@dataclass
class RegularizerConfig:
    name: str = "l1"  # none | l1 | l2 | elastic_net
    strength: float = 0.0  # λ
    l1_ratio: float = 1.0  # elastic_net mix: λ (r |θ| + (1 - r) θ²)
    targets: list[str] = field(default_factory=lambda: ["J"])  # parameter names the penalty acts on
    reduction: str = "mean"  # mean | sum over the targeted entries
    mode: str = "penalty"  # penalty (added to the loss) | proximal (soft-threshold after each update)
    rho: float = 0.0  # drr: weight ρ of its Σ w² term (per layer rescaled like λ)
    beta: float = 10.0  # drr: sharpness β of its Σ (1 - exp(-β|w|)) term
    activity: float = 0.0  # κ: adds κ · mean squared rate over the loss-weighted steps (models with rates: ctrnn)


@dataclass
class OptimizerConfig:
    name: str = "adam_lbfgs"  # adam | sgd | lbfgs | adam_lbfgs
    lr: float = 1e-3  # learning rate of the first-order stage
    steps: int = 1000  # steps of the first (or only) stage
    momentum: float = 0.9  # sgd only
    lbfgs_steps: int = 2000  # adam_lbfgs: iterations of the second stage
    loss_threshold: float = 1e-4  # adam_lbfgs: second stage runs only if the best first-stage loss is above
    lbfgs_tol: float = 0.0  # an L-BFGS stage stops once the gradient norm is <= this (0: runs all its steps)
    divergence_factor: float = 1e4  # a run diverges when its loss is non-finite or above factor x initial loss
    batch_size: int = 0  # 0: full batch; else minibatches of this size, reshuffled every epoch (last partial dropped)
    patience: int = 0  # minibatch training: stop after this many epochs without a lower epoch loss (0: never)


@dataclass
class FixedPointsConfig:
    enabled: bool = False  # find fixed points of the trained network for every condition (task input)
    n_perturbed: int = 49  # starts: Gaussian perturbations of the drive-phase end state ...
    perturbation_std: float = 0.5  # ... with this standard deviation
    n_sampled: int = 50  # starts: states at random times of the condition's trajectory
    tol: Optional[float] = None  # accept ‖F(x)‖ < tol; null: 1e-10 in float64, 1e-5 in float32
    max_iter: int = 200  # Levenberg–Marquardt iterations per start at most
    dedup_radius: float = 1e-2  # points closer than this are one fixed point
    track_starts: int = 8  # starts per tracked task during training, besides the previous sample's points


@dataclass
class SlowPointsConfig:
    enabled: bool = False  # also look for slow points: local minima of q = ½‖F‖² that are not fixed points
    tol: float = 1e-4  # keep minima with q below this


@dataclass
class PCAConfig:
    enabled: bool = False  # PCA of the train-phase states of all tasks
    n_components: int = 10
    skip_steps: int = 0  # leave out this many initial steps of every trajectory (a transient)
    rates: bool = False  # PCA of the rates tanh(x) rather than of x


@dataclass
class AnalysisConfig:
    name: str = "default"
    enabled: bool = True  # False: no spectrum tracking, no analysis.npz, no per-run figures
    eig_every: int = 50  # steps between eigenvalue samples of J (also the length of a jitted chunk)
    figures: bool = True  # draw per-run figures
    fixed_points: FixedPointsConfig = field(default_factory=FixedPointsConfig)
    slow_points: SlowPointsConfig = field(default_factory=SlowPointsConfig)
    pca: PCAConfig = field(default_factory=PCAConfig)
    track_tasks: list[int] = field(default_factory=list)  # task indices whose fixed points are found every eig_every steps


@dataclass
class Config:
    model: Any = MISSING
    task: Any = MISSING
    regularizer: RegularizerConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    analysis: AnalysisConfig = MISSING
    seed: int = 0  # one PRNG key per run: init, mask, data
    precision: str = "float32"  # float32 | float64 (turns on JAX x64 before any array exists)
    progress: bool = True  # progress bar on stderr
    compilation_cache: str = "auto"  # XLA's persistent cache: auto (~/.cache/rnn_sparsity/xla) | off | a folder


def register_configs() -> None:
    """Register the schemas under schema/<group>/ (so they are not listed as options of the group);
    a YAML option names its schema in its defaults as `- /schema/<group>@_here_: <name>`."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, name, node in [
        ("model", "ctrnn", CTRNNConfig),
        ("task", "sine_wave", SineWaveConfig),
        ("task", "flipflop", FlipFlopConfig),
        ("task", "teacher_student", TeacherStudentConfig),
        ("task", "mlp_teacher", MLPTeacherConfig),
        ("task", "iris", IrisConfig),
        ("model", "mlp", MLPConfig),
        ("model", "cnn", CNNConfig),
        ("model", "lowrank_linear", LowRankLinearConfig),
        ("task", "fast_decay", FastDecayConfig),
        ("regularizer", "regularizer", RegularizerConfig),
        ("optimizer", "optimizer", OptimizerConfig),
        ("analysis", "analysis", AnalysisConfig),
    ]:
        cs.store(group=f"schema/{group}", name=name, node=node)


register_configs()


# ------------------------------------------------------------------------------------------ checks
REGULARIZERS = ("none", "l1", "l2", "elastic_net", "drr")
OPTIMIZERS = ("adam", "sgd", "lbfgs", "adam_lbfgs")
DYNAMICS_MODELS = ("ctrnn",)


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(key, value, allowed)


def _positive(cfg: DictConfig, key: str) -> None:
    value = OmegaConf.select(cfg, key)
    _check(value > 0, key, value, "must be > 0")


def _one_of(cfg: DictConfig, key: str, options: tuple[str, ...]) -> None:
    value = OmegaConf.select(cfg, key)
    _check(value in options, key, value, f"must be one of {', '.join(options)}")


def _validate_ctrnn(cfg: DictConfig) -> None:
    for key in ("model.n_units", "model.dt", "model.tau", "model.gain"):
        _positive(cfg, key)
    s = cfg.model.sparsity
    _check(0.0 <= s < 1.0, "model.sparsity", s, "must satisfy 0 <= s < 1")
    _check(cfg.model.dt <= cfg.model.tau, "model.dt", cfg.model.dt,
           f"must be <= model.tau ({cfg.model.tau}) for a stable Euler step")


def _validate_sine_wave(cfg: DictConfig) -> None:
    for key in ("task.n_freqs", "task.omega_min", "task.omega_max", "task.train_time"):
        _positive(cfg, key)
    _check(cfg.task.drive_time >= 0, "task.drive_time", cfg.task.drive_time, "must be >= 0")
    _check(cfg.task.omega_max >= cfg.task.omega_min, "task.omega_max", cfg.task.omega_max,
           f"must be >= task.omega_min ({cfg.task.omega_min})")
    nyquist = 3.141592653589793 / cfg.model.dt
    _check(cfg.task.omega_max < nyquist, "task.omega_max", cfg.task.omega_max,
           f"must be below the Nyquist frequency pi/model.dt = {nyquist:.3g}")
    steps = cfg.task.train_time / cfg.model.dt
    _check(steps >= 2, "task.train_time", cfg.task.train_time, "must span at least 2 steps of model.dt")


def _validate_flipflop(cfg: DictConfig) -> None:
    for key in ("task.n_bits", "task.n_steps", "task.n_trials"):
        _positive(cfg, key)
    p = cfg.task.pulse_prob
    _check(0.0 < p <= 1.0, "task.pulse_prob", p, "must satisfy 0 < p <= 1")


def _validate_mlp(cfg: DictConfig) -> None:
    sizes = list(cfg.model.sizes)
    _check(len(sizes) >= 2 and all(w > 0 for w in sizes), "model.sizes", sizes,
           "must list at least the input and output widths, all > 0")
    io = TASK_IO.get(cfg.task.name, lambda task: None)(cfg.task)
    if io is not None:
        _check(sizes[0] == io[0], "model.sizes", sizes, f"must start with the task's input width {io[0]}")
        _check(sizes[-1] == io[1], "model.sizes", sizes, f"must end with the task's output width {io[1]}")
    _one_of(cfg, "model.activation", ("relu", "sigmoid", "tanh"))
    _one_of(cfg, "model.output_activation", ("same", "linear", "relu", "sigmoid", "tanh"))
    _positive(cfg, "model.init_scale")


def _validate_teacher_student(cfg: DictConfig) -> None:
    _one_of(cfg, "task.teacher", TEACHERS)
    _one_of(cfg, "task.activation", ("relu", "sigmoid", "tanh"))
    for key in ("task.n_train", "task.n_test"):
        _positive(cfg, key)
    _check(cfg.task.noise_std >= 0, "task.noise_std", cfg.task.noise_std, "must be >= 0")


def _validate_mlp_teacher(cfg: DictConfig) -> None:
    sizes = list(cfg.task.sizes)
    _check(len(sizes) >= 3 and all(w > 0 for w in sizes), "task.sizes", sizes,
           "must list input, at least one hidden and the output width, all > 0")
    for key in ("task.n_train", "task.n_test", "task.generic_gap"):
        _positive(cfg, key)
    _check(cfg.task.noise_std >= 0, "task.noise_std", cfg.task.noise_std, "must be >= 0")
    _check(cfg.task.init_perturbation >= 0, "task.init_perturbation", cfg.task.init_perturbation, "must be >= 0")
    _one_of(cfg, "task.student_init", ("copy", "random"))
    every = cfg.task.project_every
    _check(every >= 0, "task.project_every", every, "must be >= 0 (0: never)")
    if every:  # projections run between training chunks, which are analysis.eig_every steps (epochs) long
        _check(every % cfg.analysis.eig_every == 0, "task.project_every", every,
               f"must be a multiple of analysis.eig_every ({cfg.analysis.eig_every}): projections run between chunks")
    model = cfg.model
    _check(list(model.sizes) == sizes, "model.sizes", list(model.sizes), f"must equal task.sizes {sizes}")
    _check(model.bias and model.activation == "tanh" and model.output_activation == "linear", "model.activation",
           model.activation, "task=mlp_teacher needs a tanh student with biases and a linear output "
           "(model.activation=tanh model.bias=true model.output_activation=linear)")


def _validate_cnn(cfg: DictConfig) -> None:
    channels, kernels = list(cfg.model.channels), list(cfg.model.kernels)
    _check(len(channels) == len(kernels) + 1 and all(c > 0 for c in channels), "model.channels", channels,
           f"must list one more channel count than model.kernels ({len(kernels)} layers), all > 0")
    _check(all(k > 0 for k in kernels), "model.kernels", kernels, "every kernel size must be > 0")
    io = TASK_IO.get(cfg.task.name, lambda task: None)(cfg.task)
    if io is not None:
        _check(math.prod(kernels) == io[0], "model.kernels", kernels,
               f"must multiply to the task's input length {io[0]} (stride = kernel, one output position)")
        _check(channels[0] == 1 and channels[-1] == io[1], "model.channels", channels,
               f"must start with 1 and end with the task's output width {io[1]}")
    _one_of(cfg, "model.activation", ("relu", "sigmoid", "tanh"))
    _positive(cfg, "model.init_scale")


def _validate_iris(cfg: DictConfig) -> None:
    f = cfg.task.test_fraction
    _check(0.0 < f < 1.0, "task.test_fraction", f, "must satisfy 0 < fraction < 1")
    window = list(cfg.task.average_window)
    _check(len(window) == 2 and 0 <= window[0] <= window[1], "task.average_window", window,
           "must be [first epoch, last epoch] with 0 <= first <= last")


def _validate_lowrank_linear(cfg: DictConfig) -> None:
    n, r = cfg.model.n_units, cfg.model.rank_fraction
    _check(n >= 2, "model.n_units", n, "must be >= 2")
    _check(0.0 < r <= 1.0, "model.rank_fraction", r, "must satisfy 0 < rank_fraction <= 1")
    _check(round(n * r) >= 1, "model.rank_fraction", r, f"gives rank round({n} * {r}) = 0: must give at least 1")
    _positive(cfg, "model.tau")


def _validate_fast_decay(cfg: DictConfig) -> None:
    for key in ("task.alpha", "task.beta"):
        value = OmegaConf.select(cfg, key)
        _check(value >= 0, key, value, "must be >= 0")


MODEL_CHECKS = {"ctrnn": _validate_ctrnn, "mlp": _validate_mlp, "cnn": _validate_cnn,
                "lowrank_linear": _validate_lowrank_linear}
TASK_CHECKS = {"sine_wave": _validate_sine_wave, "flipflop": _validate_flipflop,
               "teacher_student": _validate_teacher_student, "mlp_teacher": _validate_mlp_teacher,
               "iris": _validate_iris, "fast_decay": _validate_fast_decay}
TEACHERS = ("baseline_cnn", "multichannel_cnn", "split_filter_cnn")
# the models each task can train
RATE_MODELS = ("ctrnn",)  # models with firing rates, which regularizer.activity can penalise
TASK_MODELS = {"sine_wave": ("ctrnn",), "flipflop": ("ctrnn",), "teacher_student": ("mlp", "cnn"), "mlp_teacher": ("mlp",),
               "iris": ("mlp",), "fast_decay": ("lowrank_linear",)}
# (input width, output width) of tasks with static inputs, for models that list their sizes
TASK_IO = {"teacher_student": lambda task: (12, 1), "iris": lambda task: (4, 3), "mlp_teacher": lambda task: (task.sizes[0], task.sizes[-1])}
# number of training samples (the minibatch axis) of each task
TASK_SIZES = {"sine_wave": lambda task: task.n_freqs, "flipflop": lambda task: task.n_trials,
              "teacher_student": lambda task: task.n_train, "mlp_teacher": lambda task: task.n_train,
              "iris": lambda task: 150 - round(task.test_fraction * 150)}
# number of conditions (static inputs under which fixed points are sought) of each dynamical task
TASK_CONDITIONS = {"sine_wave": lambda task: task.n_freqs, "flipflop": lambda task: 1}


def _leaves(node: Any, prefix: str = ""):
    """(dotted key, value) of every scalar in a config container (lists indexed: key[0])."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for name, value in items:
        key = f"{prefix}.{name}" if isinstance(node, dict) and prefix else (
            f"{prefix}[{name}]" if not isinstance(node, dict) else str(name))
        if isinstance(value, (dict, list)):
            yield from _leaves(value, key)
        else:
            yield key, value


KEY_SEEDS = 2**32  # JAX keeps 32 bits of a seed without x64: seed=2**32 would silently be seed=0


def _validate_scalars(cfg: DictConfig) -> None:
    """Checks that hold for every key of every component: floats are finite (NaN and ±inf would only
    show up as a diverged or failed run after compiling), seeds are >= 0, and the run's PRNG seed is
    below 2**32 (JAX keeps only its low 32 bits in float32 runs and overflows beyond int64)."""
    for key, value in _leaves(OmegaConf.to_container(cfg, resolve=True)):
        if isinstance(value, float):
            _check(math.isfinite(value), key, value, "must be a finite number (not nan or inf)")
        if key.rsplit(".", 1)[-1].endswith("seed") and isinstance(value, int) and not isinstance(value, bool):
            _check(value >= 0, key, value, "must be >= 0")
    _check(cfg.seed < KEY_SEEDS, "seed", cfg.seed, f"must be < 2**32 = {KEY_SEEDS} (JAX keeps 32 bits of a seed)")


def validate(cfg: DictConfig) -> None:
    """Check every range before any compute; raise ConfigError on the first bad value."""
    _validate_scalars(cfg)
    _one_of(cfg, "precision", ("float32", "float64"))
    _one_of(cfg, "model.name", tuple(MODEL_CHECKS))
    _one_of(cfg, "task.name", tuple(TASK_CHECKS))
    _check(cfg.model.name in TASK_MODELS[cfg.task.name], "model.name", cfg.model.name,
           f"task={cfg.task.name} needs model={' or '.join(TASK_MODELS[cfg.task.name])}")
    MODEL_CHECKS[cfg.model.name](cfg)
    TASK_CHECKS[cfg.task.name](cfg)

    reg = cfg.regularizer
    _one_of(cfg, "regularizer.name", REGULARIZERS)
    _check(reg.strength >= 0, "regularizer.strength", reg.strength, "must be >= 0")
    _check(reg.activity >= 0, "regularizer.activity", reg.activity, "must be >= 0")
    _check(reg.activity == 0 or cfg.model.name in RATE_MODELS, "regularizer.activity", reg.activity,
           f"must be 0 for model={cfg.model.name}: only {', '.join(RATE_MODELS)} has rates to penalise")
    _check(0.0 <= reg.l1_ratio <= 1.0, "regularizer.l1_ratio", reg.l1_ratio, "must satisfy 0 <= r <= 1")
    _one_of(cfg, "regularizer.reduction", ("mean", "sum"))
    _one_of(cfg, "regularizer.mode", ("penalty", "proximal"))
    if reg.name == "drr":
        _check(reg.mode == "penalty", "regularizer.mode", reg.mode, "drr has no proximal operator: use penalty")
        _check(reg.rho >= 0, "regularizer.rho", reg.rho, "must be >= 0")
        _positive(cfg, "regularizer.beta")
    _check(len(reg.targets) > 0, "regularizer.targets", list(reg.targets), "must name at least one parameter")

    opt = cfg.optimizer
    _one_of(cfg, "optimizer.name", OPTIMIZERS)
    for key in ("optimizer.lr", "optimizer.steps", "optimizer.divergence_factor"):
        _positive(cfg, key)
    _check(0.0 <= opt.momentum < 1.0, "optimizer.momentum", opt.momentum, "must satisfy 0 <= momentum < 1")
    _check(opt.lbfgs_steps >= 0, "optimizer.lbfgs_steps", opt.lbfgs_steps, "must be >= 0")
    _check(opt.loss_threshold >= 0, "optimizer.loss_threshold", opt.loss_threshold, "must be >= 0")
    _check(opt.lbfgs_tol >= 0, "optimizer.lbfgs_tol", opt.lbfgs_tol, "must be >= 0")
    _check(opt.batch_size >= 0, "optimizer.batch_size", opt.batch_size, "must be >= 0 (0: full batch)")
    _check(opt.batch_size == 0 or opt.name in ("sgd", "adam"), "optimizer.batch_size", opt.batch_size,
           f"minibatches need a first-order optimizer (sgd, adam), not {opt.name}: set 0 for full batch")
    _check(opt.patience >= 0, "optimizer.patience", opt.patience, "must be >= 0 (0: no early stopping)")
    n_train = TASK_SIZES.get(cfg.task.name, lambda task: None)(cfg.task)
    if opt.batch_size and n_train is not None:
        _check(opt.batch_size <= n_train, "optimizer.batch_size", opt.batch_size,
               f"must be <= the number of training samples ({n_train})")

    _validate_analysis(cfg)


def _validate_analysis(cfg: DictConfig) -> None:
    _positive(cfg, "analysis.eig_every")
    fp, sp, pca = cfg.analysis.fixed_points, cfg.analysis.slow_points, cfg.analysis.pca
    for key in ("n_perturbed", "n_sampled", "track_starts"):
        value = fp[key]
        _check(value >= 0, f"analysis.fixed_points.{key}", value, "must be >= 0")
    for key in ("perturbation_std", "dedup_radius"):
        _check(fp[key] >= 0, f"analysis.fixed_points.{key}", fp[key], "must be >= 0")
    _check(fp.tol is None or fp.tol > 0, "analysis.fixed_points.tol", fp.tol, "must be > 0 (or null for the dtype's default)")
    _positive(cfg, "analysis.fixed_points.max_iter")
    _positive(cfg, "analysis.slow_points.tol")
    _positive(cfg, "analysis.pca.n_components")
    _check(pca.skip_steps >= 0, "analysis.pca.skip_steps", pca.skip_steps, "must be >= 0")
    wants_dynamics = fp.enabled or sp.enabled or pca.enabled or len(cfg.analysis.track_tasks) > 0
    if wants_dynamics:
        _check(cfg.model.name in DYNAMICS_MODELS, "model.name", cfg.model.name,
               f"fixed points, slow points and PCA need a recurrent model: one of {', '.join(DYNAMICS_MODELS)}")
        _check(cfg.analysis.enabled, "analysis.enabled", cfg.analysis.enabled,
               "must be true when fixed points, slow points, PCA or tracking are asked for")
    n_conditions = TASK_CONDITIONS[cfg.task.name](cfg.task) if cfg.task.name in TASK_CONDITIONS else 0
    for index in cfg.analysis.track_tasks:
        _check(0 <= index < n_conditions, "analysis.track_tasks", list(cfg.analysis.track_tasks),
               f"task indices must lie in [0, {n_conditions})")

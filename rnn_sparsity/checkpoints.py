"""Checkpoints inside a run: a killed run resumes where it was, and ends as if it had never stopped.

Every `checkpoint.every_s` seconds of training (0: never), right after a chunk (its projection done and
its probes sampled), a fit writes <run dir>/checkpoint/<stage><chunks done>.npz: one NumPy archive
written under a temporary name and renamed when complete (artifacts.atomic_path), so a kill mid-write
leaves the previous checkpoint as the newest complete one, and two writers never share a temporary
name; older ones are removed after. The archive holds plain arrays only:

    leaf/<i>   the TrainState's leaves (parameters, the current stage's optimizer state, step, best
               parameters and loss, the minibatch data key as key_data, early-stopping counters:
               everything the jitted chunks carry)
    host       a JSON document (UTF-8 bytes as uint8): the position (stage, chunks of that stage done),
               the history rows so far and each probe's samples (`Probe.checkpointed` names them), as
               typed nodes ({"int": 3}, {"list": [...]}, {"array": ["data/<j>", offset, shape]} ...) so that lists,
               tuples, dicts, ints, floats, NumPy scalars and a NumPy Generator's state come back as
               they were saved
    data/<j>   the arrays the host document refers to, flattened and joined, one member per dtype
               (numbers and fixed-width strings, never objects): a probe's thousands of small arrays
               are a few members, not thousands

Why no pickle: a checkpoint sits in a shared sweep directory, and unpickling runs whatever code the
file names, so a planted file would run as whoever reruns the sweep. The archive is read with
`np.load(allow_pickle=False)` and the JSON only ever builds data. A value no node type holds fails the
save, naming the probe and attribute, rather than falling back to pickle.

A rerun of the same config in the same run directory (the resume sweeper, or `rnn-sparsity` pointed at
it) loads the newest one whose TrainState matches the run's shapes and continues with the same chunks
from the same state, so its metrics (but wall_s), history and params equal an uninterrupted run's.
A damaged checkpoint (the folder unreadable or a file, the archive truncated or garbled, a member
missing, a leaf of another shape) is reported in one warning line and removed, and the run starts from
the beginning. artifacts.begin_run removes the checkpoint of another config, artifacts.mark_done that
of a finished run. A vmapped batch (fit.fit of a Program of several members) saves every member at the same moment, from one
transfer of the batched state, each into its own run directory, and resumes only when every member has
a checkpoint at the same position; a checkpoint is thus the same for a serial run and a member,
whichever launcher resumes it.

On a cluster the scheduler warns a job before it ends it: submitit (hydra/launcher=submitit_slurm or
vmap_slurm) asks SLURM for SIGUSR2 `signal_delay_s` before the time limit and on preemption, and its
handler requeues the job and exits at once. While a fit trains, `held_requeue_signal` keeps that signal
until the next chunk boundary: the fit writes a checkpoint there (due() is true once it is held), then
`hand_over` passes the signal to submitit's handler, so the requeued job resumes from where it stopped,
not from the last periodic checkpoint. Outside a fit, and in processes without such a handler, nothing
changes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import artifacts
from .cluster_entry import EARLY, requeue_signal
from .contracts import Probe

log = logging.getLogger(__name__)

FORMAT = 1  # the archive's layout; a checkpoint in another is not this code's to resume
SUFFIX = ".npz"  # <stage:03d><chunks:07d>.npz, what artifacts.CHECKPOINT_STEP matches
BIT_GENERATORS = {cls.__name__: cls for cls in (np.random.PCG64, np.random.PCG64DXSM, np.random.Philox,
                                                 np.random.SFC64, np.random.MT19937)}


class Resume(NamedTuple):
    """Where a fit resumes: stage `stage` with `chunks` of its chunks done, the state after them, the
    history rows (records_to_rows) so far and each probe's samples (`restore_probes` puts them back)."""
    stage: int
    chunks: int
    state: Any
    rows: list[dict]
    probes: list[dict]

    def restore_probes(self, probes: Sequence[Probe]) -> None:
        if len(probes) != len(self.probes):
            raise ValueError(f"the checkpoint has {len(self.probes)} probes' samples, the run {len(probes)} probes")
        for probe, saved in zip(probes, self.probes):
            if set(saved) != set(probe.checkpointed):
                raise ValueError(f"the checkpoint has {sorted(saved)} of {type(probe).__name__}, which "
                                 f"checkpoints {sorted(probe.checkpointed)}")
            for name in probe.checkpointed:
                setattr(probe, name, saved[name])


def is_key(leaf) -> bool:
    return jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def state_template(trainer, key: jax.Array, hyper: dict, stage: int):
    """Shapes and dtypes (jax.ShapeDtypeStruct) of a TrainState in stage `stage`: what a restored one
    must match (the optimizer state's structure depends on the stage)."""
    return jax.eval_shape(lambda k, h: trainer.begin_stage(stage, trainer.init(k, h), h), key, hyper)


class Checkpoints:
    """The checkpoints of one run directory: `due()` every `every_s` seconds, `save` after a chunk,
    `load` before the first."""

    def __init__(self, run_dir: str | Path, every_s: float, clock=time.monotonic):
        self.run_dir, self.every_s, self.clock = Path(run_dir), float(every_s), clock
        self.folder = self.run_dir / artifacts.CHECKPOINT
        self.last = clock()

    def due(self) -> bool:
        """Time for a checkpoint: every `every_s` seconds, and at once when a requeue signal is held."""
        return self.every_s > 0 and (bool(HELD) or self.clock() - self.last >= self.every_s)

    def save(self, stage: int, chunks: int, state, rows: Sequence[dict], probes: Sequence[Probe],
             prune: bool = True) -> Path:
        """Write the state (host arrays, one run's) after `chunks` chunks of stage `stage`; with `prune`
        then remove the older checkpoints. A probe value no host node holds raises Unstorable before
        anything is written."""
        members = archive_members(stage, chunks, state, rows, probes)
        path = self.folder / f"{stage:03d}{chunks:07d}{SUFFIX}"  # names sort as the fit progresses
        self.folder.mkdir(parents=True, exist_ok=True)
        with artifacts.atomic_path(path) as tmp, open(tmp, "wb") as file:  # replaces one of an earlier attempt
            np.savez(file, **members)
        if prune:
            self.prune(path)
        self.last = self.clock()
        return path

    def prune(self, keep: Path) -> None:
        """Remove every entry of the checkpoint folder but `keep` (older checkpoints, an older format's
        folders). Temporary files stay: one may be another writer's in flight; the folder goes as a
        whole when the run ends."""
        for old in self.folder.iterdir():
            if old == keep or artifacts.is_temp_file(old):
                continue
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)

    def discard(self) -> None:
        artifacts.remove_checkpoint(self.run_dir)

    def load(self, template: Callable[[int], Any], name: str | None = None) -> Resume | None:
        """The newest checkpoint (or the one at position `name`, artifacts.checkpoint_names) as a
        Resume, or None when there is none. One that cannot be read or does not fit this run is
        reported in one line, every checkpoint is removed, and the run starts from the beginning.
        `template(stage)`: the run's TrainState shapes in that stage (`state_template`)."""
        if problem := folder_problem(self.folder):
            return self.start_over(self.folder, problem)
        path = artifacts.latest_checkpoint(self.run_dir) if name is None else self.folder / f"{name}{SUFFIX}"
        if path is None:
            return None
        try:
            resume = read_archive(path, template)
        except Exception as err:  # noqa: BLE001 (whatever is wrong with it, it is not this run's to resume)
            return self.start_over(path, one_line(err))
        log.info("resuming from checkpoint %s: step %d (stage %d, %d chunks done)", path, int(resume.state.step),
                 resume.stage, resume.chunks)
        return resume

    def start_over(self, path: Path, reason: str) -> None:
        """Report a checkpoint that cannot be resumed (one line, no traceback) and remove them all."""
        log.warning("checkpoint %s does not fit this run (%s); it starts from the beginning", path, reason)
        self.discard()
        return None


def folder_problem(folder: Path) -> str:
    """Why a run's checkpoint folder cannot hold its checkpoints; '' when it can (or does not exist)."""
    if not os.path.lexists(folder):
        return ""
    if folder.is_symlink() or not folder.is_dir():
        return "not a directory"
    try:
        os.listdir(folder)
    except OSError as err:
        return f"unreadable: {err.strerror or type(err).__name__}"
    return ""


def one_line(err: BaseException) -> str:
    """An error as one short line: its type and the first line of its message."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__


# ------------------------------------------------------------------------ a cluster's requeue signal
HELD: list[tuple[Callable, int, Any]] = []  # a requeue signal that came during a fit: (handler, signum, frame)


@contextmanager
def held_requeue_signal():
    """While a fit trains: hold the requeue signal (when its handler is a Python one: submitit's) until
    `hand_over`, which the fit calls at its chunk boundaries after writing the checkpoint the held signal
    made due. A signal still held when the fit ends is handed over then. One that came while the job's
    process started, before submitit's handler was installed (cluster_entry.EARLY), is held from the start."""
    signum = requeue_signal()
    handler = signal.getsignal(signum)
    if not callable(handler) or threading.current_thread() is not threading.main_thread():
        yield
        return
    if EARLY:
        EARLY.clear()
        HELD.append((handler, signum, None))
        log.warning("requeue signal %s came while the job started: held until the first checkpoint",
                    signal.Signals(signum).name)
    signal.signal(signum, lambda number, frame: HELD.append((handler, number, frame)))
    try:
        yield
    finally:
        signal.signal(signum, handler)
        hand_over()


def hand_over() -> None:
    """Pass a held requeue signal to its handler (submitit's requeues the job and raises SystemExit)."""
    if HELD:
        handler, signum, frame = HELD.pop()
        HELD.clear()
        signal.signal(signum, handler)
        log.warning("requeue signal %s: handing over to the cluster's handler (the run resumes from its "
                    "checkpoint)", signal.Signals(signum).name)
        handler(signum, frame)


# ------------------------------------------------------------------------------------ the archive
class Unstorable(TypeError):
    """A value that a checkpoint's host document has no node for (it is never pickled instead)."""


def archive_members(stage: int, chunks: int, state, rows: Sequence[dict], probes: Sequence[Probe]) -> dict:
    """The arrays of one checkpoint's .npz: leaf/<i> the TrainState's leaves, host the JSON document
    (position, history rows, probes' samples), data/<j> the arrays it refers to, joined by dtype."""
    leaves = [np.asarray(jax.random.key_data(leaf) if is_key(leaf) else leaf) for leaf in jax.tree.leaves(state)]
    encoder = HostEncoder()
    document = {"format": FORMAT, "stage": int(stage), "chunks": int(chunks), "leaves": len(leaves),
                "rows": encoder.encode(list(rows), "the history rows"),
                "probes": [probe_nodes(probe, encoder) for probe in probes]}
    host = np.frombuffer(json.dumps(document, allow_nan=False).encode(), np.uint8)
    return {"host": host, **{f"leaf/{i:05d}": leaf for i, leaf in enumerate(leaves)}, **encoder.arrays}


def probe_nodes(probe: Probe, encoder: HostEncoder) -> dict[str, Any]:
    """The host nodes of a probe's `checkpointed` attributes; Unstorable names the probe and attribute."""
    nodes = {}
    for name in probe.checkpointed:
        try:
            nodes[name] = encoder.encode(getattr(probe, name), name)
        except Unstorable as err:
            raise Unstorable(f"a checkpoint cannot store {type(probe).__name__}.{name}: {err} (it stores None, "
                             "bool, int, float, str, NumPy arrays and scalars of numbers or strings, JAX arrays, "
                             "lists, tuples and dicts of these, and NumPy Generators)") from None
    return nodes


class HostEncoder:
    """Host values -> the typed JSON nodes of a checkpoint's host document ({"int": 3}, {"list": [...]},
    {"array": ["data/0", offset, shape]} ...), collecting the arrays the nodes refer to, flattened, in
    one list per dtype (`arrays` joins each into one member). Types are matched exactly, so each
    value comes back as the type it was (`decode`)."""

    def __init__(self):
        self.parts: dict[np.dtype, list[np.ndarray]] = {}
        self.sizes: dict[np.dtype, int] = {}

    def encode(self, value, where: str) -> dict:
        """The node of `value`; Unstorable (saying `where` it is: "rows[3][2]") for a type no node holds."""
        kind = type(value)
        if value is None:
            return {"null": None}
        if kind in (bool, int, str):
            return {kind.__name__: value}
        if kind is float:
            return {"float": value.hex()}  # exact, NaN and ±inf included
        if kind is np.ndarray:
            return {"array": self.array(value, where)}
        if isinstance(value, np.generic):
            return {"scalar": self.array(np.asarray(value), where)}
        if kind in (list, tuple):
            return {kind.__name__: [self.encode(item, f"{where}[{i}]") for i, item in enumerate(value)]}
        if kind is dict:
            return {"dict": [[self.encode(k, f"a key of {where}"), self.encode(v, f"{where}[{k!r}]")]
                             for k, v in value.items()]}
        if kind is np.random.Generator:
            return {"generator": self.generator(value, where)}
        if isinstance(value, jax.Array) and not is_key(value):
            return {"jax": self.array(np.asarray(value), where)}
        raise Unstorable(f"{where} is a {kind.__module__}.{kind.__qualname__}")

    def array(self, value: np.ndarray, where: str) -> list:
        """Where the array will lie: [its dtype's member, the offset in it, its shape]."""
        if value.dtype.hasobject:
            raise Unstorable(f"{where} is an array of Python objects")
        parts = self.parts.setdefault(value.dtype, [])
        member, offset = f"data/{list(self.parts).index(value.dtype)}", self.sizes.get(value.dtype, 0)
        parts.append(value.ravel())
        self.sizes[value.dtype] = offset + value.size
        return [member, offset, list(value.shape)]

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """The data/<j> members: each dtype's arrays, flattened and joined."""
        return {f"data/{j}": np.concatenate(parts) for j, parts in enumerate(self.parts.values())}

    def generator(self, rng: np.random.Generator, where: str) -> dict:
        """A Generator's bit generator state and the seed sequence it was made from (for spawn())."""
        bits, seeds = rng.bit_generator, rng.bit_generator.seed_seq
        if type(bits).__name__ not in BIT_GENERATORS or type(seeds) is not np.random.SeedSequence:
            raise Unstorable(f"{where} is a Generator of {type(bits).__name__} seeded by {type(seeds).__name__}")
        return {"state": self.encode(bits.state, where), "seed_seq": self.encode(seeds.state, where)}


PLAIN = {"bool": bool, "int": int, "str": str}


def decode(node, data: dict[str, np.ndarray]) -> Any:
    """The value a host node stands for (HostEncoder.encode's inverse), its arrays cut from `data` (the
    data/<j> members); a ValueError (or KeyError, TypeError) for anything else. Builds data only."""
    if type(node) is not dict or len(node) != 1:
        raise ValueError(f"not a host node: {str(node)[:60]}")
    (tag, body), = node.items()
    if tag == "null" and body is None:
        return None
    if tag in PLAIN and type(body) is PLAIN[tag]:
        return body
    if tag == "float" and type(body) is str:
        return float.fromhex(body)
    if tag in ("array", "scalar", "jax") and type(body) is list:
        value = stored_array(body, data)
        return value if tag == "array" else value[()] if tag == "scalar" else jnp.asarray(value)
    if tag in ("list", "tuple") and type(body) is list:
        items = [decode(item, data) for item in body]
        return items if tag == "list" else tuple(items)
    if tag == "dict" and type(body) is list:
        return {decode(k, data): decode(v, data) for k, v in body}
    if tag == "generator" and type(body) is dict:
        return make_generator(decode(body["state"], data), decode(body["seed_seq"], data))
    raise ValueError(f"not a host node: {tag!r}")


def stored_array(where: list, data: dict[str, np.ndarray]) -> np.ndarray:
    """The array at [member, offset, shape] of the joined data members, as a copy of its own."""
    member, offset, shape = where
    flat = data[member]
    if type(offset) is not int or type(shape) is not list or not all(type(n) is int and n >= 0 for n in shape):
        raise ValueError(f"not an array's place: {str(where)[:60]}")
    end = offset + math.prod(shape)
    if flat.ndim != 1 or not 0 <= offset <= end <= len(flat):
        raise ValueError(f"{member} holds {flat.shape} entries, not [{offset}, {end})")
    return flat[offset:end].reshape(shape).copy()


def make_generator(state: dict, seed_seq: dict) -> np.random.Generator:
    """A Generator of a known bit generator, made from its seed sequence, in the state it was saved."""
    bits = BIT_GENERATORS[state["bit_generator"]](np.random.SeedSequence(**seed_seq))
    bits.state = state
    return np.random.Generator(bits)


def read_archive(path: Path, template: Callable[[int], Any]) -> Resume:
    """A checkpoint archive as a Resume, its state checked against `template(stage)`. Read without
    pickle: a file holding one (or an array of objects) raises, as does anything missing or misshapen."""
    archive = np.load(path, allow_pickle=False)
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError("a single array, not a checkpoint archive")
    with archive:
        document = json.loads(archive["host"].tobytes().decode())
        if type(document) is not dict or document.get("format") != FORMAT:
            raise ValueError(f"not a host document of format {FORMAT}")
        stage, chunks, n_leaves = (document[k] for k in ("stage", "chunks", "leaves"))
        if not all(type(v) is int for v in (stage, chunks, n_leaves)):
            raise ValueError("its stage, chunks and leaf count are not all integers")
        state = restore_state(template(stage), [archive[f"leaf/{i:05d}"] for i in range(n_leaves)])
        data = {name: archive[name] for name in archive.files if name.startswith("data/")}
        rows = decode(document["rows"], data)
        probes = [{name: decode(node, data) for name, node in saved.items()} for saved in document["probes"]]
    return Resume(stage, chunks, state, rows, probes)


def restore_state(template, leaves: Sequence[np.ndarray]):
    """The TrainState of `template`'s structure from its stored leaves (keys rewrapped); a ValueError
    when their number differs or a leaf's shape or dtype does."""
    specs, treedef = jax.tree.flatten(template)
    if len(leaves) != len(specs):
        raise ValueError(f"{len(leaves)} leaves stored, the run's state has {len(specs)}")
    out = []
    for i, (spec, value) in enumerate(zip(specs, leaves)):
        restored = jax.random.wrap_key_data(jnp.asarray(value)) if is_key(spec) else jnp.asarray(value)
        if restored.shape != spec.shape or restored.dtype != spec.dtype:
            raise ValueError(f"leaf {i}: stored {restored.shape} {restored.dtype}, the run has {spec.shape} {spec.dtype}")
        out.append(restored)
    return jax.tree.unflatten(treedef, out)

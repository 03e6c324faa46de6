"""`hydra/launcher=vmap_slurm`: the vmap launcher's cluster mode; each vmapped group (or each batch of
`batch_size` members of one) is one SLURM job, submitted with submitit (rnn_sparsity/cluster.py).

    rnn-sparsity -m sweeps=demo hydra/launcher=vmap_slurm hydra.launcher.partition=gpu \\
        hydra.launcher.gpus_per_node=1 hydra.launcher.timeout_min=120

Jobs are composed, numbered and given their run directories and `.hydra/` records here, as by the vmap
launcher, whose Hydra contracts hold the same way: callbacks fire here, on_job_start before the jobs are
submitted and on_job_end with each job's real return once they have all ended; each SLURM job takes
Hydra's state (a user's resolvers) to its node and trains its runs with their env_set (and chdir) there.
The training runs on the nodes, which must see the sweep directory (a shared file system) and this
Python environment. A job SLURM preempts or times out checkpoints its runs and is requeued (at
most max_num_timeout times for time limits); one cancelled for good is resubmitted by running the
same sweep command again, and resumes. cluster=local runs the same jobs through submitit's local
executor on this machine (no SLURM needed).

No `from __future__ import annotations`, and neither JAX nor rnn_sparsity is imported at import time
(Hydra imports every plugin at start).
"""



from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from .vmap_launcher import VmapLauncher


@dataclass
class VmapSlurmLauncherConf:
    _target_: str = "hydra_plugins.rnn_sparsity_vmap.vmap_slurm_launcher.VmapSlurmLauncher"
    # members per SLURM job; null: one job per group, cut on the node into batches that fit its memory
    batch_size: Optional[int] = None
    cluster: str = "slurm"  # slurm | local (submitit's local executor: the same jobs, as processes here)
    submitit_folder: str = "${hydra.sweep.dir}/.submitit/%j"  # each job's sbatch script, logs and pickles
    name: str = "${hydra.job.name}"
    partition: Optional[str] = None
    qos: Optional[str] = None
    account: Optional[str] = None
    constraint: Optional[str] = None
    timeout_min: int = 60  # the job's time limit
    cpus_per_task: Optional[int] = None
    gpus_per_node: Optional[int] = None
    mem_gb: Optional[int] = None
    signal_delay_s: int = 120  # SIGUSR2 this long before the time limit: checkpoint, then requeue
    max_num_timeout: int = 3  # requeues after reaching the time limit (preemptions are not counted)
    setup: Optional[List[str]] = None  # shell lines run in the job before Python (module load ..., source ...)
    additional_parameters: Dict[str, Any] = field(default_factory=dict)  # any other sbatch option
    poll_s: float = 2.0  # how often the submitter looks at its jobs


ConfigStore.instance().store(group="hydra/launcher", name="vmap_slurm", node=VmapSlurmLauncherConf,
                             provider="rnn_sparsity")


class VmapSlurmLauncher(VmapLauncher):
    name = "vmap_slurm"

    def __init__(self, batch_size: Optional[int] = None, **cluster: Any) -> None:
        super().__init__(batch_size=batch_size, progress=False)  # no bar on a node: one log line per chunk
        from rnn_sparsity.cluster import check_cluster  # no JAX there

        check_cluster(cluster["cluster"])
        self.cluster = {"batch_size": self.batch_size, **cluster}

    def train(self, jobs: list) -> None:
        """Every job's on_job_start, then all of them submitted at once (rnn_sparsity.cluster), then, once
        every cluster job has ended, every job's on_job_end with its real return."""
        from rnn_sparsity.cluster import run_on_cluster

        for job in jobs:
            self.start(job)
        cluster = {key: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
                   for key, value in self.cluster.items()}
        outcomes = run_on_cluster([job.cfg for job in jobs], [job.run_dir for job in jobs],
                                  [job.log_file for job in jobs], cluster,
                                  fingerprints=[job.fingerprint for job in jobs], places=[job.place for job in jobs])
        for job, outcome in zip(jobs, outcomes):
            self.end(job, outcome)

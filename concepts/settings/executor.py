"""``executor``: where the per-class tasks of `concepts run` go (this process, worker processes, Slurm)."""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from .base import Section, setting


class ExecutorSettings(Section):
    """How classes are spread over processes or Slurm jobs. Nothing here changes a result."""

    section = "executor"

    kind: Literal["local", "slurm"] = setting("local", "local processes or Slurm job arrays", flag="--executor",
                                              hashed=False)
    workers: Union[Annotated[int, Field(ge=1)], Literal["auto"]] = setting(
        "auto", "local worker processes: auto (one per GPU) or N", hashed=False)
    classes_per_task: int = setting(10, "classes per task (the model loads once per task)", ge=1, hashed=False)
    threads: Union[int, None] = setting(None, "torch CPU threads per worker (default: torch's)", ge=1,
                                        hashed=False)
    partition: Union[str, None] = setting(None, "Slurm partition", hashed=False)
    gpus_per_task: int = setting(0, "GPUs per Slurm task", ge=0, hashed=False)
    cpus_per_task: int = setting(2, "CPUs per Slurm task", ge=1, hashed=False)
    mem_gb: Union[float, None] = setting(None, "memory per Slurm task (GiB)", gt=0, hashed=False)
    timeout_min: int = setting(60, "time limit per Slurm task (minutes)", ge=1, hashed=False)
    array_parallelism: int = setting(64, "Slurm array tasks running at once", ge=1, hashed=False)
    account: Union[str, None] = setting(None, "Slurm account", hashed=False)
    qos: Union[str, None] = setting(None, "Slurm QOS", hashed=False)
    setup: tuple[str, ...] = setting((), "shell lines run before each Slurm job (module load ...)", hashed=False,
                                     stage_cli=False, split=False)
    python: Union[str, None] = setting(None, "interpreter on the Slurm nodes (default: this one)", hashed=False,
                                       stage_cli=False)

"""torchrun support: process group set-up and the few collectives the trainer needs.

``edgecodec train`` started by ``torchrun --nproc_per_node N`` (WORLD_SIZE > 1 in the environment)
joins a process group: NCCL when CUDA is available, else gloo. Every helper here is a no-op in a
single process, so the trainer calls them unconditionally.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this process created the process group (and destroys it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def setup(device: str = "auto") -> DistInfo:
    """Pick the device and, under torchrun, join the process group."""
    if device not in ("auto", "cpu", "cuda"):  # a misspelt device must not train on the CPU in silence
        raise ValueError(f"train.device must be auto, cpu or cuda, not {device!r}")
    want_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if want_cuda and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but CUDA is not available")
    world = env_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if want_cuda:
        torch.cuda.set_device(local_rank if world > 1 else torch.cuda.current_device())
        dev = torch.device("cuda", torch.cuda.current_device())
    else:
        dev = torch.device("cpu")
    if world <= 1:
        return DistInfo(device=dev)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
        owns = True
    info = DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, device=dev,
                    owns_group=owns)
    log.info("rank %d of %d on %s (%s)", info.rank, info.world_size, dev, dist.get_backend())
    return info


def teardown(info: DistInfo) -> None:
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_grads(info: DistInfo, params: Iterable[nn.Parameter]) -> None:
    """Average gradients over ranks, for parameters outside DistributedDataParallel
    (entropy-bottleneck quantiles, discriminator)."""
    if not info.enabled:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(info.world_size)


def broadcast_module(info: DistInfo, module: nn.Module, buffers_only: bool = False) -> None:
    """Copy rank 0's parameters and/or buffers to every rank, in place."""
    if not info.enabled:
        return
    tensors = list(module.buffers()) if buffers_only else [*module.parameters(), *module.buffers()]
    with torch.no_grad():
        for t in tensors:
            if t.numel():
                dist.broadcast(t.data, src=0)


def gather_objects(info: DistInfo, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (a one-element list in a single process)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def max_over_ranks(info: DistInfo, value: float) -> float:
    """The largest of every rank's ``value``, on every rank (a collective): e.g. so that ranks,
    whose wall clocks differ, agree on when a time budget is spent."""
    if not info.enabled:
        return value
    return max(gather_objects(info, float(value)))


def sum_over_ranks(info: DistInfo, sums: dict[str, list[float]]) -> dict[str, list[float]]:
    """Every rank's ``{key: [sum, count]}`` added up, on every rank (a collective): the logged
    means are then of the whole global batch, and the same on every rank, so a non-finite loss on
    one rank stops all of them together (one rank raising alone left the others waiting)."""
    total: dict[str, list[float]] = {}
    for part in gather_objects(info, sums):
        for key, (value, count) in part.items():
            acc = total.setdefault(key, [0.0, 0])
            acc[0] += value
            acc[1] += count
    return total


def state_hash(*states: dict[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of state dicts (bitwise identity check)."""
    h = hashlib.sha256()
    for state in states:
        for key in sorted(state):
            t = state[key]
            if not torch.is_tensor(t):
                continue
            t = t.detach().cpu().contiguous()
            h.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()

"""``freeadv gpu-slot``: run a command on GPUs of its own on a machine with several (freeadv/slots.py).

  freeadv gpu-slot --gpus 1 --slots 4 -- freeadv train ...   (CUDA_VISIBLE_DEVICES=<a free id of 0..3>)

The workflow puts it before every GPU job's command when ``gpus_per_machine`` is set, because
Snakemake hands out a GPU count, never a GPU id.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gpu-slot", help="run a command with CUDA_VISIBLE_DEVICES set to free GPU ids of this "
                                        "machine (a lock per id, released when the command ends)",
                       description="Take GPUS free ids of 0..SLOTS-1 (waiting while fewer are free), set "
                                   "CUDA_VISIBLE_DEVICES to them and replace this process by COMMAND. When "
                                   "CUDA_VISIBLE_DEVICES is already set (a scheduler chose the devices, e.g. "
                                   "SLURM) it is kept and no slot is taken.")
    p.add_argument("--gpus", type=int, default=1, help="GPUs the command needs (default 1)")
    p.add_argument("--slots", type=int, required=True, help="GPUs of this machine: ids 0..SLOTS-1")
    p.add_argument("--dir", type=Path, help="lock folder (default: $FREEADV_GPU_SLOTS, else "
                                            "<tmp>/freeadv-gpu-slots-<uid>: one per machine and user)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    p.set_defaults(func=cmd_gpu_slot)


def cmd_gpu_slot(args: argparse.Namespace) -> int:
    from ..slots import exec_in_slot

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    exec_in_slot(command, args.gpus, args.slots, args.dir)
    return 0   # not reached: exec_in_slot replaces this process or raises

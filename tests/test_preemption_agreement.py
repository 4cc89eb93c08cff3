"""LaggedAnyRank: the ranks agree on the preemption flag one step late, every rank on the same step."""

from __future__ import annotations

import os
import socket

import torch.distributed as dist
import torch.multiprocessing as mp

from projects.sa2va_vessel.engine.preemption import LaggedAnyRank

# rank 1 gets the signal before its call 2; rank 0 never does
FLAGS = {0: [False, False, False, False, False], 1: [False, False, True, True, True]}
# each call answers the previous call's agreement (False at the first)
EXPECTED = [False, False, False, True, True]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, out) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=2)
    try:
        agree = LaggedAnyRank()
        out.put((rank, [agree(flag) for flag in FLAGS[rank]]))
    finally:
        dist.destroy_process_group()


def test_two_ranks_agree_one_call_late():
    ctx = mp.get_context('spawn')
    out = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_rank, args=(r, port, out)) for r in (0, 1)]
    for p in procs:
        p.start()
    answers = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert answers == {0: EXPECTED, 1: EXPECTED}


def test_one_process_answers_at_once():
    agree = LaggedAnyRank()
    assert [agree(f) for f in (False, True, False)] == [False, True, False]

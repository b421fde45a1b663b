"""hyenapixel.ops.parallel: blocks of work on several threads, and the plain loop wherever threads are not safe."""

from __future__ import annotations

import threading

import pytest
import torch

from hyenapixel.ops.parallel import block_workers, parallel_map, split_evenly


@pytest.mark.parametrize(("n", "parts"), [(10, 2), (7, 3), (3, 5), (1, 2), (8, 1)])
def test_split_evenly_covers_the_range_in_order(n: int, parts: int) -> None:
    pieces = split_evenly(n, parts)
    assert [i for p in pieces for i in p] == list(range(n))
    assert len(pieces) == min(n, parts)
    assert max(map(len, pieces)) - min(map(len, pieces)) <= 1


def test_results_in_order_from_two_threads_with_one_intra_op_thread(block_threads) -> None:
    threads = torch.get_num_threads()
    seen: list[tuple[str, int, bool]] = []
    barrier = threading.Barrier(threads, timeout=10)  # with two workers both must be inside at once

    def work(i: int) -> int:
        if i < threads:
            barrier.wait()
        seen.append((threading.current_thread().name, torch.get_num_threads(), torch.is_grad_enabled()))
        return i * i

    with torch.no_grad():
        assert parallel_map(work, range(12)) == [i * i for i in range(12)]
    assert torch.get_num_threads() == threads  # restored
    assert len({name for name, _, _ in seen}) == threads
    assert {(n, g) for _, n, g in seen} == {(1 if threads > 1 else threads, False)}


def test_a_plain_loop_while_autograd_records(block_threads) -> None:
    assert torch.is_grad_enabled()  # workers would record into one graph at the same time
    names = parallel_map(lambda _: threading.current_thread().name, range(4))
    assert set(names) == {threading.current_thread().name}
    assert block_workers(4) == 1
    with torch.no_grad():  # threaded with two threads (the fixture checks that this ran on a pool)
        assert block_workers(4) == torch.get_num_threads()
        parallel_map(lambda _: None, range(2))


def test_small_blocks_stay_a_plain_loop_on_torchs_threads() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            assert block_workers(4, spread=False) == 1
            seen = parallel_map(lambda _: (threading.current_thread().name, torch.get_num_threads()), range(4), False)
            assert set(seen) == {(threading.current_thread().name, 2)}  # no worker, torch keeps both threads
    finally:
        torch.set_num_threads(before)


def test_no_nesting_and_errors_reach_the_caller() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            inner = parallel_map(lambda _: block_workers(5), range(3))
            assert inner == [1, 1, 1]

            def fail(i: int) -> int:
                if i == 3:
                    raise ValueError("block 3")
                return i

            with pytest.raises(ValueError, match="block 3"):
                parallel_map(fail, range(6))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_workers_keep_the_callers_inference_mode() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.inference_mode():
            out = torch.zeros(4)  # an inference tensor: writable only in inference mode

            def fill(i: int) -> bool:
                out[i] = i
                return torch.is_inference_mode_enabled()

            assert parallel_map(fill, range(4)) == [True] * 4
        assert out.tolist() == [0.0, 1.0, 2.0, 3.0]
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_forked_child_gets_working_threads() -> None:
    import os

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            assert parallel_map(lambda i: i + 1, range(4)) == [1, 2, 3, 4]  # the parent's pool exists now
        pid = os.fork()
        if pid == 0:  # child: the inherited pool has no threads; a new one must run the blocks
            ok = False
            try:
                with torch.no_grad():
                    ok = parallel_map(lambda i: i * 2, range(4)) == [0, 2, 4, 6]
            finally:
                os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        torch.set_num_threads(before)

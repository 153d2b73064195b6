"""Failure diagnosis from training logs, in the classes of the Acme study."""

import pytest

from refinery.trainer.supervisor import RETRY, classify

TRACE = 'Traceback (most recent call last):\n  File "/x/loop.py", line 210, in _train\n    loss = model(x)\n'

CASES = [
    (
        TRACE + "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity "
        "of 79.11 GiB of which 1.19 GiB is free.\n",
        1,
        "out_of_memory",
    ),
    (
        TRACE + "torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp"
        ":1970, unhandled system error (run with NCCL_DEBUG=INFO for details)\n",
        1,
        "collective_error",
    ),
    (
        TRACE + "RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer "
        "[10.0.0.2]:36712\n",
        1,
        "collective_error",
    ),
    (TRACE + "refinery.trainer.loop.NonFiniteLoss: non-finite loss nan at step 312\n", 1, "nan_loss"),
    (
        TRACE + "refinery.loaders.source.ShardCorrupt: shard shard-000003.arrow: checksum sha256:9f0e does not match "
        "the manifest\n",
        1,
        "data_error",
    ),
    (TRACE + "TypeError: unsupported operand type(s) for +: 'int' and 'NoneType'\n", 1, "user_code_error"),
    ("step 10 loss 7.1\n", -9, "killed"),
    ("step 10 loss 7.1\n", 143, "killed"),
    (
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:\n====\nFailures:\n  <NO_OTHER_FAILURES>\n"
        "----\nRoot Cause (first observed failure):\n[0]:\n  time      : 2026-11-22_21:40:01\n  host      : node7\n"
        "  rank      : 1 (local_rank: 1)\n  exitcode  : -9 (pid: 4242)\n  error_file: <N/A>\n"
        "  traceback : Signal 9 (SIGKILL) received by PID 4242\n",
        1,
        "killed",
    ),
    ("segfault somewhere\n", 139, "unknown"),
]


@pytest.mark.parametrize("log,returncode,expected", CASES)
def test_classify(log, returncode, expected):
    verdict = classify(log, returncode)
    assert verdict["class"] == expected
    assert verdict["retry"] == RETRY[expected]
    assert verdict["evidence"]


def test_evidence_is_the_deciding_line():
    verdict = classify(CASES[0][0], 1)
    assert verdict["evidence"].startswith("torch.OutOfMemoryError: CUDA out of memory")


def test_code_and_data_errors_are_not_retried():
    assert not RETRY["user_code_error"] and not RETRY["data_error"]
    assert RETRY["killed"] and RETRY["collective_error"] and RETRY["out_of_memory"]

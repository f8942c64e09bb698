"""The allocator settings ``dinokit serve`` starts with: large blocks are given back when
freed (glibc), and nothing changes elsewhere."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dinokit.serve import _memory
from dinokit.serve._memory import tune_allocator

# Run in a child process: mallopt settings are process-wide and would outlive the test. The
# module is loaded from its file so the child does not import torch (its own allocations would
# move glibc's threshold before the check).
_CHILD = """
import ctypes, importlib.util, sys
spec = importlib.util.spec_from_file_location("memory", sys.argv[1])
memory = importlib.util.module_from_spec(spec)
spec.loader.exec_module(memory)

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = memory.glibc()
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[2] == "tuned":
    assert memory.tune_allocator()
size = 8 << 20  # a batch's activations are blocks of this order
libc.free(libc.malloc(size))  # once a mapped block is freed, glibc's default threshold rises
before = libc.mallinfo2().hblkhd
block = libc.malloc(size)
print(libc.mallinfo2().hblkhd - before >= size)  # mapped again (so unmapped when freed)?
libc.free(block)
"""


@pytest.mark.skipif(_memory.glibc() is None, reason="glibc's allocator only")
@pytest.mark.parametrize(("setting", "mapped"), [("default", "False"), ("tuned", "True")])
def test_a_large_block_is_mapped_again_after_one_was_freed_only_when_tuned(
    setting: str, mapped: str
) -> None:
    # glibc's dynamic threshold (mallopt(3), M_MMAP_THRESHOLD): the second block comes from
    # the heap by default, where a freed batch's memory stays; a fixed threshold maps it.
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, _memory.__file__, setting],
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout.strip() == mapped


def test_off_glibc_the_allocator_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert _memory.glibc() is None
    assert tune_allocator() is False

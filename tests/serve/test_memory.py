"""The allocator settings ``dinokit serve`` starts with: glibc's arenas capped, and nothing
changed elsewhere."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dinokit.serve import _memory
from dinokit.serve._memory import ARENA_MAX, release_free_memory, tune_allocator

# Run in a child process: mallopt settings are process-wide and would outlive the test. The
# module is loaded from its file so that the child does not import torch (and its threads).
_CHILD = """
import ctypes, importlib.util, os, re, sys, tempfile, threading
spec = importlib.util.spec_from_file_location("memory", sys.argv[1])
memory = importlib.util.module_from_spec(spec)
spec.loader.exec_module(memory)
libc = memory.glibc()
if sys.argv[2] == "tuned":
    assert memory.tune_allocator()
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.fopen.restype = ctypes.c_void_p
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]

together = threading.Barrier(8)
def allocate():  # 8 threads allocating at once, as the server's thread pool does
    block = libc.malloc(4096)
    together.wait()
    libc.free(block)
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
path = os.path.join(tempfile.mkdtemp(), "info.xml")
out = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, out)
libc.fclose(out)
print(len(re.findall("<heap nr=", open(path).read())))
"""


@pytest.mark.skipif(_memory.glibc() is None, reason="glibc's allocator only")
def test_threads_share_at_most_arena_max_arenas_once_tuned() -> None:
    def arenas(setting: str) -> int:
        child = subprocess.run(
            [sys.executable, "-c", _CHILD, _memory.__file__, setting],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(child.stdout)

    # glibc's default (mallopt(3), M_ARENA_MAX: 8 per core) gives concurrent threads arenas
    # of their own, up to 8 + the main one here; capped, they share.
    assert arenas("default") > ARENA_MAX
    assert arenas("tuned") <= ARENA_MAX
    release_free_memory()  # safe to call at any time


def test_off_glibc_the_allocator_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert _memory.glibc() is None
    assert tune_allocator() is False
    release_free_memory()  # nothing to do, and no error

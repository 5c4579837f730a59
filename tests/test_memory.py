"""nbcnn.memory: once a training loop asked, glibc keeps a freed 48 MB block in the process (for
the next step to reuse) instead of unmapping it, unless NBCNN_KEEP_MEMORY=0."""

import os
import subprocess
import sys
import textwrap

import pytest

from nbcnn import memory

# a 48 MB block, above glibc's 32 MB mmap ceiling: is it still resident after `del`?
CHILD = textwrap.dedent("""
    import numpy as np
    from nbcnn import memory

    def resident_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2 ** 20

    kept = memory.keep_freed_memory()
    a = np.ones(12_000_000, np.float32)
    with_block = resident_mb()
    del a
    print(kept, with_block - resident_mb())
""")


def run_child(switch: str):
    env = dict(os.environ, NBCNN_KEEP_MEMORY=switch)
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    kept, released_mb = out.stdout.split()
    return kept == "True", float(released_mb)


@pytest.mark.skipif(memory._glibc() is None or not os.path.exists("/proc/self/statm"), reason="glibc on Linux only")
def test_a_freed_large_block_stays_in_the_process_only_when_asked():
    kept, released_mb = run_child("1")
    assert kept and released_mb < 5          # kept for the next step
    kept, released_mb = run_child("0")
    assert not kept and released_mb > 40     # glibc's default: unmapped at once


def test_the_switch_turns_it_off(monkeypatch):
    monkeypatch.setenv("NBCNN_KEEP_MEMORY", "0")
    assert memory.keep_freed_memory() is False

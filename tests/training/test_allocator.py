"""Keeping freed memory in the process (bioplastic/training/allocator.py) and its opt-out."""
import ctypes.util
import platform

import pytest

from bioplastic.training import allocator

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc" and ctypes.util.find_library("c")


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(allocator, "_done", None)


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_applied_on_glibc(fresh, monkeypatch):
    for k in ("BIOPLASTIC_KEEP_FREED_MEMORY", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_TOP_PAD_"):
        monkeypatch.delenv(k, raising=False)
    assert allocator.keep_freed_memory() is True
    assert allocator.keep_freed_memory() is True  # once per process, then remembered


@pytest.mark.parametrize("value", ["0", "off", "false"])
def test_opt_out_leaves_malloc_alone(fresh, monkeypatch, value):
    monkeypatch.setenv("BIOPLASTIC_KEEP_FREED_MEMORY", value)
    assert allocator.keep_freed_memory() is False


def test_malloc_tuned_by_the_environment_is_left_alone(fresh, monkeypatch):
    """e.g. a Dask nanny's worker, started with MALLOC_TRIM_THRESHOLD_=65536"""
    monkeypatch.delenv("BIOPLASTIC_KEEP_FREED_MEMORY", raising=False)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    assert allocator.keep_freed_memory() is False

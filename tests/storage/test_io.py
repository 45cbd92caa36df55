"""Atomic writes: complete or absent, with ordinary permissions; figures are written the same way."""
import os
import stat
from pathlib import Path

import pytest

from bioplastic.storage.io import atomic_write, atomic_write_text


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_files_get_the_umask_permissions_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.txt") == 0o644  # readable by colleagues, as a plain open() would give


def test_a_failed_write_leaves_nothing(tmp_path):
    def boom(p):
        p.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "b.nc", boom)
    assert list(tmp_path.iterdir()) == []


def test_figures_are_written_atomically(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from bioplastic.plotting.curves import save

    _, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save(ax, tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]  # no temporary file left

    real_write = Path.write_bytes

    def interrupted(self, data):  # a kill while the PNG is being written to disk
        real_write(self, data[:12])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_bytes", interrupted)
    _, ax = plt.subplots()
    with pytest.raises(KeyboardInterrupt):
        save(ax, tmp_path / "g.png")
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]  # no half-written g.png

"""The thread policy: workers and threads follow the cores this process may use."""
import os
import subprocess
import sys

import pytest

from bioplastic.training import executors


def test_threads_divide_the_cores_and_respect_omp(monkeypatch):
    monkeypatch.setattr(executors, "cpu_count", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert executors.threads_per_worker(2) == 4 and executors.threads_per_worker(16) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert executors.threads_per_worker(2) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert executors.threads_per_worker(2) == 4


def test_slurm_and_cgroup_quotas_cap_the_cores(monkeypatch, tmp_path):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert executors.cpu_count() == 1
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert executors._cgroup_cpus(str(tmp_path)) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert executors._cgroup_cpus(str(tmp_path)) is None


@pytest.mark.integration
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")
def test_a_restricted_affinity_is_seen():
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from bioplastic.training import executors as x; print(x.cpu_count(), x.threads_per_worker(1))")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.split() == ["1", "1"], out.stderr

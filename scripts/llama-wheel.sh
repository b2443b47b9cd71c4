#!/usr/bin/env bash
# Builds the llama-cpp-python wheel once and keeps it in a cache folder that is
# safe to lose (a missing cache only costs the ~4-minute build again).
#   usage: scripts/llama-wheel.sh PYTHON VERSION CACHE_DIR
# then:    pip install --find-links CACHE_DIR "llama-cpp-python==VERSION"   (make does)
# CPU build by default with GGML_NATIVE=OFF: the native build crashes on CPUs
# with AMX (segfault in ggml_backend_amx_mul_mat). The same flags as the pip
# route of docs/install.md (edgepilot.extras.LLAMA_CMAKE_ARGS; tests/test_packaging.py
# checks they agree). A CUDA build (not yet tested here) would set
# CMAKE_ARGS="-DGGML_CUDA=on" and use a cache folder of its own.
set -euo pipefail
py=$1 version=$2 cache=$3
mkdir -p "$cache"
if ls "$cache"/llama_cpp_python-"$version"-*.whl >/dev/null 2>&1; then
  exit 0
fi
echo "edgepilot: building llama-cpp-python $version (about 4 minutes on 2 cores, once; cached in $cache)" >&2
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
tmp=$(mktemp -d)
# --no-cache-dir: never a wheel pip built earlier with other flags (pip's cache does not key on CMAKE_ARGS)
"$py" -m pip wheel -q --no-deps --no-cache-dir -w "$tmp" "llama-cpp-python==$version"
mv "$tmp"/llama_cpp_python-*.whl "$cache"/
rmdir "$tmp"

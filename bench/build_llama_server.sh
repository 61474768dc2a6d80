#!/usr/bin/env bash
# Build llama.cpp's server (llama-server) from the llama.cpp source that the installed
# llama-cpp-python's source package carries (the same llama.cpp), and install it where
# `llamacpp/` finds it (PATH) or where $COTSCOPE_LLAMA_SERVER names it.
#
#   bash bench/build_llama_server.sh [DEST_DIR]      (default: ~/.local/bin)
#
# Needs cmake and a C++ compiler; about 5 minutes on 2 cores. It builds for this CPU's vector
# features (AVX2, AVX-512 and its VNNI/BF16/VBMI parts, as /proc/cpuinfo lists them) but not its
# AMX kernels: on a Xeon with AMX, llama.cpp's native build crashed in its AMX matrix kernel with
# repacked weights, and the AVX-512 build with repacked weights ran (measured: see
# docs/performance.md). CMAKE_ARGS is passed on after these. llama.cpp's release archives and
# package managers carry a prebuilt one too.
set -euo pipefail
dest="${1:-$HOME/.local/bin}"
python="${PYTHON:-python}"
version="$("$python" -c 'import llama_cpp; print(llama_cpp.__version__)')"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$work"
tar xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
src="$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)"
flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
has() { [[ "$flags" == *" $1 "* ]] && echo ON || echo OFF; }
cpu="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DGGML_AVX=$(has avx) -DGGML_AVX2=$(has avx2)"
cpu+=" -DGGML_FMA=$(has fma) -DGGML_F16C=$(has f16c) -DGGML_BMI2=$(has bmi2) -DGGML_AVX512=$(has avx512f)"
cpu+=" -DGGML_AVX512_VBMI=$(has avx512vbmi) -DGGML_AVX512_VNNI=$(has avx512_vnni) -DGGML_AVX512_BF16=$(has avx512_bf16)"
# shellcheck disable=SC2086 # CMAKE_ARGS is a list of arguments
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF $cpu ${CMAKE_ARGS:-} > "$work/cmake.log"
cmake --build "$work/build" --target llama-server -j "$(nproc)" > "$work/build.log"
mkdir -p "$dest"
install -m 755 "$work/build/bin/llama-server" "$dest/llama-server"
echo "$dest/llama-server (llama.cpp of llama-cpp-python $version)"

#!/bin/sh
# Install llama-cpp-python (the llamacpp runtime: GGUF files and Ollama / LM Studio models)
# into the virtual environment. PyPI has it as source only, so the first install compiles
# llama.cpp (about 4-9 minutes on 2 cores); pip keeps the built wheel in its cache and later
# installs take seconds.
#
# The build is portable on purpose: GGML_NATIVE=OFF with the x86-64 AVX2 baseline (AVX2, FMA,
# F16C), so one wheel runs on AVX2-only, AVX-512 and AMX machines alike (a -march=native
# build segfaulted on an AMX Xeon; an AVX-512 build does not start on AVX2-only CPUs).
# Decode on CPUs is bound by memory bandwidth, so the wider vectors buy little there.
#
# Without a C/C++ compiler this prints one line saying what to install and exits 0: the
# other runtimes work, GGUF files then run dequantized on transformers, and
# `slmchat doctor` lists llamacpp as unavailable with the reason.
# Usage: scripts/llamacpp.sh PYTHON 'llama-cpp-python==X.Y.Z'
py=$1
req=$2
want=${req#*==}
have=$("$py" -c "import importlib.metadata as m; print(m.version('llama-cpp-python'))" 2>/dev/null)
if [ "$have" = "$want" ] && "$py" -c "import llama_cpp" >/dev/null 2>&1; then
    echo "    $req is installed"
    exit 0
fi
missing=""
for tool in cc c++; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    echo "slmchat: llamacpp runtime skipped: no C/C++ compiler ($missing) to build $req; install one (Debian/Ubuntu: apt-get install build-essential) and run make again"
    exit 3
fi
echo "    compiling llama.cpp for $req once (portable AVX2 build, ~4-9 min on 2 cores; pip caches the wheel)"
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)} \
    "$py" -m pip install "$req"
rc=$?
if [ "$rc" -ne 0 ]; then
    echo "slmchat: llamacpp runtime skipped: building $req failed (exit $rc, see above); the other runtimes work"
    exit 3
fi

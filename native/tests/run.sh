#!/bin/sh
# Builds native/tests/test_kernels.c with the C core's sources and runs it.
#   run.sh native    the host compiler ($CC, else cc); every SIMD level of this CPU
#   run.sh aarch64   aarch64-linux-gnu-gcc, run under qemu-aarch64 twice: -cpu cortex-a72 (NEON
#                    without dotprod, the Raspberry Pi 4: a dotprod instruction would be SIGILL)
#                    and -cpu max (NEON with dotprod, like a Pi 5)
#   run.sh sanitize  the host compiler with AddressSanitizer + UndefinedBehaviorSanitizer, then
#                    with ThreadSanitizer (the pool): any report fails the run
# Optional second argument: rounds of randomised checks per level (default 40).
# Exit status: 0 all passed; 1 a check failed; 2 a build failed; 77 the tools are missing (skip).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
native=$(dirname "$here")
target=${1:-native}
rounds=${2:-40}
build=${PN_TEST_BUILD_DIR:-$native/../build/native-tests}
mkdir -p "$build"
# The module's flags (native/build_native.py): -O3 -std=c99, no -ffast-math, no -march.
flags="-O3 -std=c99 -pthread -fno-math-errno -fno-strict-aliasing -Wall -Wextra -Wno-unused-parameter"
sources="$here/test_kernels.c $native/src/*.c"
includes="-I$native/include -I$native/src -I$here"

case "$target" in
native)
    cc=${CC:-cc}
    if ! command -v "$cc" >/dev/null 2>&1; then
        echo "skip: no C compiler ($cc)"
        exit 77
    fi
    # shellcheck disable=SC2086
    $cc $flags $includes $sources -lm -o "$build/test_kernels" || exit 2
    "$build/test_kernels" "$rounds"
    ;;
aarch64)
    cross=${CROSS_CC:-aarch64-linux-gnu-gcc}
    sysroot=${QEMU_LD_PREFIX:-/usr/aarch64-linux-gnu}
    if ! command -v "$cross" >/dev/null 2>&1; then
        echo "skip: no aarch64 cross compiler ($cross; Debian: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross)"
        exit 77
    fi
    if ! command -v qemu-aarch64 >/dev/null 2>&1; then
        echo "skip: no qemu-aarch64 (Debian: apt-get install qemu-user)"
        exit 77
    fi
    # shellcheck disable=SC2086
    $cross $flags $includes $sources -lm -o "$build/test_kernels_aarch64" || exit 2
    for cpu in cortex-a72 max; do
        echo "== qemu-aarch64 -cpu $cpu"
        qemu-aarch64 -cpu "$cpu" -L "$sysroot" "$build/test_kernels_aarch64" "$rounds"
    done
    ;;
sanitize)
    cc=${CC:-cc}
    if ! command -v "$cc" >/dev/null 2>&1; then
        echo "skip: no C compiler ($cc)"
        exit 77
    fi
    san="-O1 -g -std=c99 -pthread -fno-omit-frame-pointer"
    # shellcheck disable=SC2086
    $cc $san -fsanitize=address,undefined -fno-sanitize-recover=all $includes $sources -lm \
        -o "$build/test_kernels_asan" || exit 2
    echo "== AddressSanitizer + UndefinedBehaviorSanitizer"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 "$build/test_kernels_asan" "$rounds"
    # shellcheck disable=SC2086
    $cc $san -fsanitize=thread $includes $sources -lm -o "$build/test_kernels_tsan" || exit 2
    echo "== ThreadSanitizer"
    TSAN_OPTIONS=halt_on_error=1 "$build/test_kernels_tsan" "$rounds"
    ;;
*)
    echo "usage: $0 native|aarch64|sanitize [rounds]" >&2
    exit 2
    ;;
esac

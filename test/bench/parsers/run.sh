#!/usr/bin/env bash
# Build and run the YAML/JSON parser benchmark (standalone, not part of the
# CMake build). Installs the four Debian -dev packages when they are missing.
#
#   test/bench/parsers/run.sh [--runs N] [--messages N]
#
# The report (Markdown) goes to stdout; RESULTS.md was written from it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
packages=(libyaml-dev libfyaml-dev libjansson-dev libcjson-dev)

missing=()
for pkg in "${packages[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}" >&2
    sudo=""
    ((EUID == 0)) || sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${missing[@]}" >&2
fi

build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
gcc -std=c11 -O2 -Wall -Wextra -o "$build/parsers_bench" "$here/parsers_bench.c" \
    -lyaml -lfyaml -ljansson -lcjson -pthread
"$build/parsers_bench" "$@"

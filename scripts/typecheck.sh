#!/usr/bin/env bash
# Type-checks packages with mypy, configured in pyproject.toml (strict on pipeline and loaders).
# The top-level folders become `refinery.*` only when installed, so mypy reads them through a
# temporary tree of links named as the package is. Arguments: package names (default: the strict ones).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir "$tree/refinery"
for folder in pipeline stages classifiers tokenize loaders trainer; do
    ln -s "$top/$folder" "$tree/refinery/$folder"
done
packages=("$@")
[ ${#packages[@]} -gt 0 ] || packages=(refinery.pipeline refinery.loaders)
args=()
for package in "${packages[@]}"; do args+=(-p "$package"); done
cd "$tree"
mypy --config-file "$top/pyproject.toml" "${args[@]}"

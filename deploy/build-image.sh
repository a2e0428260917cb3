#!/usr/bin/env bash
# Build the bus image from this checkout without network inside the build: the wheels are
# made on the host (deploy/wheelhouse, ignored by git), then `docker build` installs them
# with --no-index. Usage: deploy/build-image.sh [TAG] (default bus:local)
#   BASE=python:3.11-slim    the base image (a Debian/Ubuntu with python3 and venv)
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-bus:local}
python=${PYTHON:-python3}
wheelhouse=deploy/wheelhouse
rm -rf "$wheelhouse"
"$python" -m pip wheel -q --no-deps -w "$wheelhouse" .
"$python" -m pip download -q --only-binary=:all: --platform manylinux_2_17_x86_64 \
    --python-version 3.11 --implementation cp -d "$wheelhouse" "$wheelhouse"/bus-*.whl
docker build --build-arg "BASE=${BASE:-python:3.11-slim}" -f deploy/Dockerfile -t "$tag" "$wheelhouse"
docker image ls "$tag"

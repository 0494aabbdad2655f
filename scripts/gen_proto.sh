#!/usr/bin/env bash
# Regenerates the committed gRPC/protobuf stubs from proto/hodei_api/v1/*.proto.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
out="${1:-$root/proto}"
cd "$root/proto"
"$python" -m grpc_tools.protoc -I. \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  hodei_api/v1/*.proto

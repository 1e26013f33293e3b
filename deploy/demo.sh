#!/usr/bin/env bash
# make demo: start cascad with deploy/casca.yaml and show it answering, the way an operator would
# look at it with grpcurl: services by reflection, health, status, a reload, then a clean stop.
#   deploy/demo.sh [BUILD_DIR]      PORT=50051 to pick the port (default: a free one)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../build}" && pwd)
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT

port=${PORT:-$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
cp "$here/casca.yaml" "$work/casca.yaml"
echo "== starting: cascad --config deploy/casca.yaml --listen 127.0.0.1:$port --data-dir $work/data"
"$build/server/cascad" --config "$work/casca.yaml" --listen "127.0.0.1:$port" \
  --data-dir "$work/data" &
pid=$!
/usr/bin/python3 "$here/demo/show.py" --stubs "$build/py" --target "127.0.0.1:$port" \
  --config "$work/casca.yaml"
echo "== stopping with SIGTERM (graceful: health turns NOT_SERVING, calls drain)"
kill -TERM $pid
wait $pid
echo "== cascad exited $?"

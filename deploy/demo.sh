#!/usr/bin/env bash
# make demo: casca's media-streaming use case on this machine (deploy/demo/run.py): cascad with
# deploy/demo/casca.yaml, the transcoding service (ffmpeg, or the model with SIMULATE=1), the power
# meter and a decision agent; live progress, the run's figures and PNG plots at the end.
#   deploy/demo.sh [BUILD_DIR]
#   AGENT=gds|rds|rlds|none (default gds)  SIMULATE=1 (model instead of ffmpeg)
#   DURATION=SECONDS (default 180)         DEMO_ARGS="..." (more run.py options, see --help)
#   TOUR=1: instead, the short tour of the API with deploy/casca.yaml (deploy/demo/show.py)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../build}" && pwd)

if [ "${TOUR:-0}" = 1 ]; then
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
  exit 0
fi

args=(--build "$build" --agent "${AGENT:-gds}" --duration "${DURATION:-180}")
case "${SIMULATE:-0}" in
  1|yes|true) args+=(--simulate) ;;
  0|no|false|"") ;;
  *) echo "demo: SIMULATE=$SIMULATE: use SIMULATE=1 or leave it out" >&2; exit 2 ;;
esac
# shellcheck disable=SC2086  # DEMO_ARGS is a list of options
exec /usr/bin/python3 "$here/demo/run.py" "${args[@]}" ${DEMO_ARGS:-}

#!/usr/bin/python3
"""The demo's player on another host (the paper's "Autowatcher"): reads the transcoding frame rate
of the media server's session list (Jellyfin's GET /Sessions, TranscodingInfo.Framerate) once per
--interval and publishes it as a player report through `casca report`:

    {"Autowatcher ID": "w1", "Transcoding FPS": 25.2, "Dropped frames": 0, "Quality": 0.96,
     "Time (UTC)": "2026-01-05 10:00:00"}

(Quality: the score of the server's EncoderPreset in transcoder.py's PRESET_MODEL, read from
GET /System/Configuration/encoding.)

  /usr/bin/python3 deploy/demo/player.py --server http://media:8096 --bus tcp://cascad:5556 \\
      --casca /usr/bin/casca [--id w1] [--topic autowatcher/w1] [--interval 1] [--api-key KEY]

Used where the service and its players are on different hosts (deploy/compose.yaml); on one host
deploy/demo/transcoder.py reports by itself. SIGTERM/SIGINT stop it. Standard library only.
"""
import argparse
import json
import os
import signal
import sys
import threading
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from transcoder import ENDPOINT, PRESET_MODEL, Reporter, log  # noqa: E402  (the same pipe)


def get_json(url, api_key, timeout):
    req = urllib.request.Request(url)
    if api_key:
        req.add_header("X-Emby-Token", api_key)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


def quality(url, api_key, timeout=2.0):
    """The quality score of the server's encoder preset (0 for a preset the model lacks)."""
    preset = get_json(url + ENDPOINT, api_key, timeout).get("EncoderPreset")
    return PRESET_MODEL.get(preset, (0, 0))[1]


def framerate(url, api_key, timeout=2.0):
    """The first transcoding session's frame rate, or None while there is none."""
    sessions = get_json(url + "/Sessions", api_key, timeout)
    for s in sessions if isinstance(sessions, list) else []:
        info = s.get("TranscodingInfo") or {}
        fps = info.get("Framerate")
        if isinstance(fps, (int, float)) and not isinstance(fps, bool):
            return float(fps)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", required=True, help="the media server, e.g. http://media:8096")
    ap.add_argument("--bus", required=True, help="casca bus address, e.g. tcp://cascad:5556")
    ap.add_argument("--casca", required=True, help="path of the `casca` tool")
    ap.add_argument("--id", default="w1", help='the reports\' "Autowatcher ID" (default w1)')
    ap.add_argument("--topic", help="bus topic (default autowatcher/ID)")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between reports")
    ap.add_argument("--api-key", default=os.environ.get("DEMO_API_KEY", ""),
                    help="X-Emby-Token for the server (default: $DEMO_API_KEY)")
    args = ap.parse_args()
    if args.interval < 0.05:
        ap.error("--interval must be at least 0.05 seconds")
    if not (os.path.isfile(args.casca) and os.access(args.casca, os.X_OK)):
        ap.error("--casca %s is not an executable file" % args.casca)
    server = args.server.rstrip("/")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda s, f: stop.set())
    signal.signal(signal.SIGINT, lambda s, f: stop.set())
    reporter = Reporter(args.casca, args.bus, args.topic or "autowatcher/" + args.id, args.id)
    failures = 0
    try:
        while not stop.wait(args.interval):
            try:
                fps = framerate(server, args.api_key)
                q = quality(server, args.api_key)
                failures = 0
            except (OSError, ValueError, urllib.error.URLError) as e:
                failures += 1
                if failures in (1, 10) or failures % 60 == 0:
                    log("player: %s/Sessions: %s" % (server, e))
                continue
            if fps is not None:
                reporter.send(fps, q)
    finally:
        reporter.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""report_pipe: how the demo's service, player and power meter publish. Each report is one JSON
line piped to `casca report --bus BUS --topic TOPIC` (libcasca's reporter behind the CLI: it
buffers, reconnects and never blocks); if that process dies it is restarted for the next line."""
import json
import subprocess


class ReportPipe:
    def __init__(self, casca, bus, topic, log):
        self.argv = [casca, "report", "--bus", bus, "--topic", topic]
        self.log = log
        self.proc = None

    def send(self, obj):
        line = (json.dumps(obj) + "\n").encode()
        for _ in range(2):
            if self.proc is None or self.proc.poll() is not None:
                if self.proc is not None:
                    self.log("casca report exited with status %s; restarting it"
                             % self.proc.returncode)
                self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                             stdout=subprocess.DEVNULL, start_new_session=True)
            try:
                self.proc.stdin.write(line)
                self.proc.stdin.flush()
                return
            except OSError:  # BrokenPipeError included: it died; restart it once
                self.proc.wait()

    def close(self):
        """Ends the input, so casca report sends what it holds (up to 5 s), then exits."""
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

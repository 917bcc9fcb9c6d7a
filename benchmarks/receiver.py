"""The loopback receiver of every fan-out benchmark: nginx responding 200 to any POST.

Generates a private CA and a certificate for *.bench.test, localhost and 127.0.0.1, writes an nginx
configuration that listens only on 127.0.0.1 (a range of HTTP ports, a range of HTTPS ports and a
stub_status port), and runs nginx in the foreground as a child process.
"""

import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def port_range_is_free(first, count):
    """Returns whether 127.0.0.1 ports first .. first + count - 1 can all be bound now."""
    for port in range(first, first + count):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def find_free_ports(count, candidates=(24000, 31000, 38000, 45000, 52000)):
    """Returns the first port of `count` consecutive free loopback ports."""
    for first in candidates:
        if port_range_is_free(first, count):
            return first
    raise RuntimeError(
        f"no {count} consecutive free ports on 127.0.0.1 starting at any of {candidates}"
    )


def make_certificates(directory):
    """Creates ca.pem and, signed by it, server.pem and server.key; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    extensions = directory / "server.ext"
    if not (ca_cert.exists() and cert.exists() and key.exists()):
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        run_quietly(["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca_cert,
                     "-days", "30", "-subj", "/CN=revdesk benchmark CA"])
        run_quietly(["openssl", "req", "-new", *ec, "-keyout", key, "-out", csr,
                     "-subj", "/CN=bench.test"])
        extensions.write_text(
            "basicConstraints=CA:FALSE\n"
            "keyUsage=digitalSignature\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectAltName=DNS:*.bench.test,DNS:localhost,IP:127.0.0.1\n"
        )
        run_quietly(["openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
                     "-CAcreateserial", "-out", cert, "-days", "30", "-extfile", extensions])
    return ca_cert, cert, key


def run_quietly(command):
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed: {result.stderr.strip()}")


class Nginx:
    """nginx with one worker process on 127.0.0.1: `endpoints` HTTP ports from `http_port`,
    as many HTTPS ports from `https_port`, and stub_status on `status_port`."""

    def __init__(self, work_dir, endpoints=256):
        self.work_dir = Path(work_dir) / "nginx"
        self.endpoints = endpoints
        first = find_free_ports(2 * endpoints + 1)
        self.http_port = first
        self.https_port = first + endpoints
        self.status_port = first + 2 * endpoints
        self.ca_file, self.cert, self.key = make_certificates(Path(work_dir) / "tls")
        self.process = None
        self.log = None

    def config(self):
        d = self.work_dir
        http_listens = "".join(
            f"    listen 127.0.0.1:{self.http_port + i};\n" for i in range(self.endpoints)
        )
        https_listens = "".join(
            f"    listen 127.0.0.1:{self.https_port + i} ssl;\n" for i in range(self.endpoints)
        )
        # One worker, so that the receiver takes at most one of the machine's cores. Each
        # keep-alive connection may carry any number of requests, as a webhook receiver's would.
        return f"""daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 16384;
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    client_body_buffer_size 64k;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    ssl_certificate {self.cert};
    ssl_certificate_key {self.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:bench:10m;
    server {{
{http_listens}        location / {{ return 200; }}
    }}
    server {{
{https_listens}        location / {{ return 200; }}
    }}
    server {{
        listen 127.0.0.1:{self.status_port};
        location / {{ stub_status; }}
    }}
}}
"""

    def start(self):
        self.work_dir.mkdir(parents=True, exist_ok=True)
        conf = self.work_dir / "nginx.conf"
        conf.write_text(self.config())
        self.log = open(self.work_dir / "stderr.log", "w")
        self.process = subprocess.Popen(
            ["nginx", "-p", str(self.work_dir), "-c", str(conf), "-e", str(self.work_dir / "error.log")],
            stdout=self.log,
            stderr=self.log,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"nginx exited with status {self.process.returncode}; see {self.work_dir}/error.log"
                )
            try:
                self.requests()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not respond on 127.0.0.1:{self.status_port} within 10 s; see {self.work_dir}/error.log")

    def requests(self):
        """Returns the number of requests nginx has read, including this status request."""
        # No proxy handler: a proxy from the environment must never see loopback traffic.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{self.status_port}/", timeout=5) as r:
            lines = r.read().decode().splitlines()
        # "server accepts handled requests" is followed by the three counters.
        return int(lines[2].split()[2])

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log:
            self.log.close()

    def version(self):
        result = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
        return result.stderr.strip().removeprefix("nginx version: ")


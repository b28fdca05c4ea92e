#!/usr/bin/python3
# kube-apiserver STAND-IN for the runbook lab. This is NOT kube-apiserver.
#
# The real kube-apiserver cannot be installed in the lab. This stand-in is what restore
# plans need from it: it is a process named `kube-apiserver` (runbook lab up writes this file
# as <lab>/bin/kube-apiserver with the real interpreter in the shebang, so the kernel names
# the process after the file), it takes the flags kubeadm's static pod manifest passes, and
# it serves HTTPS on --secure-port with --tls-cert-file where /readyz answers 200 only while
# etcd (--etcd-servers, with the --etcd-* client certificate) reports itself healthy.
# /livez and /healthz always answer 200. It stores nothing and serves no API.

import http.client
import http.server
import json
import socketserver
import ssl
import sys
import threading
import urllib.parse

ETCD_TIMEOUT = 1.0


def parse_flags(argv):
    flags = {}
    for arg in argv:
        if not arg.startswith("--"):
            continue
        name, sep, value = arg[2:].partition("=")
        flags[name] = value if sep else "true"
    return flags


def log(message):
    sys.stderr.write("kube-apiserver (runbook lab stand-in): %s\n" % message)
    sys.stderr.flush()


class Etcd:
    """Asks etcd's /health with the apiserver's etcd client certificate."""

    def __init__(self, flags):
        self.servers = [s for s in flags.get("etcd-servers", "").split(",") if s]
        self.context = ssl.create_default_context(cafile=flags.get("etcd-cafile"))
        certfile = flags.get("etcd-certfile")
        if certfile:
            self.context.load_cert_chain(certfile, flags.get("etcd-keyfile"))
        self.lock = threading.Lock()
        self.last = None

    def healthy(self):
        reason = "no --etcd-servers"
        for server in self.servers:
            url = urllib.parse.urlsplit(server)
            try:
                conn = http.client.HTTPSConnection(
                    url.hostname, url.port or 2379, context=self.context, timeout=ETCD_TIMEOUT
                )
                try:
                    conn.request("GET", "/health")
                    response = conn.getresponse()
                    body = response.read()
                finally:
                    conn.close()
                health = json.loads(body or b"{}").get("health")
                if response.status == 200 and str(health).lower() == "true":
                    self.note(True, "etcd %s is healthy" % server)
                    return True, "ok"
                reason = "etcd %s: HTTP %d %s" % (server, response.status, body.decode(errors="replace").strip())
            except Exception as e:  # any failure to reach etcd means not ready
                reason = "etcd %s: %s" % (server, e)
        self.note(False, reason)
        return False, reason

    def note(self, ok, reason):
        # Log changes only: plans poll /readyz many times a second.
        with self.lock:
            if self.last != ok:
                log(("ready: " if ok else "not ready: ") + reason)
                self.last = ok


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-apiserver-runbook-lab-stand-in"

    def setup(self):
        # The TLS handshake runs here, in the request's thread, so one slow client cannot
        # hold up the others.
        self.request.settimeout(10)
        self.request.do_handshake()
        super().setup()

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path in ("/livez", "/healthz"):
            self.reply(200, "ok")
        elif path == "/readyz":
            ok, reason = self.server.etcd.healthy()
            if ok:
                self.reply(200, "ok")
            else:
                self.reply(500, "[-]etcd failed: %s\nreadyz check failed" % reason)
        elif path == "/version":
            self.reply(200, json.dumps({"gitVersion": "runbook-lab-stand-in"}), "application/json")
        else:
            self.reply(404, "not found (this is the runbook lab's kube-apiserver stand-in)")

    def reply(self, status, text, content_type="text/plain; charset=utf-8"):
        body = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address, tls, etcd):
        super().__init__(address, Handler)
        self.tls = tls
        self.etcd = etcd

    def server_bind(self):
        # HTTPServer.server_bind looks up the host's FQDN; a lab node has no reachable DNS,
        # and that lookup alone would take ten seconds.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def get_request(self):
        sock, addr = self.socket.accept()
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        log("request from %s failed: %s" % (client_address[0], sys.exc_info()[1]))


def main():
    flags = parse_flags(sys.argv[1:])
    for required in ("tls-cert-file", "tls-private-key-file", "etcd-servers"):
        if required not in flags:
            log("missing --%s" % required)
            return 2
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(flags["tls-cert-file"], flags["tls-private-key-file"])
    port = int(flags.get("secure-port", "6443"))
    server = Server(("0.0.0.0", port), tls, Etcd(flags))
    log("serving https on 0.0.0.0:%d, etcd at %s" % (port, flags["etcd-servers"]))
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

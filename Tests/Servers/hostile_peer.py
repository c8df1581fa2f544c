#!/usr/bin/env python3
"""A hostile HTTP peer for bgq's tests: a server that breaks HTTP, TLS and JSON on purpose.

It binds 127.0.0.1, prints `PORT <n>` as its first stdout line, and answers every connection on its own
thread. Python 3 standard library only.

    hostile_peer.py --port 0                              plain HTTP
    hostile_peer.py --port 0 --tls-cert C --tls-key K     HTTPS with that certificate (whatever name it carries)
    hostile_peer.py --port 0 --proxy --log PATH           an HTTP CONNECT proxy that tunnels every CONNECT to
                                                          127.0.0.1 on the asked port, whatever the host: a URL
                                                          such as https://bad.cafe:PORT reaches this machine
                                                          without DNS or /etc/hosts; PATH gets one line per CONNECT

The scenario is the request path's first segment (an agent URL such as http://127.0.0.1:PORT/negative-length/v1),
else the request body's `model` (`hostile/negative-length` or `negative-length`). The reply's shape follows the
endpoint: OpenAI (`/chat/completions`), Anthropic (`/messages`), or an OpenCode server (anything else).

Scenarios:
    ok                  a well-formed reply ("hostile peer says hello")
    negative-length     Content-Length: -1
    huge-length         Content-Length: 9223372036854775807 (0x7fffffffffffffff), then a few bytes and a close
    negative-chunk      a chunk size of -5
    overflow-chunk      a chunk size of 7fffffffffffffff
    nonhex-chunk        a chunk size of "zz"
    huge-body           a 200 MB body with its Content-Length, streamed (never held in memory here)
    huge-body-chunked   a 200 MB chunked body without a length, streamed
    stall-body          headers, 10 of the 100 bytes announced, then nothing until the client leaves
    endless-headers     header lines without end (until the client leaves or 1 GB went out)
    stall-headers       half a header line, then nothing until the client leaves
    invalid-json        a 200 whose body is not JSON
    deep-json           a 200 whose body is an array nested 100,000 deep
    invalid-utf8        a 200 of the endpoint's shape whose text holds bytes that are not UTF-8
Server-sent events (a 200 `text/event-stream`, chunked; the first event is a well-formed text piece of
the endpoint's stream shape, then):
    sse-endless-line    one `data:` line that never ends (until the client leaves or 1 GB went out)
    sse-stall           half an event, then nothing until the client leaves
    sse-invalid-utf8    an event whose data holds bytes that are not UTF-8
    sse-invalid-json    an event whose data is not JSON
    sse-deep-json       an event whose data is an array nested 100,000 deep
"""

import argparse
import json
import os
import select
import socket
import socketserver
import ssl
import sys
import threading

SCENARIOS = {
    "ok", "negative-length", "huge-length", "negative-chunk", "overflow-chunk", "nonhex-chunk", "huge-body",
    "huge-body-chunked", "stall-body", "endless-headers", "stall-headers", "invalid-json", "deep-json", "invalid-utf8",
    "sse-endless-line", "sse-stall", "sse-invalid-utf8", "sse-invalid-json", "sse-deep-json",
}
HUGE = 200 * 1024 * 1024
# How long a stalling reply waits for the client to give up before the server gives up itself.
STALL_LIMIT_S = 600


def log(text):
    print(text, file=sys.stderr, flush=True)


def read_head(stream):
    """(method, path, headers, body) of one request, or None when the client closed first."""
    request_line = stream.readline(65536)
    if not request_line:
        return None
    parts = request_line.decode("latin-1").split()
    if len(parts) < 2:
        return None
    headers = {}
    while True:
        line = stream.readline(65536)
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or "0")
    body = stream.read(length) if length > 0 else b""
    return parts[0], parts[1], headers, body


def scenario_of(path, body):
    first = path.lstrip("/").split("/", 1)[0].split("?", 1)[0]
    if first in SCENARIOS:
        return first
    try:
        model = json.loads(body or b"{}").get("model", "")
    except (ValueError, AttributeError):
        model = ""
    name = model.split("/", 1)[-1] if isinstance(model, str) else ""
    return name if name in SCENARIOS else "ok"


def good_body(path, text):
    """A well-formed reply of the endpoint's shape carrying `text` (bytes, possibly not UTF-8)."""
    if path.endswith("/chat/completions"):
        head = b'{"id":"chatcmpl-hostile","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"'
        return head + text + b'"},"finish_reason":"stop"}]}'
    if path.endswith("/messages"):
        return b'{"id":"msg_hostile","type":"message","role":"assistant","content":[{"type":"text","text":"' + text + b'"}]}'
    # OpenCode server: POST /session answers a session; everything else an empty list.
    if path.rstrip("/").endswith("/session"):
        return b'{"id":"ses_' + text + b'","title":"hostile"}'
    return b"[]"


def sse_piece(path, text):
    """A well-formed streamed text piece of the endpoint's shape."""
    if path.endswith("/messages"):
        return (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                b'"delta":{"type":"text_delta","text":"' + text + b'"}}\n\n')
    return b'data: {"choices":[{"index":0,"delta":{"content":"' + text + b'"},"finish_reason":null}]}\n\n'


def chunk(data):
    return (b"%x\r\n" % len(data)) + data + b"\r\n"


def answer_stream(connection, scenario, path):
    send = connection.sendall
    send(head(extra=["Transfer-Encoding: chunked"], content_type="text/event-stream") + chunk(sse_piece(path, b"hostile stream says")))
    if scenario == "sse-endless-line":
        send(chunk(b"data: "))
        block = chunk(b"x" * 65536)
        for _ in range(1024 * 1024 * 1024 // 65536):
            send(block)
    elif scenario == "sse-stall":
        send(chunk(b'data: {"choices":[{"index":0,"del'))
        wait_for_client_to_leave(connection)
    elif scenario == "sse-invalid-utf8":
        send(chunk(sse_piece(path, b"bad \xff\xfe \xc3\x28 bytes")))
    elif scenario == "sse-invalid-json":
        send(chunk(b'data: {"choices": [{"delta": {"content": "cut off here\n\n'))
    elif scenario == "sse-deep-json":
        depth = 100_000
        send(chunk(b"data: " + b"[" * depth + b"]" * depth + b"\n\n"))
    send(b"0\r\n\r\n")


def wait_for_client_to_leave(connection):
    """Blocks until the client closes (or STALL_LIMIT_S passed): a peer that went silent."""
    try:
        readable, _, _ = select.select([connection], [], [], STALL_LIMIT_S)
        if readable:
            connection.recv(1)
    except OSError:
        pass


def head(status="200 OK", extra=(), content_type="application/json"):
    lines = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}", "Connection: close", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(connection, scenario, path):
    send = connection.sendall
    if scenario == "ok":
        body = good_body(path, b"hostile peer says hello")
        send(head(extra=[f"Content-Length: {len(body)}"]) + body)
    elif scenario == "negative-length":
        send(head(extra=["Content-Length: -1"]) + b'{"x":1}')
    elif scenario == "huge-length":
        send(head(extra=["Content-Length: 9223372036854775807"]) + b'{"choices":[')
    elif scenario == "negative-chunk":
        send(head(extra=["Transfer-Encoding: chunked"]) + b"-5\r\nhello\r\n0\r\n\r\n")
    elif scenario == "overflow-chunk":
        send(head(extra=["Transfer-Encoding: chunked"]) + b"7fffffffffffffff\r\nhello\r\n")
    elif scenario == "nonhex-chunk":
        send(head(extra=["Transfer-Encoding: chunked"]) + b"zz\r\nhello\r\n0\r\n\r\n")
    elif scenario in ("huge-body", "huge-body-chunked"):
        block = b"x" * 65536
        chunked = scenario == "huge-body-chunked"
        send(head(extra=["Transfer-Encoding: chunked"] if chunked else [f"Content-Length: {HUGE}"]))
        framed = (b"%x\r\n" % len(block)) + block + b"\r\n" if chunked else block
        for _ in range(HUGE // len(block)):
            send(framed)
        if chunked:
            send(b"0\r\n\r\n")
    elif scenario == "stall-body":
        send(head(extra=["Content-Length: 100"]) + b'{"choices"')
        wait_for_client_to_leave(connection)
    elif scenario == "endless-headers":
        send(b"HTTP/1.1 200 OK\r\n")
        filler = b"X-Filler: " + b"a" * 1000 + b"\r\n"
        for _ in range(1024 * 1024):
            send(filler)
    elif scenario == "stall-headers":
        send(b"HTTP/1.1 200 OK\r\nContent-Type: appl")
        wait_for_client_to_leave(connection)
    elif scenario == "invalid-json":
        body = b'{"choices": [{"message": {"content": "cut off here'
        send(head(extra=[f"Content-Length: {len(body)}"]) + body)
    elif scenario == "deep-json":
        depth = 100_000
        send(head(extra=[f"Content-Length: {2 * depth}"]) + b"[" * depth + b"]" * depth)
    elif scenario == "invalid-utf8":
        body = good_body(path, b"bad \xff\xfe \xc3\x28 bytes")
        send(head(extra=[f"Content-Length: {len(body)}"]) + body)
    elif scenario.startswith("sse-"):
        answer_stream(connection, scenario, path)


class PeerHandler(socketserver.BaseRequestHandler):
    def handle(self):
        connection = self.request
        if self.server.tls_context is not None:
            try:
                connection = self.server.tls_context.wrap_socket(connection, server_side=True)
            except (ssl.SSLError, OSError) as error:
                log(f"TLS handshake failed (the client refused us, as it should when the name is wrong): {error}")
                return
        stream = connection.makefile("rb")
        try:
            request = read_head(stream)
            if request is None:
                return
            method, path, _, body = request
            scenario = scenario_of(path, body)
            log(f"{method} {path} -> {scenario}")
            answer(connection, scenario, path)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError) as error:
            log(f"client left: {error}")
        finally:
            try:
                connection.close()
            except OSError:
                pass


class ProxyHandler(socketserver.BaseRequestHandler):
    """HTTP CONNECT host:port → a tunnel to 127.0.0.1:port."""

    def handle(self):
        client = self.request
        stream = client.makefile("rb")
        request = read_head(stream)
        if request is None:
            return
        method, target, _, _ = request
        if method != "CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        host, _, port = target.rpartition(":")
        with self.server.log_lock, open(self.server.log_path, "a") as handle:
            handle.write(f"CONNECT {host}:{port}\n")
        try:
            upstream = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
        except (OSError, ValueError):
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        upstream.settimeout(None)
        sockets = [client, upstream]
        try:
            while True:
                readable, _, _ = select.select(sockets, [], [], STALL_LIMIT_S)
                if not readable:
                    return
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    (upstream if source is client else client).sendall(data)
        except OSError:
            return
        finally:
            upstream.close()


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    parser = argparse.ArgumentParser(description="A hostile HTTP peer for bgq's tests.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate (and --tls-key)")
    parser.add_argument("--tls-key", help="the PEM private key of --tls-cert")
    parser.add_argument("--proxy", action="store_true", help="be an HTTP CONNECT proxy to 127.0.0.1 instead")
    parser.add_argument("--log", help="with --proxy: append one line per CONNECT to this file")
    args = parser.parse_args()

    server = Server(("127.0.0.1", args.port), ProxyHandler if args.proxy else PeerHandler)
    server.tls_context = None
    server.log_path = args.log or os.devnull
    server.log_lock = threading.Lock()
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.tls_context = context
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

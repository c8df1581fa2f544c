#!/usr/bin/env python3
"""A fake model provider for bgq's end-to-end tests: the Anthropic Messages API and the
OpenAI-compatible chat completions API, deterministic, offline, Python standard library only.

It is good enough for the real Claude Code CLI (`claude -p`, streaming, tool use) to run against it.

Usage:
    python3 Tests/Servers/fake_provider.py [--port 0] [--script FILE]

It binds 127.0.0.1, prints `PORT <n>` as its first stdout line, serves HTTP/1.1 with one thread per
connection, and exits cleanly (status 0) on SIGTERM or SIGINT.

Endpoints
    POST /v1/messages[?beta=true]    Anthropic Messages. Needs the headers x-api-key (the value `bad-key`
                                     gets 401 authentication_error) and anthropic-version. `"stream": true`
                                     answers with server-sent events (message_start, content_block_start,
                                     ping, content_block_delta, content_block_stop, message_delta,
                                     message_stop); otherwise one JSON message.
    POST /v1/messages/count_tokens   {"input_tokens": <a rough count>}
    GET  /v1/models                  a short model list
    POST /v1/chat/completions        OpenAI-compatible. `Authorization: Bearer bad-key` gets 401
                                     invalid_api_key; no Authorization header is allowed. `"stream": true`
                                     answers with server-sent events: chat.completion.chunk objects (the
                                     text in pieces of `choices[0].delta.content`, then a `finish_reason`),
                                     a last chunk with `usage` when `stream_options.include_usage` is true,
                                     then `data: [DONE]`; otherwise one JSON chat.completion.
    GET  /_test/log                  a JSON array of every request so far (except /_test/ ones): {method,
                                     path, query, headers (lower-cased names), body (parsed JSON, or null),
                                     status (null while a slow answer is pending)}
    POST /_test/reset                clears the log and the marker counters
    POST /_test/release?name=NAME    lets every stream held by [hold NAME] go on (and later ones pass)
A streamed request's log entry gets its status (200) as soon as the stream starts, and `usage`: the
token counts the stream reported ({input_tokens, output_tokens}).
    anything else                    404 (logged)

The reply text (both APIs) is `reply <n>: <last user text, first 200 characters>`, where
    * n is the number of user turns in the request's messages: messages with role "user" that carry
      text of their own and no tool_result block (Claude Code sends tool results, sometimes with a
      short text such as "Tool loaded.", as user messages: those are not turns), and
    * the last user text is the text of the last such message. Content may be a string or a list of
      blocks; the text of its "text" blocks is joined with "\n", leaving out blocks whose text starts
      with "<system-reminder>" (Claude Code adds those to the user's messages).
A continued conversation is therefore visible: its second prompt is answered with `reply 2: …`.

Markers in the last user text change the answer (the counters of the N-times markers are kept per API
and per distinct last user text, and are cleared by /_test/reset):
    [rate-limit N]       the first N such requests get 429, headers retry-after-ms: 50 and retry-after: 1;
                         Anthropic error.type rate_limit_error, OpenAI error.code rate_limit_exceeded,
                         message "Rate limited (fake): slow down"
    [rate-limit-always]  always that 429
    [retry-after S]      with a rate-limit marker: header retry-after: S, and no retry-after-ms
    [overloaded N]       N times: Anthropic 529 overloaded_error / OpenAI 503, without retry headers
    [server-error N]     N times 500
    [quota]              OpenAI 429 insufficient_quota "You exceeded your current quota (fake)";
                         Anthropic 400 invalid_request_error "Your credit balance is too low (fake)"
    [malformed]          200 with the body {"unexpected": true}
    [garbage]            200 with the body `not json at all`
    [slow S]             sleep S seconds (a float) before answering
Markers for streamed answers (`"stream": true`; both APIs; the text goes out in pieces of 40 characters):
    [drip S]             sleep S seconds (a float) before each piece after the first
    [hold NAME]          after the first piece, wait until POST /_test/release?name=NAME (at most 300 s)
    [cut N]              the first N such requests: the first piece, then the body ends cleanly without
                         the stream's last event (no [DONE], no message_stop): a truncated reply
    [stream-error TYPE]  after the first piece, an error in the stream: Anthropic `event: error` with
                         error.type TYPE, OpenAI a `data: {"error": {type: TYPE, code: TYPE}}` chunk;
                         message "Stream failed (fake): TYPE". `[stream-error TYPE N]`: the first N times
    [stall]              after the first piece, nothing more until the client leaves
    [no-stream]          ignore `stream` and answer one JSON body

--script FILE (Anthropic API only) scripts tool use. FILE holds a JSON array of rules; for each
/v1/messages request the first rule that matches answers it, and requests no rule matches get the
reply text above. The last message is the last one with role "user" or "assistant" (Claude Code
also puts role "system" messages in the list). A rule:
    {"on": "user" | "tool_result",   what the request's last message must be: a user turn (default), or
                                     a user message with tool_result blocks
     "match": "substring",           optional: must occur in the last user text (the turn's prompt, for
                                     "tool_result" requests too)
     "result_match": "substring",    optional ("tool_result" only): must occur in the text of the last
                                     message's tool results
     "require_tool": "name",         optional: the request's tools array must hold a tool of this name
     "after_tool": "name",           optional ("tool_result" only): the results answer a call of this tool
     "tool_use": {"name": "...", "input": {...}}    answer with this tool call (stop_reason tool_use), or
     "text": "..."}                                 answer with this text (stop_reason end_turn)
In "text" and in the string values of "input", `${re:PATTERN}` is replaced by the first group (or the
whole match) of the last match of the regular expression PATTERN in the text of all the request's
messages (tool results included), or by "" when it does not match (PATTERN cannot contain "}");
`${reply}` is the default reply text.
"""

import argparse
import json
import re
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

REMINDER_PREFIX = "<system-reminder>"
RATE_LIMIT_MESSAGE = "Rate limited (fake): slow down"

LOCK = threading.Lock()
LOG = []
COUNTERS = {}
RELEASES = {}
SCRIPT = []


# MARK: reading requests


def block_texts(content, skip_reminders=True):
    """The texts of a message's content: a string, or the "text" blocks of a list."""
    if isinstance(content, str):
        return [] if (skip_reminders and content.lstrip().startswith(REMINDER_PREFIX)) else [content]
    texts = []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
                if skip_reminders and block["text"].lstrip().startswith(REMINDER_PREFIX):
                    continue
                texts.append(block["text"])
    return texts


def tool_result_text(content):
    """The text of the tool_result blocks of a message's content."""
    texts = []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                inner = block.get("content")
                if isinstance(inner, str):
                    texts.append(inner)
                elif isinstance(inner, list):
                    texts.extend(b.get("text", "") for b in inner if isinstance(b, dict) and b.get("type") == "text")
    return "\n".join(texts)


def answered_tools(messages, last):
    """The names of the tools whose results the message `last` carries."""
    ids = {b.get("tool_use_id") for b in last.get("content") or [] if isinstance(b, dict) and b.get("type") == "tool_result"}
    names = set()
    for message in messages:
        for block in message.get("content") if isinstance(message.get("content"), list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_use" and block.get("id") in ids:
                names.add(block.get("name"))
    return names


def has_tool_result(content):
    return isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)


def user_turns(messages):
    """(number of user turns, last user text), by the rule in the header."""
    turns, last = 0, ""
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict) or message.get("role") != "user" or has_tool_result(message.get("content")):
            continue
        texts = block_texts(message.get("content"))
        if texts:
            turns += 1
            last = "\n".join(texts)
    return turns, last


def all_text(messages):
    """Every text of the conversation, tool results included (for ${re:…} in scripts)."""
    parts = []
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict):
            parts.extend(block_texts(message.get("content"), skip_reminders=False))
            parts.append(tool_result_text(message.get("content")))
    return "\n".join(p for p in parts if p)


def reply_text(messages):
    turns, last = user_turns(messages)
    return f"reply {turns}: {last[:200]}"


def marker_count(text, name):
    match = re.search(r"\[" + re.escape(name) + r"\s+(\d+(?:\.\d+)?)\]", text)
    return float(match.group(1)) if match else None


def take(kind, api, text, limit):
    """True for the first `limit` requests to this API with this marker kind and last user text."""
    with LOCK:
        seen = COUNTERS.get((kind, api, text), 0)
        COUNTERS[(kind, api, text)] = seen + 1
    return seen < limit


def fault(text, api):
    """The error (status, headers, body) the markers in `text` ask for, or None."""
    anthropic = api == "anthropic"
    retry_after = marker_count(text, "retry-after")
    limit = marker_count(text, "rate-limit")
    if "[rate-limit-always]" in text or (limit is not None and take("rate-limit", api, text, int(limit))):
        headers = {"retry-after": str(int(retry_after))} if retry_after is not None else {"retry-after-ms": "50", "retry-after": "1"}
        body = ({"type": "error", "error": {"type": "rate_limit_error", "message": RATE_LIMIT_MESSAGE}} if anthropic else
                {"error": {"message": RATE_LIMIT_MESSAGE, "type": "requests", "param": None, "code": "rate_limit_exceeded"}})
        return 429, headers, body
    count = marker_count(text, "overloaded")
    if count is not None and take("overloaded", api, text, int(count)):
        if anthropic:
            return 529, {}, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded (fake)"}}
        return 503, {}, {"error": {"message": "The server is overloaded (fake)", "type": "server_error", "param": None, "code": "service_unavailable"}}
    count = marker_count(text, "server-error")
    if count is not None and take("server-error", api, text, int(count)):
        if anthropic:
            return 500, {}, {"type": "error", "error": {"type": "api_error", "message": "Internal server error (fake)"}}
        return 500, {}, {"error": {"message": "Internal server error (fake)", "type": "server_error", "param": None, "code": None}}
    if "[quota]" in text:
        if anthropic:
            return 400, {}, {"type": "error", "error": {"type": "invalid_request_error", "message": "Your credit balance is too low (fake)"}}
        return 429, {}, {"error": {"message": "You exceeded your current quota (fake)", "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}}
    return None


def rough_tokens(value):
    return max(1, len(json.dumps(value)) // 4) if value is not None else 1


# MARK: scripts


def expand(value, context):
    if isinstance(value, str):
        def regex(match):
            found = list(re.finditer(match.group(1), context["text"]))
            if not found:
                return ""
            last = found[-1]
            return last.group(1) if last.re.groups else last.group(0)
        return re.sub(r"\$\{re:([^}]*)\}", regex, value).replace("${reply}", context["reply"])
    if isinstance(value, list):
        return [expand(v, context) for v in value]
    if isinstance(value, dict):
        return {k: expand(v, context) for k, v in value.items()}
    return value


def scripted(body):
    """The content blocks and stop reason a script rule gives this request, or None."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    turns = [m for m in messages if m.get("role") in ("user", "assistant")]
    last = turns[-1] if turns else {}
    is_tool_result = last.get("role") == "user" and has_tool_result(last.get("content"))
    answered = answered_tools(messages, last) if is_tool_result else set()
    tools = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
    _, user_text = user_turns(messages)
    for rule in SCRIPT:
        on = rule.get("on", "user")
        if (on == "tool_result") != is_tool_result:
            continue
        if "after_tool" in rule and rule["after_tool"] not in answered:
            continue
        if "match" in rule and rule["match"] not in user_text:
            continue
        if "result_match" in rule and (not is_tool_result or rule["result_match"] not in tool_result_text(last.get("content"))):
            continue
        if "require_tool" in rule and rule["require_tool"] not in tools:
            continue
        context = {"text": all_text(messages), "reply": reply_text(messages)}
        if "tool_use" in rule:
            call = rule["tool_use"]
            block = {"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:24], "name": call["name"],
                     "input": expand(call.get("input", {}), context)}
            return [block], "tool_use"
        return [{"type": "text", "text": expand(rule.get("text", "${reply}"), context)}], "end_turn"
    return None


# MARK: the server


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-provider/1"

    def log_message(self, format, *args):  # quiet: the log is at /_test/log
        pass

    def do_GET(self):
        self.handle_request("GET")

    def do_POST(self):
        self.handle_request("POST")

    def do_DELETE(self):
        self.handle_request("DELETE")

    def do_HEAD(self):
        self.handle_request("HEAD")

    # Every request is logged once, with the status it got.
    def handle_request(self, method):
        url = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        entry = {"method": method, "path": url.path, "query": url.query,
                 "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body, "status": None}
        if url.path == "/_test/log" and method == "GET":
            with LOCK:
                snapshot = json.dumps(LOG)
            return self.send_json(200, snapshot)
        if url.path == "/_test/release" and method == "POST":
            name = (parse_qs(url.query).get("name") or [""])[0]
            with LOCK:
                RELEASES.setdefault(name, threading.Event()).set()
            return self.send_json(200, {"released": name})
        if url.path == "/_test/reset" and method == "POST":
            with LOCK:
                LOG.clear()
                COUNTERS.clear()
            return self.send_json(200, {"ok": True})
        with LOCK:
            LOG.append(entry)
        self.entry = entry
        try:
            if url.path == "/v1/messages" and method == "POST":
                self.anthropic_messages(body, parse_qs(url.query))
            elif url.path == "/v1/messages/count_tokens" and method == "POST":
                if self.anthropic_auth():
                    self.send_json(200, {"input_tokens": rough_tokens((body or {}).get("messages"))})
            elif url.path == "/v1/models" and method == "GET":
                self.send_json(200, {"data": [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                                              for m in ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-5")],
                                     "has_more": False, "first_id": None, "last_id": None})
            elif url.path == "/v1/chat/completions" and method == "POST":
                self.openai_chat(body)
            else:
                self.send_json(404, {"type": "error", "error": {"type": "not_found_error", "message": f"no route {method} {url.path} (fake)"}})
        except (BrokenPipeError, ConnectionResetError):
            entry["status"] = entry["status"] or 499
        except Exception as error:  # a bug here must show in the log, not hang the client
            entry["error"] = repr(error)
            if entry["status"] is None:
                self.send_json(500, {"type": "error", "error": {"type": "api_error", "message": f"fake provider bug: {error!r}"}})
            raise

    def send_json(self, status, payload, headers=None):
        data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        self.send_raw(status, data, "application/json", headers)

    def send_raw(self, status, data, content_type, headers=None):
        if getattr(self, "entry", None) is not None:
            self.entry["status"] = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_fake_" + uuid.uuid4().hex[:12])
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    # MARK: Anthropic

    def anthropic_auth(self):
        key = self.headers.get("x-api-key")
        if not key or key == "bad-key":
            self.send_json(401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
            return False
        if not self.headers.get("anthropic-version"):
            self.send_json(400, {"type": "error", "error": {"type": "invalid_request_error", "message": "anthropic-version: header is required"}})
            return False
        return True

    def anthropic_messages(self, body, query):
        if not self.anthropic_auth():
            return
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return self.send_json(400, {"type": "error", "error": {"type": "invalid_request_error", "message": "messages: field required"}})
        messages = body["messages"]
        _, last = user_turns(messages)
        slow = marker_count(last, "slow")
        if slow:
            time.sleep(slow)
        error = fault(last, "anthropic")
        if error:
            return self.send_json(error[0], error[2], error[1])
        if "[malformed]" in last:
            return self.send_json(200, {"unexpected": True})
        if "[garbage]" in last:
            return self.send_raw(200, b"not json at all", "application/json")
        content, stop_reason = scripted(body) or ([{"type": "text", "text": reply_text(messages)}], "end_turn")
        model = body.get("model") or "claude-fake"
        message_id = "msg_fake_" + uuid.uuid4().hex[:20]
        usage = {"input_tokens": rough_tokens(messages), "output_tokens": rough_tokens(content),
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        if not body.get("stream") or "[no-stream]" in last:
            return self.send_json(200, {"id": message_id, "type": "message", "role": "assistant", "model": model,
                                        "content": content, "stop_reason": stop_reason, "stop_sequence": None, "usage": usage})
        self.start_stream()
        self.entry["usage"] = {"input_tokens": usage["input_tokens"], "output_tokens": usage["output_tokens"]}
        start_usage = dict(usage, output_tokens=1)
        self.event("message_start", {"type": "message_start", "message": {
            "id": message_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": start_usage}})
        for index, block in enumerate(content):
            if block["type"] == "text":
                self.event("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": {"type": "text", "text": ""}})
                if index == 0:
                    self.event("ping", {"type": "ping"})
                text = block["text"]
                for number, piece in enumerate([text[i:i + 40] for i in range(0, len(text), 40)] or [""]):
                    if number > 0 and not self.between_pieces(last, "anthropic"):
                        return
                    self.event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                       "delta": {"type": "text_delta", "text": piece}})
                if not self.between_pieces(last, "anthropic", at_end=True):
                    return
            else:  # tool_use
                self.event("content_block_start", {"type": "content_block_start", "index": index, "content_block": {
                    "type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}})
                if index == 0:
                    self.event("ping", {"type": "ping"})
                self.event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                   "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}})
            self.event("content_block_stop", {"type": "content_block_stop", "index": index})
        self.event("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                     "usage": {"output_tokens": usage["output_tokens"]}})
        self.event("message_stop", {"type": "message_stop"})
        self.end_stream()

    def start_stream(self):
        self.entry["status"] = 200
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("request-id", "req_fake_" + uuid.uuid4().hex[:12])
        self.end_headers()

    def end_stream(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def event(self, name, payload):
        """One server-sent event (name None: a bare `data:` event, as OpenAI sends), as one HTTP chunk."""
        data = (f"event: {name}\n" if name else "") + f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"
        data = data.encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def between_pieces(self, last, api, at_end=False):
        """Applies the stream markers after a piece went out; False when the stream must end here
        (cut, error event, stall: the caller sends nothing more)."""
        hold = re.search(r"\[hold ([^\]\s]+)\]", last)
        if hold and not at_end:
            with LOCK:
                released = RELEASES.setdefault(hold.group(1), threading.Event())
            released.wait(300)
        drip = marker_count(last, "drip")
        if drip and not at_end:
            time.sleep(drip)
        cut = marker_count(last, "cut")
        if cut is not None and take("cut", api, last, int(cut)):
            self.end_stream()
            return False
        error = re.search(r"\[stream-error ([a-z_]+)(?:\s+(\d+))?\]", last)
        if error and (error.group(2) is None or take("stream-error", api, last, int(error.group(2)))):
            kind, message = error.group(1), f"Stream failed (fake): {error.group(1)}"
            if api == "anthropic":
                self.event("error", {"type": "error", "error": {"type": kind, "message": message}})
            else:
                self.event(None, {"error": {"message": message, "type": kind, "param": None, "code": kind}})
            self.end_stream()
            return False
        if "[stall]" in last:
            self.wfile.flush()
            try:
                self.connection.recv(1)  # until the client leaves
            except OSError:
                pass
            return False
        return True

    # MARK: OpenAI-compatible

    def openai_chat(self, body):
        auth = self.headers.get("authorization")
        if auth is not None and auth.strip() == "Bearer bad-key":
            return self.send_json(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                                  "param": None, "code": "invalid_api_key"}})
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return self.send_json(400, {"error": {"message": "'messages' is a required property", "type": "invalid_request_error",
                                                  "param": "messages", "code": None}})
        messages = body["messages"]
        _, last = user_turns(messages)
        slow = marker_count(last, "slow")
        if slow:
            time.sleep(slow)
        error = fault(last, "openai")
        if error:
            return self.send_json(error[0], error[2], error[1])
        if "[malformed]" in last:
            return self.send_json(200, {"unexpected": True})
        if "[garbage]" in last:
            return self.send_raw(200, b"not json at all", "application/json")
        text = reply_text(messages)
        prompt_tokens, completion_tokens = rough_tokens(messages), rough_tokens(text)
        if body.get("stream") and "[no-stream]" not in last:
            return self.openai_stream(body, last, text, prompt_tokens, completion_tokens)
        self.send_json(200, {"id": "chatcmpl-fake" + uuid.uuid4().hex[:20], "object": "chat.completion",
                             "created": int(time.time()), "model": body.get("model") or "fake",
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                       "total_tokens": prompt_tokens + completion_tokens}})


    def openai_stream(self, body, last, text, prompt_tokens, completion_tokens):
        self.start_stream()
        base = {"id": "chatcmpl-fake" + uuid.uuid4().hex[:20], "object": "chat.completion.chunk",
                "created": int(time.time()), "model": body.get("model") or "fake"}

        def chunk(delta, finish_reason=None, **extra):
            self.event(None, dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": finish_reason}], **extra))

        chunk({"role": "assistant", "content": ""})
        for number, piece in enumerate([text[i:i + 40] for i in range(0, len(text), 40)] or [""]):
            if number > 0 and not self.between_pieces(last, "openai"):
                return
            chunk({"content": piece})
        if not self.between_pieces(last, "openai", at_end=True):
            return
        chunk({}, "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            self.entry["usage"] = {"input_tokens": prompt_tokens, "output_tokens": completion_tokens}
            self.event(None, dict(base, choices=[], usage={"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                                           "total_tokens": prompt_tokens + completion_tokens}))
        self.event(None, "[DONE]")
        self.end_stream()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    parser = argparse.ArgumentParser(description="A fake Anthropic / OpenAI-compatible provider for tests.")
    parser.add_argument("--port", type=int, default=0, help="port to bind on 127.0.0.1 (0: any free port)")
    parser.add_argument("--script", help="a JSON file of scripted answers (see the header of this file)")
    parser.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate (and --tls-key)")
    parser.add_argument("--tls-key", help="the PEM private key of --tls-cert")
    args = parser.parse_args()
    if args.script:
        with open(args.script) as handle:
            SCRIPT.extend(json.load(handle))
    server = Server(("127.0.0.1", args.port), Handler)
    if args.tls_cert:
        import ssl
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"PORT {server.server_address[1]}", flush=True)

    def stop(signum, frame):
        # shutdown() waits for serve_forever to return, so it must run on another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A fake OpenCode server (`opencode serve`) for bgq's tests of the opencode-server backend: the real HTTP
protocol on a real socket, scripted agent timelines, Python standard library only.

Usage:
    python3 Tests/Servers/fake_opencode.py [--port 0] [--password P] [--username U] [--state-file F]
                                           [--verbose]

It binds 127.0.0.1 (port 0 picks a free port; SO_REUSEADDR is set, so a restart can take the same port
again at once), prints `PORT <n>` as its first stdout line and flushes, then serves HTTP/1.1 with one
thread per connection (keep-alive works; every response carries Content-Length, except 204 which by
RFC 9110 carries neither a body nor Content-Length). SIGTERM or SIGINT: clean exit, status 0.

Authentication (as OpenCode with OPENCODE_SERVER_PASSWORD): with --password, every request except
/_test/* and OPTIONS needs `Authorization: Basic base64(user:password)`, user = --username or `opencode`;
otherwise 401, body `Unauthorized` (text/plain), header `WWW-Authenticate: Basic realm="Secure Area"`
(what Hono's basicAuth answers).

Directory scope: the request's directory is `?directory=` if given, else the header x-opencode-directory
(percent-decoded), else the server's working directory; relative paths resolve against the server's
working directory and the path is normalised (no trailing slash). A session remembers the directory of
the request that created it. GET /session/status and GET /session list only sessions of the request's
directory; everything addressed by session id works from any directory (as OpenCode's global database).

Endpoints (JSON; times are epoch milliseconds; ids look like OpenCode's: `ses_`/`msg_`/`prt_` + 12 hex
digits of time + 14 base62 characters, 26 characters after the prefix; session ids descend in time,
message and part ids ascend)
    GET    /global/health                {"healthy": true, "version": "0.0.0-fake"}
    POST   /session                      body {parentID?, title?, permission?} -> Session {id, slug,
                                         version, projectID, directory, parentID?, title, time{created,
                                         updated}}. Default title `New session - <ISO time>` (`Child
                                         session - …` with a parentID).
    GET    /session                      sessions of the request's directory, most recently updated first
    GET    /session/status               {sessionID: {"type": "busy"} | {"type": "retry", "attempt": n,
                                         "message": "...", "next": epochms}}; idle sessions are absent
    GET    /session/:id                  Session, or 404 {"name": "NotFoundError", "data": {"message":
                                         "Session not found: <id>"}}; an id not starting with `ses` is
                                         400 (OpenCode validates this parameter)
    DELETE /session/:id                  true (the session, its messages, todos, timeline and child
                                         sessions are gone; later calls 404)
    POST   /session/:id/prompt_async     body {parts: [{type: "text", text}, ...], model?{providerID,
                                         modelID}, agent?, system?, noReply?, tools?, messageID?,
                                         variant?} -> 204. Appends the user message (info.agent and
                                         info.model recorded; defaults "build" and fake/fake-model) and,
                                         unless noReply is true, starts the timeline its first text part
                                         asks for. A prompt while the session is still running queues
                                         behind the current run (as OpenCode's loop does: the session
                                         stays busy in between); behind a [hang] run it waits for the
                                         abort, which drops it.
    POST   /session/:id/message          the same, but answers when the run has ended: {info, parts} of
                                         its assistant message (aborted runs too: with their error).
                                         With noReply: the user message at once.
    GET    /session/:id/message[?limit=N]   [{info, parts}] oldest first (limit: the last N)
    GET    /session/:id/message/:msgID   {info, parts}
    GET    /session/:id/todo             [{id, content, status, priority}] ([] for an unknown session:
                                         OpenCode reads todos by id without checking the session)
    POST   /session/:id/abort            true. The running timeline stops: its assistant message gets
                                         error {"name": "MessageAbortedError", "data": {"message": "The
                                         operation was aborted."}} and time.completed, unfinished tool
                                         parts become status "error", queued prompts are dropped, the
                                         session goes idle.
    OPTIONS anything                     204 (CORS preflight; no auth, as OpenCode)
    anything else                        404, body `404 Not Found` (text/plain, Hono's default)
    Request bodies follow Hono's validator: the body is read as JSON only when Content-Type is JSON
    (application/json, optionally with parameters); otherwise it is taken as {} (so a prompt without that
    header fails validation with 400). Malformed JSON (an empty body with a JSON content type included,
    as Bun's request.json() rejects it) or a body failing the schema: 400
    {"data": <body>, "errors": [{"message": ..., "path": [...]}], "success": false}. An exception in a
    handler: 500 {"name": "UnknownError", "data": {"message": <traceback>}}, traceback on stderr.

Messages. User: info {id, sessionID, role: "user", time{created}, agent, model{providerID, modelID},
system?}, parts as sent plus id, sessionID, messageID. Assistant: info {id, sessionID, role: "assistant",
time{created, completed?}, error?{name, data}, parentID (the user message), modelID, providerID, mode,
agent, path{cwd, root}, cost, tokens{input, output, reasoning, cache{read, write}}, finish?}. Parts (each
with id, sessionID, messageID): step-start; text{text, time{start, end}}; reasoning{text, time};
tool{callID, tool, state{status running|completed|error, input, output?, error?, title?, metadata?,
time}}; step-finish{reason, cost, tokens}.

Timelines. Markers anywhere in the prompt's first text part; S is seconds (a float); times are relative
to when the prompt arrived. Markers combine (e.g. `[retry 1] [busy 2] [todos 5]`).
    (none)          busy 0.5 s, then the assistant message gets text "done: <first 60 characters of the
                    prompt>" and step-finish{reason: "stop"}, time.completed and finish "stop"; idle
                    (absent from the status map). The assistant message (no parts yet) exists from the
                    start, step-start is added when work starts.
    [busy S]        busy S seconds; a tool part (tool "read") appears at S/2 with status "running", is
                    "completed" at 3S/4 (followed by step-finish{reason: "tool-calls"} and a new
                    step-start), then the answer at S.
    [todos S]       answer after 0.3 s and idle, but the todo list holds one "in_progress" todo from the
                    prompt until S seconds after it, then that todo is "completed".
    [retry S]       status {"type": "retry", "attempt": 1, "message": "Rate limited, retrying", "next":
                    <prompt time + S>} for S seconds, then busy 0.3 s, then the answer.
    [hang]          busy until aborted (a [busy S] tool part still appears and completes).
    [no-output]     busy 0.3 s, then idle; the assistant message has only step-start and step-finish.
    [error]         busy 0.3 s, then idle; the assistant message has error {"name": "APIError", "data":
                    {"message": "Provider said no (fake)", "statusCode": 500, "isRetryable": false}},
                    time.completed, and no text.
    [reasoning]     (extra) the answer is a reasoning part ("thinking: <first 60 characters>") instead
                    of the text part: output that is only reasoning.
    [vanish S]      S seconds after the prompt the session is deleted (404 from then on).
    [bad-json]      from now on GET /session/:id/message answers 200 with the body `{not json`.
    [bad-shape]     from now on GET /session/:id/message answers 200 with
                    {"unexpected": "object instead of array"}.
    [idle-status]   from now on, while idle, the session is listed in the status map as {"type": "idle"}
                    instead of being absent (as some OpenCode versions do).
Without [busy S], runs with [todos], [retry], [no-output], [error] or [hang] are busy 0.3 s.

State is advanced lazily: every request first applies all timeline events that are due, and POST
/session/:id/message waits on those events, so the observable state is exact to the millisecond.

--state-file F: sessions, messages, todos, status, runs and pending timeline events (absolute epoch
times) are written to F after every change (temp file + rename) and loaded at start. SIGKILL the server,
start it again with `--port <same> --state-file F` and a running session carries on with its timeline.

Test hooks (no authentication, not logged)
    GET  /_test/log      a JSON array of every other request received so far: {method, path, query
                         (name -> first value), headers (lower-cased names), body (parsed JSON, or null),
                         status, time}
    POST /_test/reset    clears the log
    GET  /_test/crash    raises inside the handler (to check the 500 path)

Deviations from real OpenCode (on purpose)
    * prompt_async and POST message to an unknown session answer 404 NotFoundError at once; OpenCode
      answers 204 and fails in the background.
    * Malformed JSON is 400 with the JSON BadRequestError shape; OpenCode (Hono) answers 400 with the text
      `Malformed JSON in request body`.
    * Unknown paths are 404; OpenCode proxies unmatched paths to its web app (app.opencode.ai).
    * Runs survive a restart (--state-file); a real OpenCode that is killed loses the running loop.
    * POST /session/:id/message answers with Content-Length; OpenCode streams it (chunked).
    * No SSE (/event), no /doc, no permissions, no providers: only what bgq uses.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import bisect
import copy
import datetime
import hashlib
import json
import os
import re
import secrets
import signal
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

VERSION = "0.0.0-fake"
DEFAULT_AGENT = "build"
DEFAULT_MODEL = {"providerID": "fake", "modelID": "fake-model"}
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
JSON_CONTENT_TYPE = re.compile(r"^application/([a-z-.]+\+)?json(;\s*[a-zA-Z0-9-]+=([^;]+))*$", re.IGNORECASE)
MARKER = re.compile(
    r"\[(busy|todos|retry|vanish|hang|no-output|error|reasoning|bad-json|bad-shape|idle-status)"
    r"(?:\s+([0-9]*\.?[0-9]+))?\s*\]"
)
MARKER_DEFAULTS = {"busy": 0.5, "todos": 2.0, "retry": 1.0, "vanish": 1.0}
ABORTED_ERROR = {"name": "MessageAbortedError", "data": {"message": "The operation was aborted."}}
API_ERROR = {
    "name": "APIError",
    "data": {"message": "Provider said no (fake)", "statusCode": 500, "isRetryable": False},
}
MAX_BODY = 64 * 1024 * 1024
SLUG_WORDS = (
    ["brave", "calm", "eager", "gentle", "happy", "jolly", "lucky", "mighty", "quiet", "swift", "witty"],
    ["falcon", "otter", "panda", "tiger", "wolf", "comet", "river", "cedar", "harbor", "meadow", "pixel"],
)


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


# ---------------------------------------------------------------------------------------------------------
# Identifiers, as OpenCode's Identifier.ascending / descending

_id_lock = threading.Lock()
_id_last = 0
_id_counter = 0


def new_id(prefix: str, descending: bool = False) -> str:
    global _id_last, _id_counter
    with _id_lock:
        ts = now_ms()
        if ts != _id_last:
            _id_last, _id_counter = ts, 0
        _id_counter += 1
        value = ts * 0x1000 + _id_counter
    if descending:
        value = ~value
    value &= 0xFFFFFFFFFFFF
    return f"{prefix}_{value:012x}" + "".join(secrets.choice(BASE62) for _ in range(14))


# ---------------------------------------------------------------------------------------------------------
# Errors and responses


class HTTPError(Exception):
    def __init__(self, status: int, body, content_type: str = "application/json", headers=None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}


def not_found(message: str) -> HTTPError:
    return HTTPError(404, {"name": "NotFoundError", "data": {"message": message}})


def bad_request(data, errors) -> HTTPError:
    return HTTPError(400, {"data": data, "errors": errors, "success": False})


def session_not_found(sid: str) -> HTTPError:
    return not_found(f"Session not found: {sid}")


def parse_markers(text: str) -> dict:
    found = {}
    for name, arg in MARKER.findall(text or ""):
        if name in MARKER_DEFAULTS:
            found[name] = float(arg) if arg else MARKER_DEFAULTS[name]
        else:
            found[name] = True
    return found


def zero_tokens() -> dict:
    return {"input": 0, "output": 0, "reasoning": 0, "cache": {"read": 0, "write": 0}}


def deep_merge(target: dict, patch: dict) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            deep_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


# ---------------------------------------------------------------------------------------------------------
# The store: all state, behind one lock, advanced lazily by timeline events


class Store:
    def __init__(self, state_file: str | None, server_dir: str):
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.state_file = state_file
        self.server_dir = server_dir
        self.sessions: dict[str, dict] = {}
        self.messages: dict[str, list] = {}
        self.todos: dict[str, list] = {}
        self.status: dict[str, dict] = {}
        self.flags: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.events: list[dict] = []
        self.seq = 0
        if state_file and os.path.exists(state_file):
            self.load()

    # -- persistence ------------------------------------------------------------------------------------

    def load(self) -> None:
        with open(self.state_file, encoding="utf-8") as f:
            data = json.load(f)
        self.sessions = data.get("sessions", {})
        self.messages = data.get("messages", {})
        self.todos = data.get("todos", {})
        self.status = data.get("status", {})
        self.flags = data.get("flags", {})
        self.runs = data.get("runs", {})
        self.events = sorted(data.get("events", []), key=lambda e: (e["at"], e["seq"]))
        self.seq = data.get("seq", 0)

    def save(self) -> None:
        if not self.state_file:
            return
        data = {
            "format": 1,
            "savedAt": now_ms(),
            "sessions": self.sessions,
            "messages": self.messages,
            "todos": self.todos,
            "status": self.status,
            "flags": self.flags,
            "runs": self.runs,
            "events": self.events,
            "seq": self.seq,
        }
        tmp = f"{self.state_file}.tmp.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, self.state_file)

    def changed(self) -> None:
        self.save()
        self.cond.notify_all()

    # -- timeline events --------------------------------------------------------------------------------

    def schedule(self, at: float, sid: str, op: str, run: str | None = None, **data) -> None:
        self.seq += 1
        event = {"at": int(at), "seq": self.seq, "session": sid, "run": run, "op": op, "data": data}
        bisect.insort(self.events, event, key=lambda e: (e["at"], e["seq"]))

    def advance(self) -> bool:
        now = now_ms()
        applied = False
        while self.events and self.events[0]["at"] <= now:
            event = self.events.pop(0)
            self.apply(event)
            applied = True
        if applied:
            self.changed()
        return applied

    def next_event_in(self) -> float | None:
        if not self.events:
            return None
        return max(0.0, (self.events[0]["at"] - now_ms()) / 1000)

    def apply(self, event: dict) -> None:
        sid, op, data = event["session"], event["op"], copy.deepcopy(event["data"])
        session = self.sessions.get(sid)
        if session is None:
            return
        if op == "status":
            if data["status"] is None:
                self.status.pop(sid, None)
            else:
                self.status[sid] = data["status"]
        elif op == "message":
            self.messages.setdefault(sid, []).append(data["message"])
        elif op == "part":
            message = self.find_message(sid, data["messageID"])
            if message is not None:
                part = data["part"]
                for index, existing in enumerate(message["parts"]):
                    if existing["id"] == part["id"]:
                        message["parts"][index] = part
                        break
                else:
                    message["parts"].append(part)
        elif op == "info":
            message = self.find_message(sid, data["messageID"])
            if message is not None:
                deep_merge(message["info"], data["patch"])
        elif op == "todos":
            self.todos[sid] = data["todos"]
        elif op == "run_done":
            run = self.runs.get(data["runID"])
            if run is not None and run["state"] == "scheduled":
                run["state"] = "done"
        elif op == "vanish":
            self.delete_session(sid)
            return
        session["time"]["updated"] = max(session["time"]["updated"], event["at"])

    # -- queries ----------------------------------------------------------------------------------------

    def find_message(self, sid: str, mid: str) -> dict | None:
        for message in self.messages.get(sid, []):
            if message["info"]["id"] == mid:
                return message
        return None

    def require(self, sid: str) -> dict:
        session = self.sessions.get(sid)
        if session is None:
            raise session_not_found(sid)
        return session

    def status_map(self, directory: str) -> dict:
        result = {}
        for sid, session in self.sessions.items():
            if session["directory"] != directory:
                continue
            status = self.status.get(sid)
            if status is not None:
                result[sid] = status
            elif self.flags.get(sid, {}).get("idle-status"):
                result[sid] = {"type": "idle"}
        return result

    # -- mutations --------------------------------------------------------------------------------------

    def create_session(self, body: dict, directory: str) -> dict:
        now = now_ms()
        parent = body.get("parentID")
        title = body.get("title")
        if title is None:
            title = ("Child session - " if parent else "New session - ") + iso(now)
        info = {
            "id": new_id("ses", descending=True),
            "slug": f"{secrets.choice(SLUG_WORDS[0])}-{secrets.choice(SLUG_WORDS[1])}",
            "version": VERSION,
            "projectID": hashlib.sha1(directory.encode()).hexdigest(),
            "directory": directory,
            "title": title,
            "time": {"created": now, "updated": now},
        }
        if parent:
            info["parentID"] = parent
        if "permission" in body:
            info["permission"] = body["permission"]
        self.sessions[info["id"]] = info
        self.messages[info["id"]] = []
        self.todos[info["id"]] = []
        self.changed()
        return info

    def delete_session(self, sid: str) -> None:
        children = [s for s, info in self.sessions.items() if info.get("parentID") == sid]
        for child in children:
            self.delete_session(child)
        for table in (self.sessions, self.messages, self.todos, self.status, self.flags):
            table.pop(sid, None)
        self.events = [e for e in self.events if e["session"] != sid]
        for run in self.runs.values():
            if run["session"] == sid and run["state"] in ("scheduled", "queued"):
                run["state"] = "deleted"
        self.changed()

    def prompt(self, sid: str, body: dict) -> tuple[str | None, str]:
        """Appends the user message and schedules the run. Returns (run id or None, user message id)."""
        session = self.require(sid)
        now = now_ms()
        agent = body.get("agent") or DEFAULT_AGENT
        model = body.get("model") or DEFAULT_MODEL
        user_id = body.get("messageID") or new_id("msg")
        info = {
            "id": user_id,
            "sessionID": sid,
            "role": "user",
            "time": {"created": now},
            "agent": agent,
            "model": {"providerID": model["providerID"], "modelID": model["modelID"]},
        }
        for key in ("system", "tools", "variant"):
            if body.get(key) is not None:
                info[key] = body[key]
        parts = []
        for part in body["parts"]:
            part = dict(part)
            part["id"] = part.get("id") or new_id("prt")
            part["sessionID"] = sid
            part["messageID"] = user_id
            parts.append(part)
        self.messages.setdefault(sid, []).append({"info": info, "parts": parts})
        session["time"]["updated"] = now

        text = next((p.get("text", "") for p in body["parts"] if p.get("type") == "text"), "")
        markers = parse_markers(text)
        for flag in ("bad-json", "bad-shape", "idle-status"):
            if flag in markers:
                self.flags.setdefault(sid, {})[flag] = True
        if "todos" in markers:
            todo = {"id": "todo_" + secrets.token_hex(4), "content": f"Fake work for: {text[:40]}",
                    "status": "in_progress", "priority": "high"}
            self.schedule(now, sid, "todos", todos=[todo])
            self.schedule(now + markers["todos"] * 1000, sid, "todos", todos=[dict(todo, status="completed")])
        if "vanish" in markers:
            self.schedule(now + markers["vanish"] * 1000, sid, "vanish")

        if body.get("noReply"):
            self.advance()
            self.changed()
            return None, user_id

        run = {"id": "run_" + secrets.token_hex(6), "session": sid, "userMessageID": user_id,
               "assistantMessageID": None, "state": "scheduled", "endsAt": None}
        active = [r for r in self.runs.values() if r["session"] == sid and r["state"] in ("scheduled", "queued")]
        base = now
        if active:
            last = active[-1]
            if last["state"] == "queued" or last["endsAt"] is None:
                run["state"] = "queued"  # behind a run that only an abort ends; the abort drops it
            else:
                base = max(now, last["endsAt"] + 1)
                # The loop goes on with the queued prompt: no idle moment between the two runs.
                self.events = [e for e in self.events if not (
                    e["run"] == last["id"] and e["op"] == "status" and e["data"].get("status") is None)]
        self.runs[run["id"]] = run
        if run["state"] == "scheduled":
            self.build_timeline(session, run, base, text, markers, agent, model, user_id)
        self.advance()
        self.changed()
        return run["id"], user_id

    def build_timeline(self, session, run, t0, text, markers, agent, model, user_id) -> None:
        sid, rid = session["id"], run["id"]

        def at(when, op, **data):
            self.schedule(when, sid, op, run=rid, **data)

        def part(kind, when, **fields):
            return {"id": new_id("prt"), "sessionID": sid, "messageID": aid, "type": kind, **fields}

        retry = markers.get("retry", 0.0) * 1000
        if "busy" in markers:
            busy = markers["busy"] * 1000
        elif any(k in markers for k in ("todos", "retry", "no-output", "error", "hang")):
            busy = 300.0
        else:
            busy = 500.0

        aid = new_id("msg")
        run["assistantMessageID"] = aid
        info = {
            "id": aid,
            "sessionID": sid,
            "role": "assistant",
            "time": {"created": int(t0)},
            "parentID": user_id,
            "modelID": model["modelID"],
            "providerID": model["providerID"],
            "mode": agent,
            "agent": agent,
            "path": {"cwd": session["directory"], "root": session["directory"]},
            "cost": 0,
            "tokens": zero_tokens(),
        }
        if retry:
            at(t0, "status", status={"type": "retry", "attempt": 1, "message": "Rate limited, retrying",
                                     "next": int(t0 + retry)})
        else:
            at(t0, "status", status={"type": "busy"})
        at(t0, "message", message={"info": info, "parts": []})
        work = t0 + retry
        if retry:
            at(work, "status", status={"type": "busy"})
        at(work, "part", messageID=aid, part=part("step-start", work))

        if "busy" in markers:
            start, end = work + busy / 2, work + busy * 3 / 4
            call = "call_" + "".join(secrets.choice(BASE62) for _ in range(24))
            path = os.path.join(session["directory"], "README.md")
            tool_input = {"filePath": path}
            tool = part("tool", start, callID=call, tool="read", state={
                "status": "running", "input": tool_input, "title": "README.md", "metadata": {},
                "time": {"start": int(start)}})
            at(start, "part", messageID=aid, part=tool)
            done = dict(tool, state={
                "status": "completed", "input": tool_input,
                "output": "<file>\n00001| # Fake README\n</file>", "title": "README.md",
                "metadata": {"preview": "# Fake README"}, "time": {"start": int(start), "end": int(end)}})
            at(end, "part", messageID=aid, part=done)
            tokens = {"input": 900, "output": 40, "reasoning": 0, "cache": {"read": 0, "write": 0}}
            at(end, "part", messageID=aid, part=part("step-finish", end, reason="tool-calls", cost=0, tokens=tokens))
            at(end, "part", messageID=aid, part=part("step-start", end))

        if "hang" in markers:
            run["endsAt"] = None
            return

        end = work + busy
        tokens = {"input": 1200, "output": 60, "reasoning": 0, "cache": {"read": 0, "write": 0}}
        if "error" in markers:
            at(end, "info", messageID=aid, patch={"error": API_ERROR, "time": {"completed": int(end)}})
        else:
            if "no-output" not in markers:
                snippet = text[:60]
                if "reasoning" in markers:
                    out = part("reasoning", end, text=f"thinking: {snippet}",
                               time={"start": int(work), "end": int(end)})
                else:
                    out = part("text", end, text=f"done: {snippet}", time={"start": int(end), "end": int(end)})
                at(end, "part", messageID=aid, part=out)
            at(end, "part", messageID=aid, part=part("step-finish", end, reason="stop", cost=0, tokens=tokens))
            at(end, "info", messageID=aid,
               patch={"time": {"completed": int(end)}, "finish": "stop", "tokens": tokens, "cost": 0})
        at(end, "status", status=None)
        at(end, "run_done", runID=rid)
        run["endsAt"] = int(end)

    def abort(self, sid: str) -> None:
        if sid not in self.sessions:
            return
        now = now_ms()
        live = {r["id"] for r in self.runs.values() if r["session"] == sid and r["state"] in ("scheduled", "queued")}
        if not live and sid not in self.status:
            return
        self.events = [e for e in self.events if e["run"] is None or e["run"] not in live]
        for rid in live:
            run = self.runs[rid]
            message = self.find_message(sid, run["assistantMessageID"]) if run["assistantMessageID"] else None
            if message is not None and "completed" not in message["info"]["time"]:
                message["info"]["error"] = copy.deepcopy(ABORTED_ERROR)
                message["info"]["time"]["completed"] = now
                for part in message["parts"]:
                    state = part.get("state") if part.get("type") == "tool" else None
                    if state and state.get("status") in ("pending", "running"):
                        part["state"] = {"status": "error", "input": state.get("input", {}),
                                         "error": "Tool execution aborted", "metadata": {},
                                         "time": {"start": state.get("time", {}).get("start", now), "end": now}}
            run["state"] = "aborted"
        self.status.pop(sid, None)
        self.sessions[sid]["time"]["updated"] = now
        self.changed()

    def wait_run(self, rid: str) -> dict | None:
        with self.cond:
            while True:
                self.advance()
                run = self.runs.get(rid)
                if run is None or run["state"] not in ("scheduled", "queued"):
                    return run
                delay = self.next_event_in()
                self.cond.wait(timeout=0.25 if delay is None else min(0.25, max(0.002, delay)))


# ---------------------------------------------------------------------------------------------------------
# Validation of request bodies (the parts of OpenCode's zod schemas that matter)


def check_type(errors, value, kind, path, optional=True):
    if value is None:
        if not optional:
            errors.append({"code": "invalid_type", "expected": kind, "path": path, "message": "Required"})
        return False
    python = {"string": str, "boolean": bool, "object": dict, "array": list}[kind]
    if not isinstance(value, python):
        errors.append({"code": "invalid_type", "expected": kind, "path": path,
                       "message": f"Expected {kind}, received {type(value).__name__}"})
        return False
    return True


def validate_create(body):
    errors = []
    if not isinstance(body, dict):
        return [{"code": "invalid_type", "expected": "object", "path": [], "message": "Expected object"}]
    if check_type(errors, body.get("parentID"), "string", ["parentID"]) and not body["parentID"].startswith("ses"):
        errors.append({"code": "invalid_string", "path": ["parentID"], "message": 'Invalid input: must start with "ses"'})
    check_type(errors, body.get("title"), "string", ["title"])
    return errors


PART_FIELDS = {"text": ["text"], "file": ["mime", "url"], "agent": ["name"], "subtask": ["prompt", "description", "agent"]}


def validate_prompt(body):
    errors = []
    if not isinstance(body, dict):
        return [{"code": "invalid_type", "expected": "object", "path": [], "message": "Expected object"}]
    if check_type(errors, body.get("parts"), "array", ["parts"], optional=False):
        for index, part in enumerate(body["parts"]):
            if not check_type(errors, part, "object", ["parts", index], optional=False):
                continue
            kind = part.get("type")
            if kind not in PART_FIELDS:
                errors.append({"code": "invalid_union_discriminator", "path": ["parts", index, "type"],
                               "message": "Invalid discriminator value. Expected 'text' | 'file' | 'agent' | 'subtask'"})
                continue
            for field in PART_FIELDS[kind]:
                check_type(errors, part.get(field), "string", ["parts", index, field], optional=False)
    if check_type(errors, body.get("model"), "object", ["model"]):
        for field in ("providerID", "modelID"):
            check_type(errors, body["model"].get(field), "string", ["model", field], optional=False)
    for field in ("agent", "system", "variant", "messageID"):
        check_type(errors, body.get(field), "string", [field])
    check_type(errors, body.get("noReply"), "boolean", ["noReply"])
    check_type(errors, body.get("tools"), "object", ["tools"])
    if isinstance(body.get("messageID"), str) and not body["messageID"].startswith("msg"):
        errors.append({"code": "invalid_string", "path": ["messageID"], "message": 'Invalid input: must start with "msg"'})
    return errors


# ---------------------------------------------------------------------------------------------------------
# HTTP


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # socketserver's default of 5 drops bursts of connections (1 s SYN retry)
    block_on_close = False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-opencode/" + VERSION

    def version_string(self):
        return self.server_version

    # set by main()
    store: Store
    config: argparse.Namespace
    server_dir: str
    log_lock = threading.Lock()
    request_log: list = []

    def log_message(self, fmt, *args):  # noqa: N802 (BaseHTTPRequestHandler API)
        if self.config.verbose:
            sys.stderr.write("fake_opencode: %s - %s\n" % (self.address_string(), fmt % args))

    def do_GET(self):  # noqa: N802
        self.handle_any()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = do_GET

    # -- plumbing ---------------------------------------------------------------------------------------

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            total = 0
            while True:
                line = self.rfile.readline(65537)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    self.close_connection = True
                    raise HTTPError(400, {"data": None, "errors": [{"message": "Bad chunked encoding"}], "success": False})
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    self.close_connection = True
                    raise HTTPError(413, {"data": None, "errors": [{"message": "Body too large"}], "success": False})
                chunks.append(self.rfile.read(size))
                self.rfile.readline(3)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise HTTPError(400, {"data": None, "errors": [{"message": "Bad Content-Length"}], "success": False})
        if n > MAX_BODY:
            self.close_connection = True
            raise HTTPError(413, {"data": None, "errors": [{"message": "Body too large"}], "success": False})
        return self.rfile.read(n)

    def send(self, status: int, body=None, content_type="application/json", headers=None) -> None:
        if body is None:
            data = b""
        elif isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode("utf-8")
        else:
            data = json.dumps(body, separators=(",", ":")).encode("utf-8")
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if status != 204 and not (100 <= status < 200):
            if data or body is not None:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if status != 204 and self.command != "HEAD" and data:
            self.wfile.write(data)
        self.wfile.flush()

    def directory(self, query: dict) -> str:
        raw = query.get("directory")
        if not raw:
            raw = self.headers.get("x-opencode-directory")
            if raw:
                try:
                    raw = unquote(raw, errors="strict")
                except UnicodeDecodeError:
                    pass
        if not raw:
            raw = self.server_dir
        return os.path.normpath(os.path.join(self.server_dir, raw))

    def json_body(self, raw: bytes):
        """Hono's json validator: the body counts only with a JSON content type; otherwise it is {}."""
        content_type = self.headers.get("Content-Type", "")
        if not JSON_CONTENT_TYPE.match(content_type.strip()):
            return {}
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise bad_request(None, [{"message": "Malformed JSON in request body"}])

    def authorized(self) -> bool:
        password = self.config.password
        if password is None:
            return True
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return False
        user, sep, given = decoded.partition(":")
        expected_user = self.config.username or "opencode"
        return bool(sep) and secrets.compare_digest(user, expected_user) and secrets.compare_digest(given, password)

    def handle_any(self) -> None:
        method = self.command.upper()
        url = urlsplit(self.path)
        path = url.path or "/"
        query = {}
        for name, value in parse_qsl(url.query, keep_blank_values=True):
            query.setdefault(name, value)
        raw = b""
        status = 500
        try:
            raw = self.read_body()
            status, body, content_type, headers = self.route(method, path, query, raw)
        except HTTPError as error:
            status, body, content_type, headers = error.status, error.body, error.content_type, error.headers
        except Exception:  # a handler bug must become a 500, never a dropped connection
            trace = traceback.format_exc()
            sys.stderr.write(f"fake_opencode: error handling {method} {self.path}\n{trace}")
            sys.stderr.flush()
            status, body, content_type, headers = 500, {"name": "UnknownError", "data": {"message": trace}}, "application/json", {}
        try:
            self.send(status, body, content_type, headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        if not path.startswith("/_test/"):
            try:
                parsed = json.loads(raw.decode("utf-8")) if raw else None
            except (UnicodeDecodeError, ValueError, RecursionError):
                parsed = None
            headers_seen = {}
            for name, value in self.headers.items():
                key = name.lower()
                headers_seen[key] = f"{headers_seen[key]}, {value}" if key in headers_seen else value
            entry = {"method": method, "path": path, "query": query, "headers": headers_seen,
                     "body": parsed, "status": status, "time": now_ms()}
            with self.log_lock:
                self.request_log.append(entry)

    # -- routes -----------------------------------------------------------------------------------------

    def route(self, method, path, query, raw):
        json_ct = "application/json"
        if path.startswith("/_test/"):
            return self.test_hook(method, path)
        if method == "OPTIONS":
            return 204, None, json_ct, {"Access-Control-Allow-Methods": "GET,HEAD,PUT,POST,DELETE,PATCH"}
        if not self.authorized():
            return 401, "Unauthorized", "text/plain; charset=UTF-8", {"WWW-Authenticate": 'Basic realm="Secure Area"'}
        if method == "HEAD":
            method = "GET"
        parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
        store = self.store

        if parts == ["global", "health"] and method == "GET":
            return 200, {"healthy": True, "version": VERSION}, json_ct, {}

        if parts and parts[0] == "session":
            directory = self.directory(query)
            if len(parts) == 1:
                if method == "GET":
                    with store.lock:
                        store.advance()
                        sessions = [s for s in store.sessions.values() if s["directory"] == directory]
                    sessions.sort(key=lambda s: s["time"]["updated"], reverse=True)
                    return 200, sessions, json_ct, {}
                if method == "POST":
                    body = self.json_body(raw)
                    errors = validate_create(body)
                    if errors:
                        raise bad_request(body, errors)
                    with store.lock:
                        return 200, store.create_session(body, directory), json_ct, {}
            elif len(parts) == 2 and parts[1] == "status" and method == "GET":
                with store.lock:
                    store.advance()
                    return 200, store.status_map(directory), json_ct, {}
            elif len(parts) == 2:
                sid = parts[1]
                if method in ("GET", "DELETE"):
                    if not sid.startswith("ses"):
                        raise bad_request({"sessionID": sid}, [{"code": "invalid_string", "path": ["sessionID"],
                                                                "message": 'Invalid input: must start with "ses"'}])
                    with store.lock:
                        store.advance()
                        session = store.require(sid)
                        if method == "GET":
                            return 200, session, json_ct, {}
                        store.delete_session(sid)
                        return 200, True, json_ct, {}
            elif len(parts) == 3:
                sid, action = parts[1], parts[2]
                if action == "message" and method == "GET":
                    with store.lock:
                        store.advance()
                        store.require(sid)
                        flags = store.flags.get(sid, {})
                        if flags.get("bad-json"):
                            return 200, b"{not json", json_ct, {}
                        if flags.get("bad-shape"):
                            return 200, {"unexpected": "object instead of array"}, json_ct, {}
                        messages = copy.deepcopy(store.messages.get(sid, []))
                    limit = query.get("limit")
                    if limit:
                        try:
                            n = int(float(limit))
                        except ValueError:
                            raise bad_request(query, [{"code": "invalid_type", "path": ["limit"], "message": "Expected number"}])
                        messages = messages[-n:] if n > 0 else messages
                    return 200, messages, json_ct, {}
                if action == "todo" and method == "GET":
                    with store.lock:
                        store.advance()
                        # OpenCode reads todos by session id without checking the session exists.
                        return 200, copy.deepcopy(store.todos.get(sid, [])), json_ct, {}
                if action == "abort" and method == "POST":
                    with store.lock:
                        store.advance()
                        store.abort(sid)  # OpenCode answers true even for an unknown session
                    return 200, True, json_ct, {}
                if action in ("prompt_async", "message") and method == "POST":
                    body = self.json_body(raw)
                    errors = validate_prompt(body)
                    if errors:
                        raise bad_request(body, errors)
                    with store.lock:
                        store.advance()
                        rid, user_id = store.prompt(sid, body)
                    if action == "prompt_async":
                        return 204, None, json_ct, {}
                    if rid is None:
                        with store.lock:
                            message = store.find_message(sid, user_id)
                            return 200, copy.deepcopy(message), json_ct, {}
                    run = store.wait_run(rid)
                    with store.lock:
                        if run is None or run["state"] == "deleted" or sid not in store.sessions:
                            raise session_not_found(sid)
                        message = store.find_message(sid, run["assistantMessageID"]) if run["assistantMessageID"] else None
                        if message is None:
                            assistants = [m for m in store.messages.get(sid, []) if m["info"]["role"] == "assistant"]
                            message = assistants[-1] if assistants else store.find_message(sid, user_id)
                        return 200, copy.deepcopy(message), json_ct, {}
            elif len(parts) == 4 and parts[2] == "message" and method == "GET":
                sid, mid = parts[1], parts[3]
                with store.lock:
                    store.advance()
                    store.require(sid)
                    message = store.find_message(sid, mid)
                    if message is None:
                        raise not_found(f"Message not found: {mid}")
                    return 200, copy.deepcopy(message), json_ct, {}

        return 404, "404 Not Found", "text/plain; charset=UTF-8", {}

    def test_hook(self, method, path):
        if path == "/_test/log" and method == "GET":
            with self.log_lock:
                return 200, list(self.request_log), "application/json", {}
        if path == "/_test/reset" and method == "POST":
            with self.log_lock:
                self.request_log.clear()
            return 200, True, "application/json", {}
        if path == "/_test/crash":
            raise RuntimeError("deliberate crash from /_test/crash")
        return 404, "404 Not Found", "text/plain; charset=UTF-8", {}


def main() -> int:
    parser = argparse.ArgumentParser(description="Fake OpenCode server for bgq's tests")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--password", default=None, help="require HTTP Basic auth with this password")
    parser.add_argument("--username", default=None, help="Basic auth user name (default: opencode)")
    parser.add_argument("--state-file", default=None, help="persist all state here and load it at start")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args()

    server_dir = os.getcwd()
    state_file = os.path.abspath(args.state_file) if args.state_file else None
    Handler.store = Store(state_file, server_dir)
    Handler.config = args
    Handler.server_dir = server_dir

    server = Server(("127.0.0.1", args.port), Handler)
    print(f"PORT {server.server_address[1]}", flush=True)

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
        with Handler.store.lock:
            Handler.store.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Checks Tests/Servers/fake_opencode.py: starts it on a free port and exercises every endpoint and every
# timeline marker with small durations, asserting the response shapes; also bad input, the 500 path,
# concurrency, keep-alive, SIGKILL + restart on the same port with --state-file, and SIGTERM.
# Needs bash, curl, python3. Exit status 0 when every check passed. Takes about 12 seconds.
#
# Timing: every time-sensitive check is scheduled relative to the moment its own prompt was sent, is the
# first request after its wait, and has a window of at least 0.3 s, so a loaded machine does not make it
# flaky.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
SERVER="$HERE/fake_opencode.py"
PY=$(python3 -c 'import sys; print(sys.executable)')  # the real interpreter: shims (pyenv) cost ~0.1 s a call
PYQ=("$PY" -S -E)                                     # no site import: half the start-up time
TMP=$(mktemp -d)
PASS=0
FAIL=0
SERVER_PID=""
PORT=""
BASE=""
DIR1="$TMP/project-one"
DIR2="$TMP/project-two"
mkdir -p "$DIR1" "$DIR2"
export DIR1 DIR2
AUTH=(-u "opencode:s3cret")
STATE="$TMP/state.json"

cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

pass() { PASS=$((PASS + 1)); printf '  ok   %s\n' "$1"; }
fail() {
    FAIL=$((FAIL + 1)); printf '  FAIL %s\n' "$1"
    printf '       status=%s body=%s\n' "${STATUS:-}" "$(head -c 600 "$TMP/body" 2>/dev/null)"
}

# start_server [args...]: starts the server in DIR1 (its working directory), waits for its PORT line.
start_server() {
    : >"$TMP/stdout"
    (cd "$DIR1" && exec "$PY" "$SERVER" "$@" >"$TMP/stdout" 2>>"$TMP/stderr") &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        if head -n1 "$TMP/stdout" | grep -q '^PORT [0-9][0-9]*$'; then break; fi
        sleep 0.05
    done
    PORT=$(head -n1 "$TMP/stdout" | awk '{print $2}')
    BASE="http://127.0.0.1:$PORT"
}

# req METHOD PATH [BODY] [curl args...]: sets STATUS, leaves the body in $TMP/body, headers in $TMP/headers.
# Sends auth (unless NOAUTH=1), the directory header (DIRECTORY, default DIR1), and with a body the JSON
# content type.
req() {
    local method=$1 path=$2 body=${3-}
    shift 2; [[ $# -gt 0 ]] && shift
    local args=(-sS -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' -X "$method")
    [[ ${NOAUTH:-} == 1 ]] || args+=("${AUTH[@]}")
    args+=(-H "x-opencode-directory: ${DIRECTORY:-$DIR1}")
    if [[ -n "$body" ]]; then args+=(-H 'Content-Type: application/json' --data-binary "$body"); fi
    STATUS=$(curl "${args[@]}" "$@" "$BASE$path")
}

# check DESCRIPTION PYTHON-EXPRESSION: evaluates the expression with s (status), b (raw body), j (the body
# parsed as JSON, or None), h (response headers, lower-cased names) and the helpers below.
check() {
    if STATUS="$STATUS" "${PYQ[@]}" - "$TMP/body" "$TMP/headers" "$2" <<'EOF'
import json, os, re, sys, time
b = open(sys.argv[1], encoding="utf-8", errors="replace").read()
s = int(os.environ["STATUS"])
h = {}
for line in open(sys.argv[2], encoding="latin-1").read().splitlines()[1:]:
    if ":" in line:
        k, v = line.split(":", 1); h[k.strip().lower()] = v.strip()
try:
    j = json.loads(b)
except Exception:
    j = None
E = os.environ
SES = re.compile(r"^ses_[0-9A-Za-z]{26}$")
MSG = re.compile(r"^msg_[0-9A-Za-z]{26}$")
PRT = re.compile(r"^prt_[0-9A-Za-z]{26}$")
def assistant(j, n=-1): return [m for m in j if m["info"]["role"] == "assistant"][n]
def types(m): return [p["type"] for p in m["parts"]]
def tools(m): return [p for p in m["parts"] if p["type"] == "tool"]
def parts_ok(m): return all(PRT.match(p["id"]) and p["sessionID"] == m["info"]["sessionID"] and p["messageID"] == m["info"]["id"] for p in m["parts"])
sys.exit(0 if eval(sys.argv[3]) else 1)
EOF
    then pass "$1"; else fail "$1"; fi
}

json_field() { "${PYQ[@]}" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$TMP/body" "$1"; }
new_session() { req POST /session '{}'; json_field id; }
text_body() { "${PYQ[@]}" -c 'import json,sys; print(json.dumps({"parts":[{"type":"text","text":sys.argv[1]}]}))' "$1"; }
prompt() { req POST "/session/$1/prompt_async" "$(text_body "$2")"; }
now() { "${PYQ[@]}" -c 'import time; print(time.time())'; }
# at EPOCH SECONDS: sleeps until EPOCH + SECONDS.
at() { "${PYQ[@]}" -c 'import sys,time; time.sleep(max(0.0, float(sys.argv[1]) + float(sys.argv[2]) - time.time()))' "$1" "$2"; }
# section TITLE: prints the title with the seconds elapsed so far.
section() { echo "== $1 (at $("${PYQ[@]}" -c 'import sys,time; print(round(time.time() - float(sys.argv[1]), 1))' "$START") s)"; }

START=$(now)
start_server --password s3cret --state-file "$STATE"
[[ -n "$PORT" ]] || { echo "the server did not print its PORT line"; cat "$TMP/stderr"; exit 1; }
echo "server on port $PORT (pid $SERVER_PID)"

section "auth and health"
NOAUTH=1 req GET /global/health
check "no credentials: 401 Unauthorized + WWW-Authenticate" 's == 401 and b == "Unauthorized" and h.get("www-authenticate","").startswith("Basic")'
NOAUTH=1 req GET /global/health "" -u opencode:wrong
check "wrong password: 401" 's == 401'
NOAUTH=1 req GET /global/health "" -u someone:s3cret
check "wrong user name: 401" 's == 401'
NOAUTH=1 req GET /_test/log
check "/_test/log needs no auth" 's == 200 and isinstance(j, list)'
req GET /global/health
check "GET /global/health" 's == 200 and j == {"healthy": True, "version": "0.0.0-fake"} and h["content-length"] == str(len(b)) and h["content-type"] == "application/json"'

section "sessions"
req POST /session '{"title":"first"}'
check "POST /session: Session shape" 's == 200 and SES.match(j["id"]) and j["title"] == "first" and j["directory"] == E["DIR1"] and isinstance(j["time"]["created"], int) and j["time"]["updated"] >= j["time"]["created"] and "parentID" not in j'
S1=$(json_field id); export S1
req POST /session "{\"parentID\":\"$S1\"}"
check "child session: parentID, default title" 's == 200 and j["parentID"] == E["S1"] and j["title"].startswith("Child session - ")'
CHILD=$(json_field id); export CHILD
DIRECTORY=$DIR2 req POST /session '{}'
check "directory from the x-opencode-directory header" 's == 200 and j["directory"] == E["DIR2"] and re.match(r"^New session - \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", j["title"])'
DIRECTORY=/nowhere req POST "/session?directory=$DIR2/" '{}'
check "?directory= wins over the header (normalised)" 's == 200 and j["directory"] == E["DIR2"]'
S2=$(json_field id); export S2
req GET "/session/$S1"
check "GET /session/:id" 's == 200 and j["id"] == E["S1"] and j["title"] == "first"'
req GET /session/ses_doesnotexist0000000000000
check "GET unknown session: 404 NotFoundError" 's == 404 and j == {"name": "NotFoundError", "data": {"message": "Session not found: ses_doesnotexist0000000000000"}}'
req GET /session/nonsense
check "GET /session/<not ses…>: 400 BadRequestError" 's == 400 and j["success"] is False and isinstance(j["errors"], list)'
req GET /session
check "GET /session lists the directory's sessions only" 's == 200 and {x["id"] for x in j} >= {E["S1"], E["CHILD"]} and E["S2"] not in {x["id"] for x in j}'

section "bad input"
req POST /session '{bad json'
check "malformed JSON: 400 with a JSON error" 's == 400 and j["success"] is False and "Malformed JSON" in j["errors"][0]["message"]'
req POST "/session/$S1/prompt_async" '{"parts":"nope"}'
check "prompt with parts not an array: 400" 's == 400 and j["errors"][0]["path"] == ["parts"]'
req POST "/session/$S1/prompt_async" '{"parts":[{"type":"text"}]}'
check "text part without text: 400" 's == 400'
req POST "/session/$S1/prompt_async" '{"parts":[{"type":"text","text":"x"}],"model":{"providerID":"p"}}'
check "model without modelID: 400" 's == 400'
req POST "/session/$S1/prompt_async" "" --data-binary '{"parts":[{"type":"text","text":"x"}]}'
check "JSON without a JSON content type is ignored (as Hono): 400" 's == 400'
req POST /session/ses_unknown00000000000000000/prompt_async '{"parts":[{"type":"text","text":"hi"}]}'
check "prompt_async to an unknown session: 404" 's == 404 and j["name"] == "NotFoundError"'
req GET /no/such/path
check "unknown path: 404" 's == 404'
req PUT "/session/$S1"
check "unknown method on a known path: 404" 's == 404'
req GET /_test/crash
check "handler exception: 500 UnknownError JSON" 's == 500 and j["name"] == "UnknownError" and "deliberate crash" in j["data"]["message"]'
"${PYQ[@]}" - "$PORT" <<'EOF'
import socket, sys
port = int(sys.argv[1])
for raw in (b"GARBAGE\r\n\r\n", b"POST /session HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
            b"POST /session HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", b"\x00\xff\xfe\r\n\r\n",
            b"POST /session HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(raw); s.recv(4096); s.close()
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(b"POST /session HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"); s.close()  # body cut short
EOF
req GET /global/health
check "still healthy after garbage requests" 's == 200 and j["healthy"] is True'

section "default timeline"
S=$(new_session); export S
req POST "/session/$S/prompt_async" '{"parts":[{"type":"text","text":"Write the report please"}],"agent":"explore","model":{"providerID":"anthropic","modelID":"claude-x"},"system":"be brief"}'
check "prompt_async: 204, no body" 's == 204 and b == ""'
req GET /session/status
check "status: busy right after the prompt" 's == 200 and j.get(E["S"]) == {"type": "busy"}'
req GET "/session/$S/message"
check "while busy: assistant message without time.completed" 'len(j) == 2 and "completed" not in assistant(j)["info"]["time"] and "time" in assistant(j)["info"]'
DIRECTORY=$DIR2 req GET /session/status
check "status asked from another directory does not list it" 's == 200 and E["S"] not in j'
sleep 0.6
req GET /session/status
check "status: idle sessions are absent" 's == 200 and E["S"] not in j'
req GET "/session/$S/message"
check "user message records agent, model, system" 'j[0]["info"]["role"] == "user" and MSG.match(j[0]["info"]["id"]) and j[0]["info"]["agent"] == "explore" and j[0]["info"]["model"] == {"providerID": "anthropic", "modelID": "claude-x"} and j[0]["info"]["system"] == "be brief" and j[0]["parts"][0]["text"] == "Write the report please" and parts_ok(j[0])'
check "assistant: step-start, text 'done: …', step-finish(stop)" 'types(assistant(j)) == ["step-start", "text", "step-finish"] and assistant(j)["parts"][1]["text"] == "done: Write the report please" and assistant(j)["parts"][2]["reason"] == "stop" and set(assistant(j)["parts"][2]["tokens"]) >= {"input","output","reasoning","cache"} and parts_ok(assistant(j))'
check "assistant info: completed after 0.5 s, model, agent, parentID, no error" 'assistant(j)["info"]["time"]["completed"] >= assistant(j)["info"]["time"]["created"] + 450 and assistant(j)["info"]["modelID"] == "claude-x" and assistant(j)["info"]["providerID"] == "anthropic" and assistant(j)["info"]["agent"] == "explore" and assistant(j)["info"]["parentID"] == j[0]["info"]["id"] and MSG.match(assistant(j)["info"]["id"]) and "error" not in assistant(j)["info"]'
req GET "/session/$S/message?limit=1"
check "?limit=1: the last message only" 'len(j) == 1 and j[0]["info"]["role"] == "assistant"'
MID=$("${PYQ[@]}" -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["info"]["id"])' "$TMP/body"); export MID
req GET "/session/$S/message/$MID"
check "GET /session/:id/message/:messageID" 's == 200 and j["info"]["id"] == E["MID"] and j["info"]["role"] == "assistant"'
req GET "/session/$S/todo"
check "todo list: empty array" 's == 200 and j == []'
prompt "$S" "second prompt"
sleep 0.6
req GET "/session/$S/message"
check "continuing a session: a second user + assistant message" 'len(j) == 4 and j[2]["info"]["role"] == "user" and assistant(j)["parts"][1]["text"] == "done: second prompt"'

section "markers (twelve sessions prompted at once)"
declare -A TEXT=([SB]="[busy 2.4] read the file" [ST]="[todos 3] plan" [SR]="[retry 0.5] flaky" [SH]="[hang] forever"
    [SN]="[no-output] silent" [SE]="[error] boom" [SV]="[vanish 0.6] gone soon" [SJ]="[bad-json] x"
    [SS]="[bad-shape] x" [SI]="[idle-status] x" [SQ]="[reasoning] think" [SA]="[hang] [busy 2] stuck in a tool")
for k in "${!TEXT[@]}"; do
    declare "$k=$(new_session)"; export "${k?}"
    text_body "${TEXT[$k]}" >"$TMP/prompt_$k"
done
# One keep-alive connection sends the twelve prompts; the send time of each is kept in $TMP/sent_<KEY>.
"${PYQ[@]}" - "$PORT" "$TMP" "${!TEXT[@]}" <<'EOF'
import base64, http.client, os, sys, time
port, tmp, keys = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
headers = {"Authorization": "Basic " + base64.b64encode(b"opencode:s3cret").decode(), "Content-Type": "application/json"}
bodies = {k: open(f"{tmp}/prompt_{k}", "rb").read() for k in keys}
t0 = time.time()
for k in keys:
    sent = time.time()
    c.request("POST", f"/session/{os.environ[k]}/prompt_async", body=bodies[k], headers=headers)
    r = c.getresponse(); r.read()
    assert r.status == 204 and r.getheader("Content-Length") is None, r.status
    open(f"{tmp}/sent_{k}", "w").write(f"{sent!r}\n")
print(f"  (twelve prompts sent in {1000 * (time.time() - t0):.0f} ms on one keep-alive connection)")
EOF
sent() { cat "$TMP/sent_$1"; }
LAST=$(cat "$TMP"/sent_* | sort -n | tail -n1)
req GET /session/status
check "at once: [retry] status retry{attempt 1, message, next}, all others busy" 'j[E["SR"]]["type"] == "retry" and j[E["SR"]]["attempt"] == 1 and j[E["SR"]]["message"] == "Rate limited, retrying" and j[E["SR"]]["next"] > time.time() * 1000 and all(j[E[k]] == {"type": "busy"} for k in ("SB","ST","SH","SN","SE","SV","SI","SQ","SA"))'
req GET "/session/$ST/todo"
check "[todos] at once: one in_progress todo {id, content, status, priority}" 's == 200 and len(j) == 1 and j[0]["status"] == "in_progress" and set(j[0]) >= {"id","content","status","priority"}'
req GET "/session/$SB/message"
check "[busy] at once: the assistant message exists, no tool part yet" 'len(j) == 2 and "tool" not in types(assistant(j)) and "completed" not in assistant(j)["info"]["time"]'
req GET "/session/$SJ/message"
check "[bad-json]: 200 with {not json" 's == 200 and b == "{not json"'
req GET "/session/$SS/message"
check "[bad-shape]: 200 with an object" 's == 200 and j == {"unexpected": "object instead of array"}'
at "$(sent SR)" 0.6
req GET /session/status
check "[retry 0.5] at 0.6 s: busy" 'j.get(E["SR"]) == {"type": "busy"}'
at "$LAST" 0.55
req GET /session/status
check "at 0.55 s: [todos] [no-output] [error] [reasoning] idle (absent); [busy] busy; [idle-status] listed as {type: idle}" 'all(E[k] not in j for k in ("ST","SN","SE","SQ")) and j[E["SB"]] == {"type": "busy"} and j[E["SI"]] == {"type": "idle"}'
req GET "/session/$ST/todo"
check "[todos 3] idle, but the todo is still in_progress" 'j[0]["status"] == "in_progress"'
req GET "/session/$ST/message"
check "[todos]: answered although the todo is open" '"text" in types(assistant(j)) and "completed" in assistant(j)["info"]["time"]'
req GET "/session/$SN/message"
check "[no-output]: only step-start and step-finish" 'types(assistant(j)) == ["step-start", "step-finish"] and "completed" in assistant(j)["info"]["time"]'
req GET "/session/$SE/message"
check "[error]: APIError, time.completed, no text" 'assistant(j)["info"]["error"] == {"name": "APIError", "data": {"message": "Provider said no (fake)", "statusCode": 500, "isRetryable": False}} and "completed" in assistant(j)["info"]["time"] and "text" not in types(assistant(j))'
req GET "/session/$SQ/message"
check "[reasoning]: a reasoning part instead of text" 'types(assistant(j)) == ["step-start", "reasoning", "step-finish"] and assistant(j)["parts"][1]["text"] == "thinking: [reasoning] think"'
at "$(sent SA)" 1.15
req POST "/session/$SA/abort"
req GET "/session/$SA/message"
check "[hang] [busy 2] aborted at 1.15 s, during the tool: the tool part becomes status error" '[p["state"]["status"] for p in tools(assistant(j))] == ["error"] and tools(assistant(j))[0]["state"]["error"] and assistant(j)["info"]["error"]["name"] == "MessageAbortedError"'
at "$(sent SB)" 1.35
req GET "/session/$SB/message"
check "[busy 2.4] at 1.35 s: tool part (read) running" '[p["state"]["status"] for p in tools(assistant(j))] == ["running"] and tools(assistant(j))[0]["tool"] == "read" and tools(assistant(j))[0]["callID"] and "text" not in types(assistant(j)) and parts_ok(assistant(j))'
req GET "/session/$SR/message"
check "[retry]: answered after retry + busy" 'types(assistant(j)) == ["step-start", "text", "step-finish"]'
req GET /session/status
check "[vanish 0.6]: gone from the status map" 'E["SV"] not in j and E["SR"] not in j'
req GET "/session/$SV"
check "[vanish]: GET session 404" 's == 404 and j["name"] == "NotFoundError"'
req GET "/session/$SV/message"
check "[vanish]: messages 404" 's == 404'
at "$(sent SB)" 1.95
req GET "/session/$SB/message"
check "[busy 2.4] at 1.95 s: tool completed, no text yet" '[p["state"]["status"] for p in tools(assistant(j))] == ["completed"] and tools(assistant(j))[0]["state"]["output"] and "text" not in types(assistant(j))'
at "$(sent SB)" 2.5
req GET /session/status
check "[busy 2.4] at 2.5 s: idle; [hang] still busy" 'E["SB"] not in j and j[E["SH"]] == {"type": "busy"}'
req GET "/session/$SB/message"
check "[busy]: step-start, tool, step-finish(tool-calls), step-start, text, step-finish(stop)" 'types(assistant(j)) == ["step-start","tool","step-finish","step-start","text","step-finish"] and assistant(j)["parts"][2]["reason"] == "tool-calls" and assistant(j)["parts"][4]["text"] == "done: [busy 2.4] read the file" and parts_ok(assistant(j))'
at "$(sent ST)" 3.05
req GET "/session/$ST/todo"
check "[todos 3] at 3.05 s: completed" 'j[0]["status"] == "completed"'
req POST "/session/$SH/abort"
check "abort: true" 's == 200 and j is True'
req GET /session/status
check "after abort: idle" 'E["SH"] not in j'
req GET "/session/$SH/message"
check "after abort: MessageAbortedError + time.completed" 'assistant(j)["info"]["error"] == {"name": "MessageAbortedError", "data": {"message": "The operation was aborted."}} and "completed" in assistant(j)["info"]["time"]'
req POST /session/ses_unknown00000000000000000/abort
check "abort of an unknown session: true (as OpenCode)" 's == 200 and j is True'

section "synchronous message, noReply, queueing"
S=$(new_session); export S
T=$(now)
req POST "/session/$S/message" '{"parts":[{"type":"text","text":"[busy 0.4] sync please"}]}'
export ELAPSED=$("${PYQ[@]}" -c 'import sys,time; print(int(1000 * (time.time() - float(sys.argv[1]))))' "$T")
check "POST message waits for the end and returns {info, parts}" 's == 200 and j["info"]["role"] == "assistant" and j["parts"][-2]["text"] == "done: [busy 0.4] sync please" and "completed" in j["info"]["time"] and int(E["ELAPSED"]) >= 380'
req POST "/session/$S/prompt_async" '{"parts":[{"type":"text","text":"just a note"}],"noReply":true}'
check "noReply prompt_async: 204" 's == 204'
req GET /session/status
check "noReply: not busy" 'E["S"] not in j'
req GET "/session/$S/message"
check "noReply: a user message only" 'len(j) == 3 and j[-1]["info"]["role"] == "user"'
req POST "/session/$S/message" '{"parts":[{"type":"text","text":"note two"}],"noReply":true}'
check "noReply POST message: the user message at once" 's == 200 and j["info"]["role"] == "user" and j["parts"][0]["text"] == "note two"'
T=$(now)
prompt "$S" "[busy 0.3] first"
prompt "$S" "second queued"
at "$T" 0.55
req GET /session/status
check "a prompt while busy queues behind the first: still busy at 0.55 s" 'j.get(E["S"]) == {"type": "busy"}'
at "$T" 1.0
req GET "/session/$S/message"
check "the queued prompt is answered after the first" 'len(j) == 8 and [m["info"]["role"] for m in j[4:]] == ["user","assistant","user","assistant"] and j[-1]["parts"][1]["text"] == "done: second queued"'
S=$(new_session); export S
curl -sS -o "$TMP/sync_body" -w '%{http_code}' "${AUTH[@]}" -H 'Content-Type: application/json' \
    -d '{"parts":[{"type":"text","text":"[hang]"}]}' "$BASE/session/$S/message" >"$TMP/sync_status" &
SYNC=$!
sleep 0.3
req POST "/session/$S/abort"
wait "$SYNC"
cp "$TMP/sync_body" "$TMP/body"; STATUS=$(cat "$TMP/sync_status")
check "POST message on [hang] answers with the aborted message once aborted" 's == 200 and j["info"]["error"]["name"] == "MessageAbortedError"'

section "delete"
req DELETE "/session/$S1"
check "DELETE: true" 's == 200 and j is True'
req GET "/session/$S1"
check "deleted: 404" 's == 404'
req GET "/session/$CHILD"
check "deleting a parent deletes its child" 's == 404'
req DELETE "/session/$S1"
check "DELETE again: 404" 's == 404'

section "concurrency and keep-alive"
S=$(new_session); export S
curl -sS -o "$TMP/sync_body" "${AUTH[@]}" -H 'Content-Type: application/json' \
    -d '{"parts":[{"type":"text","text":"[busy 0.8] long"}]}' "$BASE/session/$S/message" &
PIDS=($!)
for i in $(seq 1 30); do
    curl -sS -o /dev/null -w '%{http_code}\n' "${AUTH[@]}" -H "x-opencode-directory: $DIR1" "$BASE/session/status" >"$TMP/par_$i" &
    PIDS+=($!)
done
for i in $(seq 1 10); do
    curl -sS -o /dev/null -w '%{http_code}\n' "${AUTH[@]}" -H 'Content-Type: application/json' -d '{"title":"p"}' "$BASE/session" >"$TMP/parc_$i" &
    PIDS+=($!)
done
wait "${PIDS[@]}"
CODES=$(cat "$TMP"/par_* "$TMP"/parc_* | sort | uniq -c | tr -s ' \n' ' '); export CODES
STATUS=200; cp "$TMP/sync_body" "$TMP/body"
check "40 parallel requests beside a waiting POST message: all 200 ($CODES)" 'E["CODES"].split() == ["40", "200"] and j["parts"][-2]["text"] == "done: [busy 0.8] long"'
"${PYQ[@]}" - "$PORT" >"$TMP/body" <<'EOF'
import base64, http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
auth = {"Authorization": "Basic " + base64.b64encode(b"opencode:s3cret").decode()}
out = []
for method, path in (("GET", "/global/health"), ("GET", "/session/status"), ("GET", "/nope"),
                     ("POST", "/session/ses_x/abort"), ("GET", "/global/health")):
    c.request(method, path, body=b"" if method == "POST" else None, headers=auth)
    r = c.getresponse(); body = r.read()
    out.append({"status": r.status, "cl": r.getheader("Content-Length"), "len": len(body)})
print(json.dumps(out))
EOF
STATUS=200
check "keep-alive: 5 requests on one connection, each with a matching Content-Length" 'len(j) == 5 and [r["status"] for r in j] == [200, 200, 404, 200, 200] and all(r["cl"] is not None and int(r["cl"]) == r["len"] for r in j)'

section "request log"
req GET /_test/log
check "log entries: method, path, query, lower-cased headers, parsed body, status" 'any(e["method"] == "POST" and e["path"].endswith("/prompt_async") and e["status"] == 204 and e["body"]["parts"][0]["type"] == "text" and "authorization" in e["headers"] and e["headers"]["x-opencode-directory"] == E["DIR1"] for e in j) and any(e["query"].get("directory") == E["DIR2"] + "/" for e in j) and any(e["status"] == 401 for e in j) and not any(e["path"].startswith("/_test/") for e in j)'
req POST /_test/reset
req GET /_test/log
check "/_test/reset clears the log" 's == 200 and j == []'

section "state file: SIGKILL mid-run, restart on the same port"
S=$(new_session); export S
T=$(now)
prompt "$S" "[busy 1.6] survive a crash"
at "$T" 0.3
if "${PYQ[@]}" -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if sys.argv[2] in d["sessions"] and any(e["session"] == sys.argv[2] for e in d["events"]) else 1)' "$STATE" "$S"
then pass "the state file holds the session and its pending events"; else fail "the state file holds the session and its pending events"; fi
kill -KILL "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null
OLDPORT=$PORT; export OLDPORT
start_server --port "$OLDPORT" --password s3cret --state-file "$STATE"
echo "{\"port\": ${PORT:-0}}" >"$TMP/body"; STATUS=200
check "restarted on the same port" 'j["port"] == int(E["OLDPORT"])'
req GET /session/status
check "after restart: still busy" 'j.get(E["S"]) == {"type": "busy"}'
at "$T" 1.0
req GET "/session/$S/message"
check "after restart: the timeline went on (tool part at 0.8 s)" '"tool" in types(assistant(j)) and "completed" not in assistant(j)["info"]["time"]'
at "$T" 1.7
req GET /session/status
check "after restart: idle at the scripted time" 'E["S"] not in j'
req GET "/session/$S/message"
check "after restart: answered" 'assistant(j)["parts"][-2]["text"] == "done: [busy 1.6] survive a crash"'

section "SIGTERM"
kill -TERM "$SERVER_PID"; wait "$SERVER_PID"; RC=$?
SERVER_PID=""
if [[ $RC == 0 ]]; then pass "SIGTERM: exit status 0"; else fail "SIGTERM: exit status $RC"; fi
TRACES=$(grep -c '^Traceback' "$TMP/stderr")
if [[ $TRACES == 1 ]] && grep -q 'deliberate crash' "$TMP/stderr"; then
    pass "stderr: exactly one traceback, the deliberate /_test/crash"
else
    fail "stderr: $TRACES tracebacks"; sed -n 1,80p "$TMP/stderr"
fi

printf '\n%d passed, %d failed, %s s\n' "$PASS" "$FAIL" "$("${PYQ[@]}" -c 'import sys,time; print(round(time.time() - float(sys.argv[1]), 1))' "$START")"
[[ $FAIL == 0 ]]

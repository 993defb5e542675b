"""Hostile and malformed HTTP against a live server on the tiny Llama, over raw sockets.

Every case is one connection: bad JSON, NUL bytes, deep nesting, lone surrogates, huge
bodies, wrong types, negative and huge numbers, bad model names, bad Content-Length,
TLS bytes, broken request lines and headers, slowloris headers and bodies (with a bounded
wait), a client that leaves mid-body, foreign Host and Origin headers, unknown routes and
methods. Each must be answered with a JSON error in the shape of the API the path
belongs to (``{"error": {"message", "type", ...}}`` under /v1, ``{"error": "..."}`` under
/api), never a 5xx, and leave no traceback or error in the server's log; afterwards the
server still answers both official clients.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ollama
import openai
import pytest

from slmchat.engine.generation.sampling import SamplingParams
from slmchat.server.state import ServerConfig
from tests.server.live import Live, live_server

BODY_LIMIT = 256 * 1024
TIMEOUT_S = 1.0  # the server's header and body timeouts here (15 s and 30 s by default)
CHAT, TEXT, OCHAT, OGEN, SHOW = ("/v1/chat/completions", "/v1/completions", "/api/chat",
                                 "/api/generate", "/api/show")
POSTS = (CHAT, TEXT, OCHAT, OGEN, SHOW)
HI = [{"role": "user", "content": "The quick brown fox"}]


@dataclass(frozen=True)
class Case:
    name: str
    pieces: tuple[bytes, ...]  # sent in turn, ``pause_s`` apart
    path: str  # what the error's shape follows
    expect: str = "4xx"  # 4xx: a JSON error; ok: 2xx; any: anything but a 5xx; gone: none
    status: int | None = None  # the exact status, where it matters
    pause_s: float = 0.0
    leave: bool = False  # the client closes after sending (no answer read)
    within_s: float = 20.0  # the answer (or the close) comes within this


def http(method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         host: str = "127.0.0.1") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    for key, value in (headers or {}).items():
        lines.append(f"{key}: {value}")
    if body is not None and not any(k.lower() in ("content-length", "transfer-encoding")
                                    for k in (headers or {})):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def post(path: str, body: Any, **kw: Any) -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http("POST", path, data, {"Content-Type": "application/json"}, **kw)


def _valid(path: str) -> dict[str, Any]:
    if path == TEXT:
        return {"prompt": "The quick brown fox", "max_tokens": 2}
    if path == OGEN:
        return {"prompt": "The quick brown fox", "stream": False}
    if path == SHOW:
        return {"model": ""}
    return {"messages": HI, "max_tokens": 2, "stream": False}


def _cases() -> Iterator[Case]:
    # --- bodies that are not a JSON object, to every POST route --------------------------
    bodies: list[tuple[str, bytes]] = [
        ("empty", b""), ("spaces", b" \r\n\t "), ("open brace", b"{"),
        ("cut off", b'{"messages": ['), ("bare word", b"nul"), ("string", b'"text"'),
        ("list", b"[]"), ("number", b"123"), ("null", b"null"),
        ("trailing bytes", b'{"a": 1} trailing'), ("NUL bytes", b"\x00\x00\x00"),
        ("raw NUL in a string", b'{"model": "a\x00b"}'), ("not UTF-8", b"\xff\xfe\xfd{}"),
        ("100,000 nested lists", b"[" * 100_000),
        ("50,000 nested objects", b'{"a":' * 50_000),
        ("lone surrogates", b'{"model": "\\ud800", "prompt": "\\udfff x", "messages": '
                            b'[{"role": "user", "content": "\\ud800 hi"}]}'),
        ("lone surrogate in a key", b'{"\\ud800": 1}'),
        ("5,000-digit number", b'{"max_tokens": ' + b"9" * 5000 + b"}"),
    ]
    for path in POSTS:
        for name, body in bodies:
            yield Case(f"{path} {name}", (post(path, body),), path, status=400)

    # --- wrong types and out-of-range values ---------------------------------------------
    def chat(**fields: Any) -> dict[str, Any]:
        return {"messages": HI, "max_tokens": 2, **fields}

    bad_chat: list[tuple[str, dict[str, Any]]] = [
        ("messages a string", {"messages": "hi"}),
        ("messages an object", {"messages": {"role": "user", "content": "hi"}}),
        ("message a number", {"messages": [1]}),
        ("role a number", {"messages": [{"role": 5, "content": "x"}]}),
        ("role robot", {"messages": [{"role": "robot", "content": "x"}]}),
        ("content a number", {"messages": [{"role": "user", "content": 5}]}),
        ("content an object", {"messages": [{"role": "user", "content": {"a": 1}}]}),
        ("content part a number", {"messages": [{"role": "user", "content": [5]}]}),
        ("content part text a number",
         {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}),
        ("only a system message", {"messages": [{"role": "system", "content": "x"}]}),
        ("tool calls on a user message",
         {"messages": [{"role": "user", "content": "x", "tool_calls": [{}]}]}),
        ("tool calls without a function",
         {"messages": [HI[0], {"role": "assistant", "tool_calls": [{}]}, HI[0]]}),
        ("model a number", chat(model=5)), ("model a list", chat(model=["a"])),
        ("stream a string", chat(stream="yes")), ("max_tokens a string", chat(max_tokens="5")),
        ("max_tokens 1e30", chat(max_tokens=1e30)), ("max_tokens 10^30", chat(max_tokens=10**30)),
        ("max_tokens true", chat(max_tokens=True)), ("max_tokens 1.5", chat(max_tokens=1.5)),
        ("max_tokens -1", chat(max_tokens=-1)), ("temperature -1", chat(temperature=-1)),
        ("temperature a string", chat(temperature="hot")), ("top_p 0", chat(top_p=0)),
        ("top_p 2", chat(top_p=2)), ("top_k -1", chat(top_k=-1)), ("top_k a string", chat(top_k="x")),
        ("seed -1", chat(seed=-1)), ("seed 2^64", chat(seed=2**64)), ("seed 1.5", chat(seed=1.5)),
        ("min_p 1", chat(min_p=1)), ("repetition_penalty 0", chat(repetition_penalty=0)),
        ("repetition_penalty 1e308", chat(repetition_penalty=1e308)),
        ("stop a number", chat(stop=5)), ("stop numbers", chat(stop=[1, 2])),
        ("100 stop strings", chat(stop=["a"] * 100)), ("n 0", chat(n=0)), ("n -1", chat(n=-1)),
        ("stream_options a string", chat(stream_options="x")),
        ("logit_bias", chat(logit_bias={"1": 5})),
        ("response_format of an unknown type", chat(response_format={"type": "xml"})),
        ("response_format a bad schema",
         chat(response_format={"type": "json_schema",
                              "json_schema": {"schema": {"type": "object", "properties": 5}}})),
        ("response_format a schema that is a string",
         chat(response_format={"type": "json_schema", "json_schema": {"schema": "x"}})),
        ("tools", chat(tools=[{"type": "function"}])),
    ]
    for name, body in bad_chat:
        yield Case(f"chat {name}", (post(CHAT, body),), CHAT)
    for name, raw in (("NaN", b"NaN"), ("Infinity", b"Infinity"), ("-Infinity", b"-Infinity"),
                      ("1e999", b"1e999")):
        body = b'{"messages": [{"role": "user", "content": "x"}], "temperature": ' + raw + b"}"
        yield Case(f"chat temperature {name}", (post(CHAT, body),), CHAT, status=400)
    bad_text: list[tuple[str, dict[str, Any]]] = [
        ("prompt a number", {"prompt": 5}), ("prompt token ids", {"prompt": [1, 2, 3]}),
        ("prompt empty", {"prompt": ""}), ("two prompts", {"prompt": ["a", "b"]}),
        ("suffix", {"prompt": "a", "suffix": "b"}), ("best_of 3", {"prompt": "a", "best_of": 3}),
        ("echo a string", {"prompt": "a", "echo": "yes"}),
        ("prompt over the context", {"prompt": "fox " * 2000, "max_tokens": 2}),
    ]
    for name, body in bad_text:
        yield Case(f"completions {name}", (post(TEXT, body),), TEXT)
    bad_ollama: list[tuple[str, str, dict[str, Any]]] = [
        (OCHAT, "messages a string", {"model": "", "messages": "x"}),
        (OCHAT, "options a string", {"messages": HI, "options": "x"}),
        (OCHAT, "num_predict a string", {"messages": HI, "options": {"num_predict": "x"}}),
        (OCHAT, "num_predict 0", {"messages": HI, "options": {"num_predict": 0}}),
        (OCHAT, "num_predict 10^30", {"messages": HI, "options": {"num_predict": 10**30}}),
        (OCHAT, "temperature a string", {"messages": HI, "options": {"temperature": "x"}}),
        (OCHAT, "format xml", {"messages": HI, "format": "xml"}),
        (OCHAT, "format a bad schema", {"messages": HI, "format": {"type": "object", "properties": 5}}),
        (OCHAT, "tools", {"messages": HI, "tools": [{"type": "function"}]}),
        (OCHAT, "images", {"messages": [{"role": "user", "content": "x", "images": ["AA=="]}]}),
        (OGEN, "prompt a number", {"prompt": 5}),
        (OGEN, "system a number", {"prompt": "x", "system": 5}),
        (OGEN, "raw a string", {"prompt": "x", "raw": "yes"}),
        (OGEN, "suffix", {"prompt": "x", "suffix": "y"}),
        (OGEN, "images", {"prompt": "x", "images": ["AA=="]}),
        (OGEN, "raw prompt over the context", {"prompt": "fox " * 2000, "raw": True,
                                               "stream": False}),
        (SHOW, "model a number", {"model": 5}), (SHOW, "no model", {}),
    ]
    for path, name, body in bad_ollama:
        yield Case(f"{path} {name}", (post(path, body),), path)

    # --- model names: NUL bytes, paths, huge -------------------------------------------
    names = [("NUL after a slash", "a/\u0000b"), ("NUL", "\u0000"), ("a system file", "/etc/passwd"),
             ("up the tree", "../../../etc/passwd"), ("another user's home", "~root/x"),
             ("100,000 characters", "a" * 100_000), ("a NUL in a home path", "~\u0000/x")]
    for label, name in names:
        for path in (CHAT, OCHAT, SHOW):
            yield Case(f"{path} model {label}", (post(path, {**_valid(path), "model": name}),),
                       path, status=404)
    for label, quoted in (("slash NUL", "a%2F%00"), ("NUL", "%00"), ("up the tree", "..%2F..%2Fetc"),
                          ("8,000 characters", "a" * 8000), ("not UTF-8", "%ff%fe")):
        yield Case(f"GET /v1/models/ {label}", (http("GET", f"/v1/models/{quoted}"),),
                   "/v1/models", status=404)

    # --- the HTTP layer itself -----------------------------------------------------------
    version = "GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    raw_cases: list[tuple[str, bytes, str]] = [
        ("TLS client hello", bytes.fromhex("16030100c4010000c00303") + bytes(range(32)) + b"\x00" * 40,
         ""),
        ("binary garbage", b"\x00\x01\x02\x03\r\n\r\n", ""),
        ("method only", b"GET\r\n\r\n", ""),
        ("no Host in HTTP/1.1", b"GET /api/version HTTP/1.1\r\nConnection: close\r\n\r\n",
         "/api/version"),
        ("Content-Length not a number",
         (version + "Content-Length: abc\r\n\r\n").encode(), "/api/version"),
        ("Content-Length negative", (version + "Content-Length: -1\r\n\r\n").encode(),
         "/api/version"),
        ("two Content-Lengths", f"POST {CHAT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2"
                                "\r\nContent-Length: 3\r\n\r\n{}".encode(), CHAT),
        ("Content-Length with chunked", f"POST {CHAT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length:"
                                        " 2\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".encode(), CHAT),
        ("bad chunk size", f"POST {OCHAT} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked"
                           "\r\n\r\nzz\r\n{}\r\n0\r\n\r\n".encode(), OCHAT),
        ("unknown transfer coding", f"POST {OCHAT} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding:"
                                    " gzip\r\n\r\n{}".encode(), OCHAT),
        ("header without a colon", (version + "badheader\r\n\r\n").encode(), "/api/version"),
        ("NUL in a header", (version + "X-A: a\x00b\r\n\r\n").encode(), "/api/version"),
        ("NUL in the path", b"GET /api/\x00 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "/api/"),
        ("space in the path", b"GET /api/ver sion HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "/api/ver"),
    ]
    for name, data, path in raw_cases:
        yield Case(f"HTTP {name}", (data,), path, status=400)
    odd_ok: list[tuple[str, bytes, str, str]] = [
        ("lowercase method", b"get /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close"
                             b"\r\n\r\n", "/api/version", "4xx"),
        ("unknown method", http("BREW", "/api/version"), "/api/version", "4xx"),
        ("CONNECT", b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
         "127.0.0.1:443", "4xx"),
        ("absolute URI", http("GET", "http://127.0.0.1/api/version"), "http://127.0.0.1/api/version",
         "any"),
        ("OPTIONS *", http("OPTIONS", "*"), "*", "4xx"),
        ("HTTP/1.0 without Host", b"GET /api/version HTTP/1.0\r\n\r\n", "/api/version", "ok"),
        ("100 KB header", (version + "Connection: close\r\nX-Big: " + "a" * 100_000
                           + "\r\n\r\n").encode(), "/api/version", "any"),
        ("100 KB path", b"GET /api/" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Connection: close\r\n\r\n", "/api/a", "4xx"),
        ("HTTP/9.9", b"GET /api/version HTTP/9.9\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     b"\r\n", "/api/version", "any"),
        ("pipelined garbage", (version + "\r\nGARBAGE\r\n\r\n").encode(), "/api/version", "any"),
        ("Expect 100-continue", http("POST", OCHAT, json.dumps(_valid(OCHAT)).encode(),
                                     {"Expect": "100-continue"}), OCHAT, "ok"),
        ("text/plain body (curl -d)", http("POST", OCHAT, json.dumps(_valid(OCHAT)).encode(),
                                           {"Content-Type": "text/plain"}), OCHAT, "ok"),
        ("form content type", http("POST", CHAT, json.dumps(_valid(CHAT)).encode(),
                                   {"Content-Type": "application/x-www-form-urlencoded"}), CHAT, "ok"),
    ]
    for name, data, path, expect in odd_ok:
        yield Case(f"HTTP {name}", (data,), path, expect)

    # --- slow and vanishing clients (the server's timeouts are TIMEOUT_S here) ---------
    bound = TIMEOUT_S + 5
    yield Case("slowloris: headers stop", (version.encode(),), "/api/version", status=408,
               within_s=bound)
    yield Case("slowloris: a byte at a time", (b"GET /api/version HTTP/1.1\r\n", *(
        bytes([b]) for b in b"Host: 127.0.0.1\r\n")), "/api/version", status=408, pause_s=0.2,
               within_s=bound + 3)
    yield Case("idle connection", (b"",), "", "gone", within_s=bound)
    head = f"POST {CHAT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    yield Case("slowloris: body stops", ((head + "Content-Length: 100\r\n\r\n").encode()
                                         + b'{"messages"',), CHAT, status=408, within_s=bound)
    yield Case("Content-Length beyond the body", ((head + "Content-Length: 99999999\r\n\r\n")
                                                  .encode() + b"{}",), CHAT, status=408,
               within_s=bound)
    yield Case("chunked body stops", ((head + "Transfer-Encoding: chunked\r\n\r\n5\r\n").encode()
                                      + b'{"mes',), CHAT, status=408, within_s=bound)
    yield Case("client leaves during the body", ((head + "Content-Length: 1000\r\n\r\n").encode()
                                                 + b'{"messages": [',), CHAT, "gone", leave=True)
    yield Case("client leaves after the headers",
               ((head + "Content-Length: 50\r\n\r\n").encode(),), CHAT, "gone", leave=True)
    yield Case("client leaves during a reply", (post(CHAT, {**_valid(CHAT), "max_tokens": 50}),),
               CHAT, "gone", leave=True, pause_s=0.05)

    # --- big bodies ----------------------------------------------------------------------
    yield Case("body over the limit", (post(CHAT, {"messages": [{"role": "user", "content": "x"
                                                                 * (BODY_LIMIT + 10)}]}),),
               CHAT, status=413)
    yield Case("5,000 messages", (post(CHAT, {"messages": [
        {"role": "user" if i % 2 == 0 else "assistant", "content": "a"} for i in range(5001)],
        "max_tokens": 2}),), CHAT, "ok", within_s=30)
    yield Case("a 200 KB message", (post(OCHAT, {"messages": [{"role": "user", "content":
                                                              "fox " * 50_000}],
                                                 "stream": False, "options": {"num_predict": 2}}),),
               OCHAT, "ok", within_s=30)
    yield Case("NUL bytes in content", (post(CHAT, {**_valid(CHAT), "messages": [
        {"role": "user", "content": "a\u0000b\u0000"}]}),), CHAT, "ok")

    # --- foreign Host and Origin (DNS rebinding, drive-by pages) -------------------------
    foreign_hosts = ["attacker.example", "attacker.example:8000", "127.0.0.1.attacker.example",
                     "localhost.attacker.example", "0.0.0.0:8000", "", "192.0.2.1"]
    for host in foreign_hosts:
        yield Case(f"Host {host!r}", (http("GET", "/api/version", host=host),), "/api/version",
                   status=403)
    yield Case("rebinding POST as text/plain", (http(
        "POST", OCHAT, json.dumps(_valid(OCHAT)).encode(),
        {"Content-Type": "text/plain", "Origin": "http://attacker.example:8000"},
        host="attacker.example:8000"),), OCHAT, status=403)
    for origin in ("http://attacker.example", "null", "javascript:alert(1)",
                   "http://localhost.attacker.example", "file://"):
        yield Case(f"Origin {origin!r}", (http("POST", CHAT, json.dumps(_valid(CHAT)).encode(),
                                               {"Content-Type": "text/plain", "Origin": origin}),),
                   CHAT, status=403)
    yield Case("preflight from a foreign page", (http("OPTIONS", CHAT, None, {
        "Origin": "http://attacker.example", "Access-Control-Request-Method": "POST"}),),
               CHAT, status=403)
    for host in ("localhost", "localhost:1234", "[::1]:8000", "127.9.9.9:1", "LOCALHOST."):
        yield Case(f"Host {host!r} (loopback)", (http("GET", "/api/version", host=host),),
                   "/api/version", "ok")
    for origin in ("http://localhost:3000", "http://127.0.0.1:5173", "https://[::1]"):
        yield Case(f"Origin {origin!r} (loopback)",
                   (http("GET", "/api/version", None, {"Origin": origin}),), "/api/version", "ok")

    # --- routes and methods that do not exist ------------------------------------------
    routes = [("GET", "/v1/nothing"), ("DELETE", "/v1/models"), ("PUT", OCHAT), ("GET", OCHAT),
              ("POST", "/api/version"), ("POST", "/api/pull"), ("DELETE", "/api/delete"),
              ("POST", "/api/embed"), ("POST", "/v1/embeddings"), ("GET", CHAT),
              ("OPTIONS", CHAT), ("GET", "/api/%00"), ("GET", "/%2e%2e/%2e%2e/etc/passwd"),
              ("GET", "/a" * 2000), ("PATCH", "/")]
    for method, path in routes:
        yield Case(f"{method} {path[:40]}", (http(method, path, b"" if method != "GET" else None),),
                   path)


CASES = list(_cases())


# --- the server and its log -------------------------------------------------------------


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def bad(self, since: int = 0) -> list[str]:
        """Errors and tracebacks logged since record ``since``."""
        out = []
        for r in self.records[since:]:
            text = r.getMessage()
            if r.exc_info or r.levelno >= logging.ERROR or "Traceback" in text:
                out.append(f"{r.name} {r.levelname}: {text[:300]} {r.exc_info!r:.300}")
        return out


@pytest.fixture(scope="module")
def served(tiny_engine) -> Iterator[tuple[Live, Recorder, list[str]]]:
    config = ServerConfig(defaults=SamplingParams(temperature=0, max_new_tokens=2),
                          max_body_bytes=BODY_LIMIT, body_timeout_s=TIMEOUT_S,
                          header_timeout_s=TIMEOUT_S)
    recorder = Recorder()
    crashed: list[str] = []
    before = threading.excepthook
    threading.excepthook = lambda args: crashed.append(f"{args.thread}: {args.exc_value!r}")
    with live_server(tiny_engine, config) as live:
        names = ("uvicorn", "uvicorn.error", "asyncio", "slmchat", "starlette")
        for name in names:  # after the start: uvicorn configures its loggers then
            logging.getLogger(name).addHandler(recorder)
        try:
            yield live, recorder, crashed
        finally:
            for name in names:
                logging.getLogger(name).removeHandler(recorder)
            threading.excepthook = before


@dataclass
class Answer:
    status: int | None
    headers: dict[str, str]
    body: bytes
    seconds: float


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            return out
        if size == 0:
            return out
        out, body = out + rest[:size], rest[size + 2:]
    return out


def exchange(port: int, case: Case) -> Answer:
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=case.within_s) as sock:
        for i, piece in enumerate(case.pieces):
            if i:
                time.sleep(case.pause_s)
            try:
                sock.sendall(piece)
            except OSError:  # the server already answered and closed (slowloris)
                break
        if case.leave:
            time.sleep(case.pause_s)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            return Answer(None, {}, b"", time.monotonic() - start)
        data = b""
        while True:
            try:
                got = sock.recv(65536)
            except ConnectionResetError:
                break
            if not got:
                break
            data += got
    seconds = time.monotonic() - start
    if not data:
        return Answer(None, {}, b"", seconds)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    while status == 100:  # Expect: 100-continue, then the real answer
        head, _, body = body.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return Answer(status, headers, body, seconds)


def _check_shape(path: str, answer: Answer) -> None:
    assert answer.headers.get("content-type", "").startswith("application/json"), answer
    error = json.loads(answer.body)["error"]
    if path == "/api" or path.startswith("/api/"):
        assert isinstance(error, str) and error, answer.body
    else:
        assert isinstance(error, dict), answer.body
        assert isinstance(error["message"], str) and error["message"], answer.body
        assert isinstance(error["type"], str) and error["type"], answer.body
    assert len(answer.body) < 4096, "the error echoes the request back"


def test_there_are_over_100_hostile_requests() -> None:
    assert len(CASES) >= 100
    assert len({c.name for c in CASES}) == len(CASES)
    print(f"{len(CASES)} hostile requests")  # the README's reliability paragraph quotes it


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_request_gets_a_clean_answer(served, case: Case) -> None:
    live, recorder, crashed = served
    since = len(recorder.records)
    answer = exchange(live.port, case)
    assert answer.seconds <= case.within_s, answer
    if case.expect == "gone":
        assert answer.status is None or 400 <= answer.status < 500, answer
    else:
        assert answer.status is not None, "no answer"
        assert answer.status < 500, answer
        if case.expect == "ok":
            assert 200 <= answer.status < 300, answer
        if case.expect == "4xx":
            assert 400 <= answer.status < 500, answer
        if case.status is not None:
            assert answer.status == case.status, answer
        if answer.status >= 400:
            _check_shape(case.path, answer)
    if case.leave:  # what the server does after the client left shows up a little later
        deadline = time.monotonic() + 10
        while (live.state.gate.busy or live.state.workers) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)
    assert recorder.bad(since) == [] and crashed == []


def test_the_server_still_answers_both_clients(served) -> None:
    live, recorder, crashed = served
    oa = openai.OpenAI(base_url=f"{live.url}/v1", api_key="x", max_retries=0, timeout=60)
    reply = oa.chat.completions.create(model="", messages=HI, max_tokens=3)  # type: ignore[arg-type]
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage is not None and reply.usage.completion_tokens >= 1
    ol = ollama.Client(host=live.url, timeout=60)
    answer = ol.chat(model=live.state.catalog.current, messages=HI, options={"num_predict": 3})
    assert answer.done and answer.eval_count
    deadline = time.monotonic() + 10  # the worker hands the gate back just after the reply
    while live.state.gate.busy and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not live.state.gate.busy
    assert recorder.bad() == [] and crashed == []

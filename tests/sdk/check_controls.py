"""Team controls through the official `openai` SDK, the way the hold-out check drives them.

A catgate of its own (fresh SQLite file, `[metrics] enabled`, `key_probe_first_secs = 1`,
`RUST_LOG=info` with stderr in LOG_FILE) in front of a mock_upstream of its own that reports
`STREAM_COMPLETION_TOKENS` completion tokens per stream and can be told to refuse a key
(`POST /__mock/keys`). One openai key, `sk-ctl`. Every /v1 and /openai answer the SDK gets,
retries included, passes through an httpx hook, so the script knows exactly what it sent.

Env: CATGATE_URL, ROOT_TOKEN, MOCK_URL, DB_FILE, LOG_FILE, METRICS_TOKEN, MOCK_CHUNKS,
STREAM_COMPLETION_TOKENS.

Prices (gpt-4o-mini, $0.15 / $0.60 per 1M tokens), by hand:
- a stream: prompt 9, completion 5000 -> (9 * 0.15 + 5000 * 0.60) / 1e6 = $0.00300135;
- a non-stream chat: prompt 9, completion 12 -> (1.35 + 7.2) / 1e6 = $0.00000855.
A budget of $0.01 and streams with max_tokens 5000 (reservation: every body byte as a prompt
token + 5000 output tokens, about $0.00302; with a smaller or no max_tokens the reservation is
raised to the costliest settled request, $0.00300135, and the first request goes alone): a
request is admitted while settled + reserved is below $0.01. Three requests hold at most 3 * 0.00302 < 0.01, four hold at least
4 * 0.00300135 > 0.01, so in any interleaving exactly 4 are served and the month's spend is
4 * 0.00300135 = 0.0120054 <= 0.01 + one request.
"""
import collections
import datetime
import json
import os
import re
import sqlite3
import sys
import threading
import time
import urllib.request
from decimal import Decimal

import openai
from prometheus_client.parser import text_string_to_metric_families

BASE = os.environ["CATGATE_URL"]
ROOT = os.environ["ROOT_TOKEN"]
MOCK = os.environ["MOCK_URL"]
DB_FILE = os.environ["DB_FILE"]
LOG_FILE = os.environ["LOG_FILE"]
METRICS_TOKEN = os.environ["METRICS_TOKEN"]
CHUNKS = int(os.environ["MOCK_CHUNKS"])
COMPLETION = int(os.environ["STREAM_COMPLETION_TOKENS"])

assert COMPLETION == 5000, "the costs below are worked out for 5000 completion tokens"
STREAM_COST = Decimal("0.00300135")
CHAT_COST = Decimal("0.00000855")
BUDGET = Decimal("0.01")
SERVED_UNDER_BUDGET = 4


def next_month_start():
    now = datetime.datetime.now(datetime.timezone.utc)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return f"{year:04d}-{month:02d}-01T00:00:00Z"


BUDGET_MESSAGE = f"Monthly budget of $0.01 reached; resets {next_month_start()}"

# Every answer of catgate's proxy the SDK saw: (path, status, x-catgate-request-id).
sent = []
sent_lock = threading.Lock()


def _seen(response):
    path = response.request.url.path
    if path.startswith("/v1/") or path.startswith("/openai/"):
        with sent_lock:
            sent.append((path, response.status_code, response.headers.get("x-catgate-request-id")))


def http_client():
    return openai.DefaultHttpxClient(event_hooks={"response": [_seen]})


def openai_client(token, max_retries=0):
    return openai.OpenAI(
        base_url=f"{BASE}/v1", api_key=token, max_retries=max_retries, http_client=http_client()
    )


def azure_client(token):
    return openai.AzureOpenAI(
        azure_endpoint=BASE, api_key=token, api_version="2024-10-21", max_retries=0,
        http_client=http_client(),
    )


def call(method, url, token=ROOT, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req) as r:
        return r.read()


def admin(method, path, body=None, token=ROOT):
    return json.loads(call(method, f"{BASE}{path}", token, body))


def member(name, limits=None):
    user = admin("POST", "/1/users", {"name": name})
    if limits is not None:
        user = admin("PUT", f"/1/users/{user['id']}/limits", limits)
    return user


def poll(what, fn, seconds=10.0):
    """fn() until it returns a truthy value, for at most `seconds`; its last value otherwise."""
    deadline = time.monotonic() + seconds
    while True:
        got = fn()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def db_rows(sql, args=()):
    db = sqlite3.connect(f"file:{DB_FILE}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def stream_chat(client, max_tokens):
    """One streaming chat; 'ok', or the error the SDK raised."""
    cap = {} if max_tokens is None else {"max_tokens": max_tokens}
    try:
        chunks = list(client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True, **cap
        ))
        assert len(chunks) == CHUNKS, f"{len(chunks)} chunks"
        return "ok"
    except openai.APIStatusError as e:
        return e


def concurrently(n, fn):
    results = [None] * n
    def run(i):
        results[i] = fn()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def assert_budget_refusal(e):
    assert isinstance(e, openai.RateLimitError), f"{type(e).__name__}: {e}"
    assert e.status_code == 429, e.status_code
    assert e.code == "insufficient_quota" and e.type == "insufficient_quota", e.body
    assert e.body["message"] == BUDGET_MESSAGE, e.body
    assert e.body.get("param", "absent") is None, e.body


def member_records(user_id):
    return db_rows("SELECT request_id, status, cost FROM usage WHERE user_id = ?", (user_id,))


def assert_spend(user, served):
    """The member's month spend (GET /1/me), /1/usages and the records all equal `served`
    streams, and stay within the budget plus one request."""
    want = STREAM_COST * served
    assert want <= BUDGET + STREAM_COST, want
    rows = poll("records", lambda: (r := member_records(user["id"])) and len(r) == served and r)
    assert rows and all(s == 200 and Decimal(c) == STREAM_COST for _, s, c in rows), rows
    me = admin("GET", "/1/me", token=user["token"])
    assert Decimal(me["spend"]["month"]) == want, me
    assert Decimal(me["remaining"]["month"]) == 0, me
    usages = [r for r in admin("GET", "/1/usages") if r["userId"] == user["id"]]
    want_row = {"userId": user["id"], "totalUnit": served * (9 + COMPLETION),
                "cost": f"{want.quantize(Decimal('0.000001'))}"}
    assert usages == [want_row], (usages, want_row)


def budget_case(name, n, client_of, max_tokens, shared=False):
    """n concurrent streams of a new member with a $0.01 budget; `shared`: one client (its
    connection pool) for all threads, else a client per thread."""
    user = member(name, {"monthlyBudget": "0.01"})
    start = len(sent)
    one = client_of(user["token"]) if shared else None
    results = concurrently(n, lambda: stream_chat(one or client_of(user["token"]), max_tokens))
    served = results.count("ok")
    refused = [r for r in results if r != "ok"]
    for e in refused:
        assert_budget_refusal(e)
    assert served == SERVED_UNDER_BUDGET, (served, results)
    # What crossed the wire: one answer per call, also with the SDK's retries on (see below).
    with sent_lock:
        statuses = collections.Counter(s for _, s, _ in sent[start:])
    want = {200: served, 429: len(refused)}
    assert statuses == want, (statuses, want)
    assert_spend(user, served)


def budget_20_streams():
    budget_case("budget", 20, openai_client, COMPLETION, shared=True)


def budget_20_streams_with_sdk_retries():
    # The SDK retries a 429 twice by default; catgate's budget refusal says
    # `x-should-retry: false` (the budget is back next month, not in a second), so each call
    # is still one request and the member sees the refusal at once.
    # No max_tokens: the reservation is [limits] default_max_tokens (4096) output tokens, raised
    # to the costliest settled request, so the count is the same.
    budget_case("budget-retries", 20, lambda t: openai_client(t, max_retries=2), None)


def azure_budget_8_streams():
    # max_tokens 50, but the upstream answers 5000 tokens anyway (an upstream may ignore the
    # cap): the first request goes alone, and the next ones reserve what it really cost.
    budget_case("budget-azure", 8, azure_client, 50)


def rpm_limit():
    user = member("rpm", {"rpm": 2})
    client = openai_client(user["token"])
    for _ in range(2):
        r = client.chat.completions.create(model="gpt-4o-mini",
                                           messages=[{"role": "user", "content": "hi"}])
        assert r.usage.total_tokens == 21, r.usage
    try:
        client.chat.completions.create(model="gpt-4o-mini",
                                       messages=[{"role": "user", "content": "hi"}])
    except openai.RateLimitError as e:
        # rpm 2: two at once, then one every 30 s, so the third waits at most 30 s.
        retry_after = e.response.headers.get("retry-after")
        assert retry_after is not None and retry_after.isdigit(), e.response.headers
        assert 1 <= int(retry_after) <= 30, retry_after
        assert e.code == "rate_limit_exceeded", e.body
        want = f"Rate limit of 2 requests per minute reached; retry in {retry_after} s."
        assert e.body["message"] == want, e.body
        return
    raise AssertionError("expected openai.RateLimitError")


def azure_rpm_limit():
    user = member("rpm-azure", {"rpm": 1})
    azure = azure_client(user["token"])
    r = azure.chat.completions.create(model="gpt-4o-mini",
                                      messages=[{"role": "user", "content": "hi"}])
    assert r.usage.total_tokens == 21, r.usage
    try:
        azure.chat.completions.create(model="gpt-4o-mini",
                                      messages=[{"role": "user", "content": "hi"}])
    except openai.RateLimitError as e:
        retry_after = e.response.headers.get("retry-after")
        assert retry_after is not None and 1 <= int(retry_after) <= 60, e.response.headers
        assert e.code == "rate_limit_exceeded", e.body
        return
    raise AssertionError("expected openai.RateLimitError")


def key_status():
    keys = [k for k in admin("GET", "/1/keys") if k["key"] == "sk-ctl"]
    assert len(keys) == 1, keys
    return keys[0]["status"]


def mock_rejects(keys):
    call("POST", f"{MOCK}/__mock/keys", body={"reject": keys})


def expect_key_rejected(client, stream=False):
    try:
        client.chat.completions.create(model="gpt-4o-mini", stream=stream,
                                       messages=[{"role": "user", "content": "hi"}])
    except openai.AuthenticationError as e:
        raise AssertionError(f"the member sees the upstream's 401 as its own bad token: {e}")
    except openai.APIStatusError as e:
        assert e.status_code == 502 and e.code == "upstream_key_rejected", (e.status_code, e.body)
        assert "sk-ctl" not in json.dumps(e.body), e.body
        return
    raise AssertionError("expected a 502 upstream_key_rejected")


def key_health():
    user = member("health")
    client = openai_client(user["token"])
    assert key_status() == "active"
    mock_rejects(["sk-ctl"])
    try:
        expect_key_rejected(client, stream=True)
        assert key_status() == "disabled", admin("GET", "/1/keys")
        # Disabled: nothing left to serve the member, same answer (no upstream 401 either),
        # and `x-should-retry: false` keeps the SDK's default retries from asking again.
        start = len(sent)
        expect_key_rejected(openai_client(user["token"], max_retries=2))
        with sent_lock:
            assert [s for _, s, _ in sent[start:]] == [502], sent[start:]
    finally:
        mock_rejects([])
    # Probes: 1 s after the refusal, then doubling up to 2 s (run.sh's config).
    assert poll("active", lambda: key_status() == "active", 30), admin("GET", "/1/keys")
    r = client.chat.completions.create(model="gpt-4o-mini",
                                       messages=[{"role": "user", "content": "hi"}])
    assert r.usage.total_tokens == 21, r.usage
    rows = poll("records", lambda: (r := member_records(user["id"])) and len(r) == 3 and r)
    assert sorted(s for _, s, _ in rows or []) == [200, 502, 502], rows


def request_id_of_raw_responses():
    # with_raw_response, as a client would read the header; the rows and lines are checked
    # for every answer in request_ids_match_records_and_access_lines.
    user = member("raw", {"rpm": 1})
    client = openai_client(user["token"])
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    rid = raw.headers.get("x-catgate-request-id")
    assert rid, raw.headers
    assert raw.parse().usage.total_tokens == 21
    got = poll("record", lambda: db_rows(
        "SELECT user_id, status, cost FROM usage WHERE request_id = ?", (rid,)))
    assert len(got) == 1 and got[0][:2] == (user["id"], 200), got
    assert Decimal(got[0][2]) == CHAT_COST, got
    try:
        client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    except openai.RateLimitError as e:
        refused = e.response.headers.get("x-catgate-request-id")
        assert refused and refused != rid, e.response.headers
        assert db_rows("SELECT 1 FROM usage WHERE request_id = ?", (refused,)) == []
        return
    raise AssertionError("expected openai.RateLimitError")


ACCESS = re.compile(r"catgate::access.*?\brequest_id=(\S+).*?\bstatus=(\d+)")


def access_lines():
    """request id -> statuses of its access lines, from a text or a JSON (log_format) log."""
    lines = collections.defaultdict(list)
    with open(LOG_FILE, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("{"):
                event = json.loads(line)
                if event.get("target") == "catgate::access":
                    lines[event["request_id"]].append(int(event["status"]))
            elif m := ACCESS.search(line):
                lines[m.group(1)].append(int(m.group(2)))
    return lines


def request_ids_match_records_and_access_lines():
    with sent_lock:
        answers = list(sent)
    assert answers, "nothing sent"
    ids = [rid for _, _, rid in answers]
    assert all(ids), [a for a in answers if not a[2]]
    assert len(set(ids)) == len(ids), "request ids repeat"
    # Records and access lines of streams land when the stream is settled: poll.
    def settled():
        lines = access_lines()
        return all(len(lines.get(rid, [])) >= 1 for rid in ids) and lines
    lines = poll("access lines", settled) or access_lines()
    records = dict(db_rows("SELECT request_id, status FROM usage"))
    for path, status, rid in answers:
        assert lines.get(rid) == [status], (path, status, rid, lines.get(rid))
        if status in (401, 429):
            # Refused before any upstream: no record.
            assert rid not in records, ("a refused request has a record", path, rid)
        else:
            assert records.get(rid) == status, (path, status, rid, records.get(rid))
    # Every record is one of the script's answers: none without a request behind it.
    assert set(records) <= set(ids), set(records) - set(ids)
    assert len(lines) == len(ids), (len(lines), len(ids))


def metrics_equal_what_was_sent():
    req = urllib.request.Request(f"{BASE}/metrics",
                                 headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    text = urllib.request.urlopen(req).read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = families.get("catgate_requests")
    assert requests is not None and requests.type == "counter", sorted(families)
    by_status = collections.Counter()
    for s in requests.samples:
        if s.name == "catgate_requests_total":
            by_status[int(s.labels["status"])] += int(s.value)
    with sent_lock:
        want = collections.Counter(status for _, status, _ in sent)
    assert sum(by_status.values()) == len(sent), (sum(by_status.values()), len(sent))
    assert by_status == want, (by_status, want)
    # The cost counter is a float; the bill in the database is exact.
    billed = sum(Decimal(c) for (c,) in db_rows("SELECT cost FROM usage WHERE cost IS NOT NULL"))
    counted = sum(s.value for s in families["catgate_cost_usd"].samples
                  if s.name == "catgate_cost_usd_total")
    assert abs(Decimal(repr(counted)) - billed) < Decimal("1e-12"), (counted, billed)
    keys = {s.labels["status"]: s.value for s in families["catgate_keys"].samples}
    assert keys.get("active") == 1 and not keys.get("disabled"), keys


# Without the unauthorized-answer check the metrics count would miss catgate's own 401s.
def bad_token_counts():
    try:
        openai_client("not-a-token").models.list()
    except openai.AuthenticationError as e:
        assert e.code == "invalid_api_key", e.body
        return
    raise AssertionError("expected openai.AuthenticationError")


passed = failed = 0


def check(name, fn):
    global passed, failed
    t = time.monotonic()
    try:
        fn()
        passed += 1
        print(f"ok   {name} ({time.monotonic() - t:.1f} s)")
    except Exception as e:  # noqa: BLE001 - report every failure, keep going
        failed += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}")


for name, fn in [
    ("budget $0.01, 20 concurrent streams: 4 served, 16 insufficient_quota", budget_20_streams),
    ("same without max_tokens, SDK default retries: one request per call", budget_20_streams_with_sdk_retries),
    ("AzureOpenAI: budget $0.01, 8 streams, upstream ignores max_tokens: 4 served", azure_budget_8_streams),
    ("rpm 2: the third gets 429 with Retry-After", rpm_limit),
    ("AzureOpenAI: rpm 1, the second gets 429 with Retry-After", azure_rpm_limit),
    ("bad token raises AuthenticationError", bad_token_counts),
    ("key refused (401) -> disabled, 502 upstream_key_rejected, probed back", key_health),
    ("x-catgate-request-id via with_raw_response", request_id_of_raw_responses),
    ("request ids = usage records = access lines", request_ids_match_records_and_access_lines),
    ("/metrics parses and counts what was sent", metrics_equal_what_was_sent),
]:
    check(name, fn)

print(f"sdk controls: {passed} passed, {failed} failed ({len(sent)} proxied requests sent)")
sys.exit(1 if failed else 0)

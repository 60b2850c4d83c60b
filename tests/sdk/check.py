"""Drives a running catgate with the official `openai` SDK, the way a team member would.

Env: CATGATE_URL (http://127.0.0.1:PORT), MEMBER_TOKEN, ROOT_TOKEN, and AZURE_MEMBER_TOKEN /
AZURE_MEMBER_ID (a second member who only calls Azure-style paths, so that its usage row checks
them alone). The upstream behind catgate is examples/mock_upstream.rs,
whose answers are fixed (usage 9/12/21 for chat, stream usage 9/N, embeddings usage 5), behind
one `openai` key and one `azure` key, so requests reach it both ways.
"""
import json
import os
import sys
import time
import urllib.request

import openai

BASE = os.environ["CATGATE_URL"]
MEMBER = os.environ["MEMBER_TOKEN"]
ROOT = os.environ["ROOT_TOKEN"]
CHUNKS = int(os.environ.get("MOCK_CHUNKS", "5"))

AZURE_MEMBER = os.environ["AZURE_MEMBER_TOKEN"]
AZURE_MEMBER_ID = int(os.environ["AZURE_MEMBER_ID"])

client = openai.OpenAI(base_url=f"{BASE}/v1", api_key=MEMBER, max_retries=0)
# Unmodified, as a team on Azure configures it: catgate's base URL is the "resource endpoint".
azure = openai.AzureOpenAI(
    azure_endpoint=BASE, api_key=AZURE_MEMBER, api_version="2024-10-21", max_retries=0
)
passed = failed = 0


def check(name, fn):
    global passed, failed
    try:
        fn()
        passed += 1
        print(f"ok   {name}")
    except Exception as e:  # noqa: BLE001 - report every failure, keep going
        failed += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}")


def chat_non_stream():
    r = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert r.usage.total_tokens == 21, r.usage
    assert r.choices[0].message.content, r


def chat_stream():
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
    )
    chunks = list(stream)
    assert len(chunks) == CHUNKS, f"{len(chunks)} chunks"
    # catgate asked upstream for usage; the client did not, so it must not see it.
    assert all(c.usage is None for c in chunks), chunks[-1]


def chat_stream_with_usage():
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == CHUNKS


def embeddings():
    r = client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert r.usage.prompt_tokens > 0 and len(r.data) == 1


def models():
    ids = [m.id for m in client.models.list()]
    assert ids, ids


def upstream_error_is_typed():
    try:
        client.images.generate(model="dall-e-3", prompt="a cat")
    except openai.NotFoundError as e:
        assert e.status_code == 404
        return
    raise AssertionError("expected openai.NotFoundError")


def bad_token_is_typed():
    bad = openai.OpenAI(base_url=f"{BASE}/v1", api_key="not-a-token", max_retries=0)
    try:
        bad.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    except openai.AuthenticationError as e:
        assert e.code == "invalid_api_key", e.code
        return
    raise AssertionError("expected openai.AuthenticationError")


def responses_non_stream():
    r = client.responses.create(model="gpt-5", input="hi")
    assert r.output_text == "Hello", r
    assert r.usage.input_tokens_details.cached_tokens == 1500, r.usage
    assert r.usage.output_tokens_details.reasoning_tokens == 256, r.usage


def responses_stream_flex():
    events = list(client.responses.create(model="gpt-5", input="hi", stream=True, service_tier="flex"))
    assert [e.type for e in events][-1] == "response.completed", events
    assert events[-1].response.usage.total_tokens == 2300, events[-1]


def azure_chat():
    raw = azure.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    url = str(raw.http_request.url)
    want = f"{BASE}/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
    assert url == want, url
    assert raw.headers.get("x-catgate-request-id"), raw.headers
    r = raw.parse()
    assert r.usage.total_tokens == 21, r.usage
    assert r.choices[0].message.content, r


def azure_chat_stream():
    chunks = list(
        azure.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert len(chunks) == CHUNKS, f"{len(chunks)} chunks"
    assert all(c.usage is None for c in chunks), chunks[-1]


def azure_chat_stream_with_usage():
    chunks = list(
        azure.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usage = chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (9, CHUNKS), usage


def azure_embeddings():
    r = azure.embeddings.create(model="text-embedding-3-small", input="hello")
    assert r.usage.prompt_tokens == 5 and len(r.data) == 1, r


def azure_v1_api():
    # Azure's v1 API is used with the plain client and base_url <resource>/openai/v1.
    v1 = openai.OpenAI(base_url=f"{BASE}/openai/v1", api_key=AZURE_MEMBER, max_retries=0)
    r = v1.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert r.usage.total_tokens == 21, r.usage


def azure_bad_token_is_typed():
    bad = openai.AzureOpenAI(
        azure_endpoint=BASE, api_key="not-a-token", api_version="2024-10-21", max_retries=0
    )
    try:
        bad.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    except openai.AuthenticationError as e:
        assert e.code == "invalid_api_key", e.code
        return
    raise AssertionError("expected openai.AuthenticationError")


def azure_usage_is_metered():
    # The Azure member's two chats (9 + 12 each), two streams (9 + CHUNKS each) of gpt-4o-mini
    # ($0.15 / $0.60 per 1M) and embeddings (5 tokens at $0.02 per 1M):
    # 2 * (9 * 0.15 + 12 * 0.6) + 2 * (9 * 0.15 + 5 * 0.6) + 5 * 0.02 = 25.9 per 1M
    # -> "0.000026".
    assert CHUNKS == 5, "the expected cost below is worked out for 5 chunks"
    want = {"userId": AZURE_MEMBER_ID, "totalUnit": 2 * 21 + 2 * (9 + CHUNKS) + 5, "cost": "0.000026"}
    row = None
    for _ in range(50):
        rows = json.loads(get("/1/usages"))
        row = next((r for r in rows if r["userId"] == AZURE_MEMBER_ID), None)
        if row == want:
            return
        time.sleep(0.1)
    raise AssertionError(f"{row}, want {want}")


def both_keys_served():
    rows = json.loads(get("/1/usages/detail?group_by=key"))
    served = {r["keyName"] for r in rows if r["keyId"] is not None and r["requests"] > 0}
    assert served == {"mock", "mock-azure"}, rows


def get(path, token=ROOT):
    req = urllib.request.Request(f"{BASE}{path}", headers={"Authorization": f"Bearer {token}"})
    return urllib.request.urlopen(req).read()


def detail_report_matches_the_invoice():
    # gpt-5 list prices per 1M: default 1.25 in / 0.125 cached / 10 out; flex 0.625 / 0.0625 / 5.
    # default: (500 * 1.25 + 1500 * 0.125 + 300 * 10) / 1e6 = 0.0038125 -> "0.003813"
    # flex:    (500 * 0.625 + 1500 * 0.0625 + 300 * 5) / 1e6 = 0.00190625 -> "0.001906"
    rows = json.loads(get("/1/usages/detail?group_by=model,tier"))
    gpt5 = {r["tier"]: r for r in rows if r["model"] == "gpt-5-2025-08-07"}
    for tier, cost in [("default", "0.003813"), ("flex", "0.001906")]:
        r = gpt5[tier]
        got = (r["requests"], r["promptTokens"], r["cachedTokens"], r["completionTokens"],
               r["reasoningTokens"], r["totalTokens"], r["cost"], r["unpricedRequests"])
        assert got == (1, 2000, 1500, 300, 256, 2300, cost, 0), (tier, r)
    csv = get("/1/usages/detail?group_by=model,tier&format=csv").decode()
    assert "gpt-5-2025-08-07,flex,1,2000,1500,0,300,256,0,0,2300,0.001906,0,0,0" in csv, csv


def usages_add_up():
    # 2 chats (21 each) + 2 streams (9 + CHUNKS each) + embeddings (5) + 2 responses (2300
    # each) + models and the failed image call (0 each), then the Azure member's (see
    # azure_usage_is_metered); polled: records land within 100 ms.
    want = 2 * 21 + 2 * (9 + CHUNKS) + 5 + 2 * 2300 + 2 * 21 + 2 * (9 + CHUNKS) + 5
    got = None
    for _ in range(50):
        req = urllib.request.Request(f"{BASE}/1/usages", headers={"Authorization": f"Bearer {ROOT}"})
        rows = json.load(urllib.request.urlopen(req))
        got = sum(r["totalUnit"] for r in rows)
        if got == want:
            assert all(len(r["cost"].split(".")[1]) == 6 for r in rows), rows
            return
        time.sleep(0.1)
    raise AssertionError(f"totalUnit {got}, want {want}")


for name, fn in [
    ("chat non-stream", chat_non_stream),
    ("chat non-stream again", chat_non_stream),
    ("chat stream (usage chunk hidden)", chat_stream),
    ("chat stream with include_usage", chat_stream_with_usage),
    ("embeddings", embeddings),
    ("models", models),
    ("upstream 404 raises NotFoundError", upstream_error_is_typed),
    ("bad token raises AuthenticationError", bad_token_is_typed),
    ("responses API with cached and reasoning tokens", responses_non_stream),
    ("responses API stream on the flex tier", responses_stream_flex),
    ("AzureOpenAI chat via a deployment path", azure_chat),
    ("AzureOpenAI chat stream (usage chunk hidden)", azure_chat_stream),
    ("AzureOpenAI chat stream with include_usage", azure_chat_stream_with_usage),
    ("AzureOpenAI embeddings", azure_embeddings),
    ("Azure v1 API (/openai/v1)", azure_v1_api),
    ("AzureOpenAI bad token raises AuthenticationError", azure_bad_token_is_typed),
    ("AzureOpenAI usage row and cost", azure_usage_is_metered),
    ("detail report matches the invoice", detail_report_matches_the_invoice),
    ("/1/usages adds up", usages_add_up),
    ("openai and azure keys both served", both_keys_served),
]:
    check(name, fn)

print(f"sdk: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)

"""Drives a running catgate with the official `openai` SDK, the way a team member would.

Env: CATGATE_URL (http://127.0.0.1:PORT), MEMBER_TOKEN, ROOT_TOKEN. The upstream behind
catgate is examples/mock_upstream.rs, whose answers are fixed (usage 9/12/21 for chat,
stream usage 9/N, embeddings usage 5).
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

client = openai.OpenAI(base_url=f"{BASE}/v1", api_key=MEMBER, max_retries=0)
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


def usages_add_up():
    # 2 chats (21 each) + 2 streams (9 + CHUNKS each) + embeddings (5) + models and the
    # failed image call (0 each); records are written asynchronously, so poll briefly.
    want = 2 * 21 + 2 * (9 + CHUNKS) + 5
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
    ("/1/usages adds up", usages_add_up),
]:
    check(name, fn)

print(f"sdk: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)

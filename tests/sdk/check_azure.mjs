// Drives a running catgate with the official `openai` Node SDK's AzureOpenAI client, unmodified,
// the way a team on Azure would. Env: CATGATE_URL, ROOT_TOKEN, NODE_MEMBER_TOKEN and
// NODE_MEMBER_ID (a member who makes only these calls, so its usage row checks them alone),
// MOCK_CHUNKS. The upstream is examples/mock_upstream.rs (usage 9/12 for chat, 9/N for a
// stream, 5 for embeddings).
import { AzureOpenAI } from "openai";

const BASE = process.env.CATGATE_URL;
const ROOT = process.env.ROOT_TOKEN;
const MEMBER = process.env.NODE_MEMBER_TOKEN;
const MEMBER_ID = Number(process.env.NODE_MEMBER_ID);
const CHUNKS = Number(process.env.MOCK_CHUNKS ?? "5");

const azure = (apiKey) =>
  new AzureOpenAI({ endpoint: BASE, apiKey, apiVersion: "2024-10-21", maxRetries: 0 });
const client = azure(MEMBER);
const messages = [{ role: "user", content: "hi" }];

function assert(ok, what) {
  if (!ok) throw new Error(typeof what === "string" ? what : JSON.stringify(what));
}

async function chat() {
  const r = await client.chat.completions.create({ model: "gpt-4o-mini", messages });
  assert(r.usage.total_tokens === 21, r.usage);
  assert(r.choices[0].message.content, r);
}

async function streamChunks(extra) {
  const chunks = [];
  const stream = await client.chat.completions.create({ model: "gpt-4o-mini", messages, stream: true, ...extra });
  for await (const c of stream) chunks.push(c);
  return chunks;
}

async function chatStream() {
  const chunks = await streamChunks({});
  assert(chunks.length === CHUNKS, `${chunks.length} chunks`);
  // catgate asked upstream for usage; the client did not, so it must not see it.
  assert(chunks.every((c) => !c.usage), chunks.at(-1));
}

async function chatStreamWithUsage() {
  const chunks = await streamChunks({ stream_options: { include_usage: true } });
  const usage = chunks.at(-1).usage;
  assert(usage && usage.prompt_tokens === 9 && usage.completion_tokens === CHUNKS, usage);
}

async function embeddings() {
  const r = await client.embeddings.create({ model: "text-embedding-3-small", input: "hello" });
  assert(r.usage.prompt_tokens === 5 && r.data.length === 1, r);
}

async function badToken() {
  try {
    await azure("not-a-token").chat.completions.create({ model: "gpt-4o", messages });
  } catch (e) {
    assert(e.status === 401 && e.code === "invalid_api_key", `${e.status} ${e.code}`);
    return;
  }
  throw new Error("expected a 401 error");
}

async function usageRow() {
  // Chat (9 × 0.15 + 12 × 0.6) + 2 streams (9 × 0.15 + 5 × 0.6) of gpt-4o-mini ($0.15 / $0.60
  // per 1M) + embeddings (5 × 0.02) = 17.35 per 1M -> "0.000017".
  assert(CHUNKS === 5, "the expected cost is worked out for 5 chunks");
  const want = { userId: MEMBER_ID, totalUnit: 21 + 2 * (9 + CHUNKS) + 5, cost: "0.000017" };
  let row;
  for (let i = 0; i < 50; i++) {
    const r = await fetch(`${BASE}/1/usages`, { headers: { Authorization: `Bearer ${ROOT}` } });
    row = (await r.json()).find((x) => x.userId === MEMBER_ID);
    if (JSON.stringify(row) === JSON.stringify(want)) return;
    await new Promise((done) => setTimeout(done, 100));
  }
  throw new Error(`${JSON.stringify(row)}, want ${JSON.stringify(want)}`);
}

let passed = 0;
let failed = 0;
for (const [name, fn] of [
  ["node AzureOpenAI chat", chat],
  ["node AzureOpenAI chat stream (usage chunk hidden)", chatStream],
  ["node AzureOpenAI chat stream with include_usage", chatStreamWithUsage],
  ["node AzureOpenAI embeddings", embeddings],
  ["node AzureOpenAI bad token is a 401 invalid_api_key", badToken],
  ["node AzureOpenAI usage row and cost", usageRow],
]) {
  try {
    await fn();
    passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e}`);
  }
}
console.log(`sdk-node: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);

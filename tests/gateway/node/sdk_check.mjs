// Called by test_node_sdk.py: exercises the gateway with the official Node SDK and prints JSON.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: process.env.API_KEY, maxRetries: 0 });
const out = {};

const plain = await client.chat.completions.create({
  model: "tiny-llama", messages: [{ role: "user", content: "Hello" }], max_tokens: 6, temperature: 0,
});
out.plain = { object: plain.object, role: plain.choices[0].message.role, content: plain.choices[0].message.content,
  finish_reason: plain.choices[0].finish_reason, usage: plain.usage };

const stream = await client.chat.completions.create({
  model: "tiny-llama", messages: [{ role: "user", content: "Hello" }], max_tokens: 6, temperature: 0,
  stream: true, stream_options: { include_usage: true },
});
const chunks = [];
for await (const chunk of stream) chunks.push(chunk);
out.stream = { count: chunks.length, text: chunks.map((c) => c.choices[0]?.delta?.content ?? "").join(""),
  usage: chunks[chunks.length - 1].usage, last_choices: chunks[chunks.length - 1].choices.length };

const models = await client.models.list();
out.models = models.data.map((m) => m.id).sort();

const emb = await client.embeddings.create({ model: "all-minilm-l6-v2", input: ["hello", "world"] });
out.embeddings = { count: emb.data.length, dims: emb.data[0].embedding.length };

try {
  await new OpenAI({ baseURL: process.env.BASE_URL, apiKey: "bud-AAAAAAAA-wrong", maxRetries: 0 }).models.list();
  out.bad_key = "accepted";
} catch (err) {
  out.bad_key = { status: err.status, code: err.code };
}
console.log(JSON.stringify(out));

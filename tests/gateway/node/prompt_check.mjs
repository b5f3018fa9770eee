// Called by test_prompt_node_sdk.py: runs a saved prompt through /v1/responses with the official
// Node SDK (unary, streamed with create({stream: true}) and with responses.stream) and prints JSON.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: process.env.API_KEY, maxRetries: 0 });
const prompt = { id: process.env.PROMPT_ID, variables: JSON.parse(process.env.VARIABLES) };
const out = {};

if (process.env.TOOL_PROMPT_ID) {
  // A prompt whose model calls a function tool (scripted): streamed both ways, the call assembled.
  const toolPrompt = { id: process.env.TOOL_PROMPT_ID, variables: prompt.variables };
  const toolEvents = [];
  for await (const event of await client.responses.create({ prompt: toolPrompt, stream: true })) toolEvents.push(event);
  const toolHelper = client.responses.stream({ prompt: toolPrompt, input: [], model: process.env.MODEL });
  for await (const _ of toolHelper);
  const toolFinal = await toolHelper.finalResponse();
  out.tools = {
    types: toolEvents.map((e) => e.type),
    deltas: toolEvents.filter((e) => e.type === "response.function_call_arguments.delta").map((e) => e.delta),
    call: toolFinal.output.map((i) => ({ type: i.type, name: i.name, arguments: i.arguments })),
  };
}

const plain = await client.responses.create({ prompt });
out.plain = { text: plain.output_text, prompt: plain.prompt };

const events = [];
for await (const event of await client.responses.create({ prompt, stream: true })) events.push(event);
out.stream = { types: events.map((e) => e.type), sequence: events.map((e) => e.sequence_number),
  text: events.filter((e) => e.type === "response.output_text.delta").map((e) => e.delta).join("") };

const helper = client.responses.stream({ prompt, input: [], model: process.env.MODEL });
const helperTypes = [];
for await (const event of helper) helperTypes.push(event.type);
const final = await helper.finalResponse();
out.helper = { types: helperTypes, text: final.output_text };

try {
  await client.responses.create({ prompt: { id: process.env.PROMPT_ID, variables: {} } });
  out.bad = "accepted";
} catch (err) {
  out.bad = { status: err.status, code: err.code, param: err.param };
}
console.log(JSON.stringify(out));

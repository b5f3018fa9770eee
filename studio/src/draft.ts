// A prompt being edited (one compare window's) and its conversion to and from the API's
// PromptVersion JSON.
import type { FieldViolation } from "./api";

export const ROLES = ["user", "assistant", "developer", "tool"] as const;
export const TYPES = ["string", "integer", "number", "boolean", "enum", "array", "object"] as const;
export type VarType = (typeof TYPES)[number];
/** The types that hold no other variable. */
export const SCALARS = ["string", "integer", "number", "boolean"] as const;
/** How deep arrays and objects nest (the API's MAX_VARIABLE_DEPTH): a container may sit at
 * depth 1 (a declared variable) to MAX_DEPTH; below that, scalars and enums only. */
export const MAX_DEPTH = 5;
/** The types a variable at `depth` (1: declared) may take. */
export const typesAt = (depth: number): readonly VarType[] => (depth <= MAX_DEPTH ? TYPES : [...SCALARS, "enum"]);

export interface Variable {
  name: string;
  type: VarType;
  description: string;
  /** enum: the options, comma-separated as typed. */
  options: string;
  /** The default as typed; empty: required. */
  default: string;
  /** Basic validation: the pydantic constraints that fit the type, as typed (empty: unset). */
  basic: boolean;
  constraints: Record<string, string>;
  /** array: its items (a variable without a name: any type, nested in turn). */
  item?: Variable;
  /** object: its fields. */
  fields?: Variable[];
}

/** The constraints each type takes (the API's `Constraints` fields) and their labels. */
export const CONSTRAINTS: Record<VarType, [string, string][]> = {
  string: [
    ["min_length", "Min length"],
    ["max_length", "Max length"],
    ["pattern", "Pattern (regex)"],
  ],
  integer: [
    ["ge", "≥"],
    ["le", "≤"],
    ["gt", ">"],
    ["lt", "<"],
    ["multiple_of", "Multiple of"],
  ],
  number: [
    ["ge", "≥"],
    ["le", "≤"],
    ["gt", ">"],
    ["lt", "<"],
    ["multiple_of", "Multiple of"],
  ],
  boolean: [],
  enum: [],
  array: [
    ["min_items", "Min items"],
    ["max_items", "Max items"],
  ],
  object: [],
};

export const newVariable = (name: string, type: VarType = "string"): Variable => ({
  name,
  type,
  description: "",
  options: "",
  default: "",
  basic: false,
  constraints: {},
});

export interface Message {
  role: string;
  template: string;
}

export interface Parameters {
  temperature: string;
  max_tokens: string;
  top_p: string;
  frequency_penalty: string;
  presence_penalty: string;
  /** One stop sequence a line. */
  stop: string;
  seed: string;
}

/** An integration of the catalogue (the API's `IntegrationTool`): its switch and access keys
 * (read back masked, `****` plus the last 4 characters; sent back as they are to keep them). */
export interface Integration {
  integration: string;
  active: boolean;
  /** Keys typed here (new or replacing a saved one). */
  keys: Record<string, string>;
  /** Keys saved before, as the API reads them back (masked). */
  saved: Record<string, string>;
}

/** A function tool: its name, description and the JSON schema of its arguments (as typed). */
export interface FunctionTool {
  name: string;
  description: string;
  parameters: string;
}

/** The catalogue the app accepts (app/prompts/body.py INTEGRATIONS): name, label, its keys. */

export const isMasked = (value: string) => value.startsWith("****");

export interface Draft {
  model: string;
  parameters: Parameters;
  systemPrompt: string;
  messages: Message[];
  structured: boolean;
  variables: Variable[];
  /** Output: structured (the fields below, a JSON object) or text. */
  outputStructured: boolean;
  outputVariables: Variable[];
  /** The output's custom validation: the rule in words, and the constraint document (JSON
   * text) generated from it or written by hand. */
  outputRule: string;
  outputValidation: string;
  integrations: Integration[];
  functions: FunctionTool[];
  allowMultipleCalls: boolean;
}

export const emptyDraft = (model: string): Draft => ({
  model,
  parameters: { temperature: "", max_tokens: "", top_p: "", frequency_penalty: "", presence_penalty: "", stop: "", seed: "" },
  systemPrompt: "",
  messages: [{ role: "user", template: "{{ input }}" }],
  structured: false,
  variables: [],
  outputStructured: false,
  outputVariables: [],
  outputRule: "",
  outputValidation: "",
  integrations: [],
  functions: [],
  allowMultipleCalls: false,
});

export const copyDraft = (draft: Draft): Draft => JSON.parse(JSON.stringify(draft)) as Draft;

const enumName = (type: VarType) => `VARIABLE_TYPE_${type.toUpperCase()}`;

export const optionsOf = (v: Variable): string[] =>
  v.options
    .split(",")
    .map((o) => o.trim())
    .filter(Boolean);

/** A typed value from the text a user typed for a variable of `type` (undefined: not valid). */
export function typedValue(v: Variable, text: string): unknown {
  switch (v.type) {
    case "integer":
      return /^-?\d+$/.test(text.trim()) ? Number.parseInt(text, 10) : undefined;
    case "number":
      return text.trim() !== "" && Number.isFinite(Number(text)) ? Number(text) : undefined;
    case "boolean":
      return text === "true" ? true : text === "false" ? false : undefined;
    case "array":
    case "object":
      try {
        const value = JSON.parse(text);
        const fits = v.type === "array" ? Array.isArray(value) : value !== null && typeof value === "object" && !Array.isArray(value);
        return fits ? value : undefined;
      } catch {
        return undefined;
      }
    default:
      return text;
  }
}

const numberOrUndefined = (text: string) => (text.trim() === "" ? undefined : Number(text));

/** A variable as the API's `Variable` JSON. */
function variableJson(v: Variable): Record<string, unknown> {
  const out: Record<string, unknown> = { name: v.name, type: enumName(v.type), description: v.description };
  if (v.type === "enum") out.options = optionsOf(v);
  if (v.type === "array") out.items = variableJson({ ...(v.item ?? newVariable("item")), name: "item" });
  if (v.type === "object") out.fields = (v.fields ?? []).map(variableJson);
  if (v.default !== "") {
    const value = typedValue(v, v.default);
    // An untypable default is sent as typed: the API names the field and why.
    out.default = value === undefined ? v.default : value;
  }
  if (v.basic) {
    out.validation = "VALIDATION_MODE_BASIC";
    const constraints: Record<string, unknown> = {};
    for (const [key] of CONSTRAINTS[v.type]) {
      const typed = (v.constraints[key] ?? "").trim();
      if (typed === "") continue;
      // Numbers as numbers (a typo is sent as typed: the API names it).
      constraints[key] = key === "pattern" || !Number.isFinite(Number(typed)) ? typed : Number(typed);
    }
    out.constraints = constraints;
  }
  return out;
}

function parseDocument(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new Error("The output's constraint document is not valid JSON.");
  }
}

/** The PromptVersion JSON a save or a run sends. */
export function toVersion(draft: Draft, note = ""): Record<string, unknown> {
  const p = draft.parameters;
  const parameters: Record<string, unknown> = {
    temperature: numberOrUndefined(p.temperature),
    max_tokens: numberOrUndefined(p.max_tokens),
    top_p: numberOrUndefined(p.top_p),
    frequency_penalty: numberOrUndefined(p.frequency_penalty),
    presence_penalty: numberOrUndefined(p.presence_penalty),
    seed: p.seed.trim() === "" ? undefined : p.seed.trim(),
    stop: p.stop.split("\n").filter((s) => s !== ""),
  };
  const variables = draft.variables.map(variableJson);
  const outputs = draft.outputVariables.map(variableJson);
  const tools = draft.functions.map((f, i) => {
    let parameters: unknown;
    try {
      parameters = f.parameters.trim() === "" ? { type: "object", properties: {} } : JSON.parse(f.parameters);
    } catch {
      throw new Error(`Function tool ${i + 1} (${f.name || "unnamed"}): its parameters are not valid JSON.`);
    }
    return { type: "function", function: { name: f.name, description: f.description, parameters } };
  });
  return {
    model: draft.model,
    system_prompt: draft.systemPrompt,
    messages: draft.messages.map((m) => ({ role: m.role, template: m.template })),
    parameters,
    input: draft.structured ? { mode: "IO_MODE_STRUCTURED", variables } : { mode: "IO_MODE_UNSTRUCTURED" },
    output: {
      ...(draft.outputStructured ? { mode: "IO_MODE_STRUCTURED", variables: outputs } : { mode: "IO_MODE_UNSTRUCTURED" }),
      rule: draft.outputRule,
      ...(draft.outputValidation.trim() ? { validation: parseDocument(draft.outputValidation) } : {}),
    },
    // A saved key is sent back masked (the API keeps it) unless a new one was typed.
    integration_tools: draft.integrations.map((t) => ({
      integration: t.integration,
      active: t.active,
      access_keys: { ...t.saved, ...Object.fromEntries(Object.entries(t.keys).filter(([, v]) => v !== "")) },
    })),
    tools,
    allow_multiple_calls: draft.allowMultipleCalls,
    note,
  };
}

const text = (value: unknown) => (value === undefined || value === null ? "" : String(value));

/** A variable from the API's `Variable` JSON. */
function variableOf(v: any): Variable {
  const type = text(v.type).replace("VARIABLE_TYPE_", "").toLowerCase();
  return {
    name: text(v.name),
    type: (TYPES as readonly string[]).includes(type) ? (type as VarType) : "string",
    description: text(v.description),
    options: (v.options ?? []).join(", "),
    default: v.default === undefined ? "" : typeof v.default === "string" ? v.default : JSON.stringify(v.default),
    basic: v.validation === "VALIDATION_MODE_BASIC",
    constraints: Object.fromEntries(Object.entries(v.constraints ?? {}).map(([k, c]) => [k, String(c)])),
    ...(type === "array" ? { item: variableOf(v.items ?? { type: "VARIABLE_TYPE_STRING" }) } : {}),
    ...(type === "object" ? { fields: (v.fields ?? []).map(variableOf) } : {}),
  };
}

/** A draft from a saved PromptVersion's JSON. */
export function fromVersion(version: Record<string, any>): Draft {
  const p = version.parameters ?? {};
  const input = version.input ?? {};
  const output = version.output ?? {};
  return {
    model: text(version.model),
    parameters: {
      temperature: text(p.temperature),
      max_tokens: text(p.max_tokens),
      top_p: text(p.top_p),
      frequency_penalty: text(p.frequency_penalty),
      presence_penalty: text(p.presence_penalty),
      stop: (p.stop ?? []).join("\n"),
      seed: text(p.seed),
    },
    systemPrompt: text(version.system_prompt),
    messages: (version.messages ?? []).map((m: any) => ({ role: text(m.role) || "user", template: text(m.template) })),
    structured: input.mode === "IO_MODE_STRUCTURED",
    variables: (input.variables ?? []).map(variableOf),
    outputStructured: output.mode === "IO_MODE_STRUCTURED",
    outputVariables: (output.variables ?? []).map(variableOf),
    outputRule: text(output.rule),
    outputValidation: output.validation === undefined ? "" : JSON.stringify(output.validation, null, 2),
    integrations: (version.integration_tools ?? []).map((t: any) => ({
      integration: text(t.integration),
      active: Boolean(t.active),
      keys: {},
      saved: { ...(t.access_keys ?? {}) },
    })),
    functions: (version.tools ?? []).map((t: any) => ({
      name: text(t.function?.name),
      description: text(t.function?.description),
      parameters: t.function?.parameters === undefined ? "" : JSON.stringify(t.function.parameters, null, 2),
    })),
    allowMultipleCalls: Boolean(version.allow_multiple_calls),
  };
}

/** The inputs a run asks for: the declared variables, or the one `input` of an unstructured
 * prompt. */
export function runInputs(draft: Draft): Variable[] {
  if (draft.structured) return draft.variables;
  return [{ ...newVariable("input"), description: "The input" }];
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
// Python's keywords: the API refuses them as names (a field must be an attribute in Jinja).
const KEYWORDS = new Set(
  "False None True and as assert async await break class continue def del elif else except finally for from global if import in is lambda nonlocal not or pass raise return try while with yield".split(" "),
);

/** What is wrong with declared variables (all of it, at every level, named by the API's field
 * paths: `input.variables[0].fields[1].name`, `…items.fields[0]`), before anything is sent. */
export function checkVariables(variables: Variable[], base: string, depth = 1): FieldViolation[] {
  const out: FieldViolation[] = [];
  const seen = new Set<string>();
  variables.forEach((v, i) => {
    const at = `${base}[${i}]`;
    if (!IDENTIFIER.test(v.name) || KEYWORDS.has(v.name)) {
      out.push({ field: `${at}.name`, description: v.name ? `"${v.name}" is not a name: letters, digits and _, not starting with a digit.` : "Give it a name." });
    } else if (seen.has(v.name)) {
      out.push({ field: `${at}.name`, description: `"${v.name}" is declared twice at this level.` });
    }
    seen.add(v.name);
    out.push(...checkVariable(v, at, depth));
  });
  return out;
}

function checkVariable(v: Variable, at: string, depth: number): FieldViolation[] {
  const out: FieldViolation[] = [];
  if ((v.type === "array" || v.type === "object") && depth > MAX_DEPTH) {
    out.push({ field: at, description: `Nested deeper than ${MAX_DEPTH} levels.` });
  }
  if (v.type === "enum" && optionsOf(v).length === 0) {
    out.push({ field: `${at}.options`, description: "An enum needs its options." });
  }
  if (v.type === "object") {
    if ((v.fields ?? []).length === 0) out.push({ field: `${at}.fields`, description: "An object needs at least one field." });
    else out.push(...checkVariables(v.fields ?? [], `${at}.fields`, depth + 1));
  }
  if (v.type === "array") out.push(...checkVariable(v.item ?? newVariable("item"), `${at}.items`, depth + 1));
  if (v.default !== "" && typedValue(v, v.default) === undefined) {
    out.push({ field: `${at}.default`, description: `The default is not ${v.type === "integer" ? "an" : "a"} ${v.type}${v.type === "array" || v.type === "object" ? " (JSON)" : ""}.` });
  }
  return out;
}

/** What is wrong with a draft's variables (inputs and a structured output's fields). */
export function checkDraft(draft: Draft): FieldViolation[] {
  return [
    ...(draft.structured ? checkVariables(draft.variables, "input.variables") : []),
    ...(draft.outputStructured ? checkVariables(draft.outputVariables, "output.variables") : []),
  ];
}

/** An empty value of a variable's type (its default when it has one): what the run form starts
 * from, at every level. */
export function emptyValue(v: Variable): unknown {
  if (v.default !== "") {
    const typed = typedValue(v, v.default);
    if (typed !== undefined) return typed;
  }
  switch (v.type) {
    case "boolean":
      return false;
    case "enum":
      return optionsOf(v)[0] ?? "";
    case "array":
      return [];
    case "object":
      return Object.fromEntries((v.fields ?? []).map((f) => [f.name, emptyValue(f)]));
    case "integer":
    case "number":
      return 0;
    default:
      return "";
  }
}

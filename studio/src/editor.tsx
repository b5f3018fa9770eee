// The prompt editor (flow 1): compare windows side by side, each a draft with its deployment,
// parameters, system prompt and messages (Jinja), input variables; saved as a new version, run
// with the step-by-step form. Errors the API names by field are shown where that field is.
import { Fragment } from "preact";
import { useEffect, useState } from "preact/hooks";
import {
  ApiError,
  call,
  chatDeployments,
  stream,
  type Deployment,
  type FieldViolation,
  type Prompt,
  seg,
} from "./api";
import {
  CONSTRAINTS,
  copyDraft,
  newVariable,
  type Draft,
  emptyDraft,
  fromVersion,
  type Message,
  type Parameters,
  ROLES,
  runInputs,
  checkDraft,
  toVersion,
  typesAt,
  type Variable,
  type VarType,
} from "./draft";
import { DeployPanel } from "./deploy";
import { History } from "./history";
import { Tools } from "./tools";
import { href } from "./router";
import { RunForm } from "./runform";
import { describe, ErrorBox, Link, usd, useLoad } from "./ui";

interface VersionInfo {
  version: number;
  note?: string;
  labels?: string[];
}

interface RunResult {
  text?: string;
  response?: { output?: { type?: string; name?: string; arguments?: string; call_id?: string }[] };
  output?: unknown;
  model_calls?: number;
  usage?: { prompt_tokens?: number; completion_tokens?: number; total_tokens?: number };
  /** What the run cost at its deployment's price (US dollars, a decimal string). */
  cost_usd?: string;
}

interface Window {
  key: number;
  draft: Draft;
  /** The saved version this draft started from (null: unsaved). */
  version: number | null;
  violations: FieldViolation[];
  error: string;
  notice: string;
  running: boolean;
  result: RunResult | null;
  runError: string;
  latencyMs: number | null;
  /** The output so far of a streamed run (the deltas received). */
  partial: string;
  /** Milliseconds from Run to the first output text. */
  firstTextMs: number | null;
  /** The run was stopped by the user before it finished. */
  stopped: boolean;
}

// The streamed run of each window (by key), to stop it: aborting closes the connection, which
// cancels the run on the server (the model call with it).
const runs = new Map<number, AbortController>();

let nextKey = 1;
const newWindow = (draft: Draft, version: number | null = null): Window => ({
  key: nextKey++,
  draft,
  version,
  violations: [],
  error: "",
  notice: "",
  running: false,
  result: null,
  runError: "",
  latencyMs: null,
  partial: "",
  firstTextMs: null,
  stopped: false,
});

/** The violations at `path` (a field of the version: `messages[1].template`) or under it. */
function at(violations: FieldViolation[], path: string): string[] {
  return violations
    .filter((v) => v.field === path || v.field.startsWith(`${path}.`) || v.field.startsWith(`${path}[`))
    .map((v) => v.description);
}

/** The violations no part of the window shows itself. */
const SHOWN = [/^messages\[\d+\]/, /^system_prompt/, /^output\.validation/, /^(input|output)\.variables\[\d+\]/, /^parameters/, /^model$/, /^deployment_id$/, /^integration_tools\[\d+\]/, /^tools\[\d+\]/];
const unplaced = (violations: FieldViolation[]) => violations.filter((v) => !SHOWN.some((re) => re.test(v.field)));

function FieldErrors(props: { messages: string[]; id?: string }) {
  if (props.messages.length === 0) return null;
  return (
    <ul class="field-errors" role="alert" id={props.id}>
      {props.messages.map((m) => (
        <li key={m}>{m}</li>
      ))}
    </ul>
  );
}

export function Editor(props: { projectId: string; promptId: string | null }) {
  const { projectId } = props;
  const base = `/v1/projects/${seg(projectId)}`;
  const [promptId, setPromptId] = useState(props.promptId);
  const [name, setName] = useState("");
  const [pageError, setPageError] = useState<unknown>(null);
  const [versions, setVersions] = useState<VersionInfo[]>([]);
  const [prompt, setPrompt] = useState<Prompt | null>(null);
  const [windows, setWindows] = useState<Window[]>([]);
  const [runAll, setRunAll] = useState(false);
  const deployments = useLoad(
    () => call<{ deployments?: Deployment[] }>("GET", `${base}/deployments`).then((a) => chatDeployments(a.deployments ?? [])),
    [base],
  );

  async function loadVersions(id: string) {
    const answer = await call<{ versions?: VersionInfo[] }>("GET", `${base}/prompts/${seg(id)}/versions?page_size=1000`);
    setVersions((answer.versions ?? []).sort((a, b) => b.version - a.version));
    const p = await call<{ prompt: Prompt }>("GET", `${base}/prompts/${seg(id)}`);
    setPrompt(p.prompt);
  }

  // A saved prompt opens at its default label's version; a new one with an empty draft.
  useEffect(() => {
    if (props.promptId) {
      (async () => {
        try {
          const answer = await call<{ version: Record<string, any> }>(
            "GET",
            `${base}/prompts/${seg(props.promptId!)}/versions/0`,
          );
          setWindows([newWindow(fromVersion(answer.version), answer.version.version)]);
          await loadVersions(props.promptId!);
        } catch (err) {
          setPageError(err);
        }
      })();
    }
  }, [props.promptId]);
  // A new prompt starts empty, or from a copy of an existing prompt's content (`?from=<id>`).
  useEffect(() => {
    if (props.promptId || !deployments.value || windows.length > 0) return;
    const query = new URLSearchParams(location.search);
    const from = query.get("from");
    if (!from) {
      setWindows([newWindow(emptyDraft(deployments.value[0]?.name ?? ""))]);
      return;
    }
    // `from_project`: a prompt of another project (flow 2), copied into this one.
    const source = query.get("from_project") || projectId;
    const version = query.get("version") || "0";
    call<{ version: Record<string, any> }>(
      "GET",
      `/v1/projects/${seg(source)}/prompts/${seg(from)}/versions/${seg(version)}`,
    ).then(
      (answer) => setWindows([newWindow(fromVersion(answer.version))]),
      (err) => setPageError(err),
    );
  }, [deployments.value]);

  const update = (key: number, change: Partial<Window>) =>
    setWindows((all) => all.map((w) => (w.key === key ? { ...w, ...change } : w)));

  function addWindow(from: Window) {
    setWindows((all) => [...all, newWindow(copyDraft(from.draft), from.version)]);
  }

  /** The draft's variables checked here first (every problem at once, at every level); false
   * when there are problems, shown at their fields. */
  function checked(w: Window): boolean {
    const problems = checkDraft(w.draft);
    if (problems.length === 0) return true;
    update(w.key, { violations: problems, error: "The variables have errors: see the fields marked.", notice: "" });
    return false;
  }

  async function save(w: Window, note: string, labels: string[]) {
    if (!checked(w)) return;
    update(w.key, { violations: [], error: "", notice: "" });
    try {
      let saved: Record<string, any>;
      let warnings: { field: string; message: string }[] = [];
      if (!promptId) {
        const answer = await call<{ prompt: Prompt; version: Record<string, any>; warnings?: typeof warnings }>(
          "POST",
          `${base}/prompts`,
          { name, version: toVersion(w.draft, note), labels },
        );
        saved = answer.version;
        warnings = answer.warnings ?? [];
        setPromptId(answer.prompt.id);
        // The address names the prompt now, without reloading the page's windows.
        history.replaceState(null, "", href("projects", projectId, "prompts", answer.prompt.id));
        await loadVersions(answer.prompt.id);
      } else {
        const query = labels.map((l) => `labels=${encodeURIComponent(l)}`).join("&");
        const answer = await call<{ version: Record<string, any>; warnings?: typeof warnings }>(
          "POST",
          `${base}/prompts/${seg(promptId)}/versions${query ? `?${query}` : ""}`,
          toVersion(w.draft, note),
        );
        saved = answer.version;
        warnings = answer.warnings ?? [];
        await loadVersions(promptId);
      }
      const notes = warnings.map((x) => `${x.field}: ${x.message}`).join("; ");
      update(w.key, { version: saved.version, notice: `Saved version ${saved.version}.${notes ? ` Warnings: ${notes}` : ""}` });
    } catch (err) {
      reportError(w, err);
    }
  }

  function reportError(w: Window, err: unknown) {
    if (err instanceof ApiError && err.violations.length > 0) {
      // Field paths relative to the version; a description that repeats its path loses it.
      const violations = err.violations.map((v) => ({
        field: v.field.replace(/^version\./, ""),
        description: v.description.startsWith(`${v.field}: `) ? v.description.slice(v.field.length + 2) : v.description,
      }));
      const rest = unplaced(violations);
      update(w.key, {
        violations,
        error: rest.length ? rest.map((v) => v.description).join(" ") : "The prompt has errors: see the fields marked.",
      });
    } else {
      update(w.key, { error: describe(err) });
    }
  }

  async function loadVersion(w: Window, number: number) {
    try {
      const answer = await call<{ version: Record<string, any> }>(
        "GET",
        `${base}/prompts/${seg(promptId!)}/versions/${number}`,
      );
      update(w.key, { draft: fromVersion(answer.version), version: number, violations: [], error: "", notice: "" });
    } catch (err) {
      update(w.key, { error: describe(err) });
    }
  }

  async function moveLabel(w: Window, label: string) {
    if (!promptId || w.version === null) return;
    try {
      await call("PUT", `${base}/prompts/${seg(promptId)}/labels/${seg(label)}`, { version: w.version });
      update(w.key, { notice: `Label "${label}" now points at version ${w.version}.`, error: "" });
      await loadVersions(promptId);
    } catch (err) {
      update(w.key, { error: describe(err) });
    }
  }

  async function deleteLabel(label: string) {
    if (!promptId || !confirm(`Delete the label "${label}"?`)) return;
    try {
      await call("DELETE", `${base}/prompts/${seg(promptId)}/labels/${seg(label)}`);
      setPageError(null);
      await loadVersions(promptId);
    } catch (err) {
      setPageError(err);
    }
  }

  /** Runs the window's draft, streamed: the text shows as it is written, then the run's result. */
  async function run(w: Window, variables: Record<string, unknown>) {
    if (!checked(w)) return;
    runs.get(w.key)?.abort();
    const controller = new AbortController();
    runs.set(w.key, controller);
    update(w.key, {
      running: true,
      result: null,
      runError: "",
      latencyMs: null,
      partial: "",
      firstTextMs: null,
      stopped: false,
      violations: [],
      error: "",
    });
    const started = performance.now();
    const elapsed = () => Math.round(performance.now() - started);
    let text = "";
    try {
      await stream(
        `${base}/prompts:run`,
        { version: toVersion(w.draft), variables, stream: true },
        (event) => {
          const data = event.data as { delta?: string; run?: RunResult };
          if (event.event === "run.delta") {
            if (!text) update(w.key, { firstTextMs: elapsed() });
            text += data.delta ?? "";
            update(w.key, { partial: text });
          } else if (event.event === "run.completed" && data.run) {
            update(w.key, { running: false, result: data.run, latencyMs: elapsed() });
          }
        },
        controller.signal,
      );
      update(w.key, { running: false });
    } catch (err) {
      if (controller.signal.aborted) {
        update(w.key, { running: false, stopped: true });
        return;
      }
      update(w.key, { running: false, runError: describe(err) });
      if (err instanceof ApiError && err.violations.some((v) => v.field.startsWith("version."))) reportError(w, err);
    } finally {
      if (runs.get(w.key) === controller) runs.delete(w.key);
    }
  }

  /** Asks the window's deployment to turn a rule into a constraint document (not stored). */
  async function generate(w: Window, rule: string): Promise<unknown> {
    const answer = await call<{ validation: unknown }>("POST", `${base}/prompts/${seg(promptId!)}:generateValidation`, {
      rule,
      model: w.draft.model,
      version: String(w.version ?? ""),
    });
    return answer.validation;
  }

  // The inputs of every window, each name once (the first window's declaration wins).
  const allInputs: Variable[] = [];
  for (const w of windows) {
    for (const v of runInputs(w.draft)) if (!allInputs.some((x) => x.name === v.name)) allInputs.push(v);
  }
  const pick = (values: Record<string, unknown>, w: Window) =>
    Object.fromEntries(runInputs(w.draft).map((v) => [v.name, values[v.name]]));

  return (
    <main class="editor">
      <p class="crumbs">
        <Link href={href()}>Projects</Link> / <Link href={href("projects", projectId, "prompts")}>Prompts</Link> /{" "}
        {prompt?.name ?? "New prompt"}
      </p>
      <div class="row">
        {promptId ? (
          <h1>{prompt?.name ?? "Prompt"}</h1>
        ) : (
          <label class="prompt-name">
            Prompt name
            <input required value={name} onInput={(e) => setName(e.currentTarget.value)} placeholder="support-reply" />
          </label>
        )}
        {prompt && (
          <p class="muted labels" aria-label="Labels">
            {(prompt.labels ?? []).map((l) => (
              <span key={l.name} class="label">
                {l.name} → v{l.version}
                {l.name !== "latest" && (
                  <button type="button" class="link" aria-label={`Delete label ${l.name}`} onClick={() => deleteLabel(l.name)}>
                    ×
                  </button>
                )}
              </span>
            ))}
          </p>
        )}
        <button type="button" class="primary" onClick={() => setRunAll(true)} disabled={windows.length === 0}>
          Run all windows
        </button>
      </div>
      <ErrorBox error={pageError || deployments.error} />
      {promptId && prompt && versions.length > 0 && (
        <History
          base={base}
          promptId={promptId}
          versions={versions.map((v) => v.version)}
          revision={`${(prompt.labels ?? []).map((l) => `${l.name}:${l.version}`).join(",")}|${versions.length}`}
        />
      )}
      {runAll && (
        <div class="run-all">
          <RunForm
            inputs={allInputs}
            onCancel={() => setRunAll(false)}
            onSubmit={(values) => {
              setRunAll(false);
              for (const w of windows) run(w, pick(values, w));
            }}
          />
        </div>
      )}
      <div class="windows" aria-label="Compare windows">
        {windows.map((w, index) => (
          <PromptWindow
            key={w.key}
            index={index}
            window={w}
            deployments={deployments.value ?? []}
            versions={versions}
            saved={promptId !== null}
            onChange={(draft) => update(w.key, { draft })}
            onSave={(note, labels) => save(w, note, labels)}
            onLoadVersion={(n) => loadVersion(w, n)}
            onMoveLabel={(label) => moveLabel(w, label)}
            onRun={(values) => run(w, values)}
            onGenerate={(rule) => generate(w, rule)}
            onClose={windows.length > 1 ? () => setWindows((all) => all.filter((x) => x.key !== w.key)) : undefined}
          />
        ))}
        <button
          type="button"
          class="add-window"
          aria-label="Add a compare window"
          title="Add a compare window (a copy of the last one)"
          onClick={() => windows.length && addWindow(windows[windows.length - 1])}
        >
          +
        </button>
      </div>
      {promptId && prompt && windows.length > 0 && (
        <DeployPanel
          target={{ projectId, promptId }}
          defaultName={prompt.name}
          versions={versions.map((v) => v.version)}
          labels={[...new Set(["latest", ...(prompt.labels ?? []).map((l) => l.name)])]}
          inputs={runInputs(windows[0].draft)}
        />
      )}
    </main>
  );
}

function PromptWindow(props: {
  index: number;
  window: Window;
  deployments: Deployment[];
  versions: VersionInfo[];
  saved: boolean;
  onChange: (draft: Draft) => void;
  onSave: (note: string, labels: string[]) => void;
  onLoadVersion: (version: number) => void;
  onMoveLabel: (label: string) => void;
  onRun: (values: Record<string, unknown>) => void;
  onGenerate: (rule: string) => Promise<unknown>;
  onClose?: () => void;
}) {
  const w = props.window;
  const d = w.draft;
  const n = props.index + 1;
  const id = (part: string) => `w${w.key}-${part}`;
  const [note, setNote] = useState("");
  const [label, setLabel] = useState("production");
  const [running, setRunning] = useState(false);
  const set = (change: Partial<Draft>) => props.onChange({ ...d, ...change });
  const setParam = (key: keyof Parameters, value: string) => set({ parameters: { ...d.parameters, [key]: value } });
  const setMessage = (i: number, change: Partial<Message>) =>
    set({ messages: d.messages.map((m, j) => (j === i ? { ...m, ...change } : m)) });

  return (
    <section class="window" aria-label={`Window ${n}`} data-testid={`window-${n}`}>
      <header class="row">
        <h2>Window {n}</h2>
        <span class="muted">{w.version ? `from version ${w.version}` : "unsaved"}</span>
        {props.onClose && (
          <button type="button" aria-label={`Close window ${n}`} onClick={props.onClose}>
            ×
          </button>
        )}
      </header>

      {props.saved && props.versions.length > 0 && (
        <label>
          Version
          <select
            aria-label="Version"
            value={w.version ?? ""}
            onChange={(e) => e.currentTarget.value && props.onLoadVersion(Number(e.currentTarget.value))}
          >
            {w.version === null && <option value="">(unsaved)</option>}
            {props.versions.map((v) => (
              <option key={v.version} value={v.version}>
                v{v.version}
                {v.labels?.length ? ` [${v.labels.join(", ")}]` : ""}
                {v.note ? ` — ${v.note}` : ""}
              </option>
            ))}
          </select>
        </label>
      )}

      <label>
        Deployment
        <select value={d.model} onChange={(e) => set({ model: e.currentTarget.value })}>
          {!props.deployments.some((x) => x.name === d.model) && <option value={d.model}>{d.model || "(none)"}</option>}
          {props.deployments.map((x) => (
            <option key={x.id} value={x.name}>
              {x.name}
            </option>
          ))}
        </select>
      </label>
      <FieldErrors messages={[...at(w.violations, "model"), ...at(w.violations, "deployment_id")]} />

      <details class="parameters">
        <summary>Model parameters</summary>
        <div class="grid">
          {(
            [
              ["temperature", "Temperature", "0.01", "0", "2"],
              ["max_tokens", "Max tokens", "1", "1", undefined],
              ["top_p", "Top p", "0.01", "0", "1"],
              ["frequency_penalty", "Frequency penalty", "0.1", "-2", "2"],
              ["presence_penalty", "Presence penalty", "0.1", "-2", "2"],
              ["seed", "Seed", "1", undefined, undefined],
            ] as [keyof Parameters, string, string, string | undefined, string | undefined][]
          ).map(([key, text, step, min, max]) => (
            <label key={key}>
              {text}
              <input type="number" step={step} min={min} max={max} value={d.parameters[key]} onInput={(e) => setParam(key, e.currentTarget.value)} />
            </label>
          ))}
          <label class="wide">
            Stop sequences (one a line)
            <textarea rows={2} value={d.parameters.stop} onInput={(e) => setParam("stop", e.currentTarget.value)} />
          </label>
        </div>
        <FieldErrors messages={at(w.violations, "parameters")} />
      </details>

      <label>
        System prompt
        <textarea
          rows={4}
          class="template"
          value={d.systemPrompt}
          onInput={(e) => set({ systemPrompt: e.currentTarget.value })}
          aria-invalid={at(w.violations, "system_prompt").length > 0}
        />
      </label>
      <FieldErrors messages={at(w.violations, "system_prompt")} />

      <fieldset>
        <legend>Messages</legend>
        {d.messages.map((m, i) => {
          const errors = at(w.violations, `messages[${i}]`);
          return (
            <div class="message" key={i} data-testid={`message-${i}`}>
              <div class="row">
                <label>
                  Role of message {i + 1}
                  <select value={m.role} onChange={(e) => setMessage(i, { role: e.currentTarget.value })}>
                    {ROLES.map((r) => (
                      <option key={r} value={r}>
                        {r}
                      </option>
                    ))}
                  </select>
                </label>
                <button
                  type="button"
                  aria-label={`Remove message ${i + 1}`}
                  onClick={() => set({ messages: d.messages.filter((_, j) => j !== i) })}
                >
                  Remove
                </button>
              </div>
              <label>
                Template of message {i + 1}
                <textarea
                  rows={3}
                  class="template"
                  value={m.template}
                  aria-invalid={errors.length > 0}
                  aria-describedby={errors.length ? id(`m${i}-errors`) : undefined}
                  onInput={(e) => setMessage(i, { template: e.currentTarget.value })}
                />
              </label>
              <FieldErrors messages={errors} id={id(`m${i}-errors`)} />
            </div>
          );
        })}
        <button type="button" onClick={() => set({ messages: [...d.messages, { role: "user", template: "" }] })}>
          Add message
        </button>
      </fieldset>

      <fieldset>
        <legend>Input</legend>
        <div class="row" role="radiogroup" aria-label="Input kind">
          <label class="choice">
            <input type="radio" name={id("mode")} checked={!d.structured} onChange={() => set({ structured: false })} />
            Unstructured (the variable <code>input</code>)
          </label>
          <label class="choice">
            <input type="radio" name={id("mode")} checked={d.structured} onChange={() => set({ structured: true })} />
            Structured
          </label>
        </div>
        {d.structured && (
          <VariablesTable
            base="input.variables"
            noun="variable"
            addLabel="Add variable"
            variables={d.variables}
            violations={w.violations}
            onChange={(variables) => set({ variables })}
          />
        )}
      </fieldset>

      <fieldset>
        <legend>Output</legend>
        <div class="row" role="radiogroup" aria-label="Output kind">
          <label class="choice">
            <input type="radio" name={id("out")} checked={!d.outputStructured} onChange={() => set({ outputStructured: false })} />
            Text
          </label>
          <label class="choice">
            <input type="radio" name={id("out")} checked={d.outputStructured} onChange={() => set({ outputStructured: true })} />
            Structured (JSON fields)
          </label>
        </div>
        {d.outputStructured && (
          <VariablesTable
            base="output.variables"
            noun="output field"
            addLabel="Add output field"
            variables={d.outputVariables}
            violations={w.violations}
            onChange={(outputVariables) => set({ outputVariables })}
          />
        )}
        <CustomValidation
          draft={d}
          canGenerate={props.saved && w.version !== null}
          generate={(rule) => props.onGenerate(rule)}
          errors={at(w.violations, "output.validation")}
          onChange={set}
        />
      </fieldset>

      <Tools draft={d} idPrefix={id("tools")} errorsAt={(path) => at(w.violations, path)} onChange={set} />

      <label class="choice">
        <input type="checkbox" role="switch" checked={d.allowMultipleCalls} onChange={(e) => set({ allowMultipleCalls: e.currentTarget.checked })} />
        Allow multiple calls
      </label>

      <div class="actions">
        <label>
          Version note
          <input value={note} maxLength={2000} onInput={(e) => setNote(e.currentTarget.value)} />
        </label>
        <div class="row">
          <button type="button" class="primary" onClick={() => props.onSave(note, [])}>
            Save
          </button>
          <button type="button" onClick={() => setRunning(true)}>
            Run
          </button>
        </div>
        {props.saved && w.version !== null && (
          <div class="row">
            <label>
              Label
              <input value={label} onInput={(e) => setLabel(e.currentTarget.value)} />
            </label>
            <button type="button" onClick={() => props.onMoveLabel(label)}>
              Point label at v{w.version}
            </button>
          </div>
        )}
      </div>
      {w.notice && (
        <p class="notice" role="status">
          {w.notice}
        </p>
      )}
      {w.error && (
        <p class="error" role="alert">
          {w.error}
        </p>
      )}

      {running && (
        <RunForm
          inputs={runInputs(d)}
          onCancel={() => setRunning(false)}
          onSubmit={(values) => {
            setRunning(false);
            props.onRun(values);
          }}
        />
      )}
      <RunOutput window={w} onStop={() => runs.get(w.key)?.abort()} />
    </section>
  );
}

/** The output's custom validation: a rule in words, *Generate* (the generate-validation API
 * writes a constraint document for the user to accept), and the document itself. */
function CustomValidation(props: {
  draft: Draft;
  canGenerate: boolean;
  generate: (rule: string) => Promise<unknown>;
  errors: string[];
  onChange: (change: Partial<Draft>) => void;
}) {
  const d = props.draft;
  const [proposed, setProposed] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  async function generate() {
    setBusy(true);
    setError("");
    setProposed(null);
    try {
      setProposed(await props.generate(d.outputRule));
    } catch (err) {
      setError(describe(err));
    } finally {
      setBusy(false);
    }
  }
  return (
    <details class="validation" open={Boolean(d.outputRule || d.outputValidation)}>
      <summary>Custom validation</summary>
      <label>
        Rule in words
        <textarea rows={2} maxLength={2000} value={d.outputRule} onInput={(e) => props.onChange({ outputRule: e.currentTarget.value })} />
      </label>
      <div class="row">
        <button type="button" onClick={generate} disabled={!props.canGenerate || !d.outputRule.trim() || busy}>
          Generate
        </button>
        {!props.canGenerate && <span class="muted">Save the prompt first: the rule is about a saved version.</span>}
        {busy && (
          <span class="muted" role="status">
            Generating…
          </span>
        )}
      </div>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {proposed !== null && (
        <div class="proposed" data-testid="proposed-validation">
          <p>Generated constraints: accept them to save with the next version.</p>
          <pre>{JSON.stringify(proposed, null, 2)}</pre>
          <div class="row">
            <button
              type="button"
              class="primary"
              onClick={() => {
                props.onChange({ outputValidation: JSON.stringify(proposed, null, 2) });
                setProposed(null);
              }}
            >
              Accept
            </button>
            <button type="button" onClick={() => setProposed(null)}>
              Discard
            </button>
          </div>
        </div>
      )}
      <label>
        Constraint document (JSON)
        <textarea
          rows={4}
          class="template"
          value={d.outputValidation}
          aria-invalid={props.errors.length > 0}
          onInput={(e) => props.onChange({ outputValidation: e.currentTarget.value })}
        />
      </label>
      <FieldErrors messages={props.errors} />
    </details>
  );
}

function VariablesTable(props: {
  /** Where the API's field paths put these variables: `input.variables`, `output.variables`,
   * or an object's `….fields`. */
  base: string;
  /** What the labels call one ("variable", "output field", "field 2 of variable 1"). */
  noun: string;
  addLabel: string;
  /** How deep these variables sit (1: declared; an object's fields or an array's items: one
   * more); containers stop at MAX_DEPTH, as the API does. */
  depth?: number;
  variables: Variable[];
  violations: FieldViolation[];
  onChange: (variables: Variable[]) => void;
}) {
  const { variables, base, noun } = props;
  const depth = props.depth ?? 1;
  const types = typesAt(depth);
  const onSet = (i: number, change: Partial<Variable>) =>
    props.onChange(variables.map((v, j) => (j === i ? { ...v, ...change } : v)));
  const move = (i: number, by: number) => {
    const copy = [...variables];
    const [item] = copy.splice(i, 1);
    copy.splice(i + by, 0, item);
    props.onChange(copy);
  };
  return (
    <div class="variables">
      <table>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Type</th>
            <th scope="col">Options (enum) / items (array)</th>
            <th scope="col">Default</th>
            <th scope="col">Description</th>
            <th scope="col">Validation</th>
            <th scope="col">
              <span class="sr-only">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {variables.map((v, i) => {
            const item = v.item ?? newVariable("item");
            // Errors of the row itself; those of its fields' rows or its items' editor are shown there.
            const errors = own(props.violations, `${base}[${i}]`, v.type === "array" && NESTING.includes(item.type));
            return (
              <Fragment key={i}>
                <tr data-testid={`variable-${i}`}>
                  <td>
                    <input aria-label={`Name of ${noun} ${i + 1}`} value={v.name} onInput={(e) => onSet(i, { name: e.currentTarget.value })} />
                  </td>
                  <td>
                    <select
                      aria-label={`Type of ${noun} ${i + 1}`}
                      value={v.type}
                      onChange={(e) => onSet(i, { type: e.currentTarget.value as VarType })}
                    >
                      {types.map((t) => (
                        <option key={t} value={t}>
                          {t}
                        </option>
                      ))}
                    </select>
                  </td>
                  <td>
                    {v.type === "array" ? (
                      <select
                        aria-label={`Item type of ${noun} ${i + 1}`}
                        value={item.type}
                        onChange={(e) => onSet(i, { item: { ...item, type: e.currentTarget.value as VarType } })}
                      >
                        {typesAt(depth + 1).map((t) => (
                          <option key={t} value={t}>
                            {t}
                          </option>
                        ))}
                      </select>
                    ) : (
                      <input
                        aria-label={`Options of ${noun} ${i + 1}`}
                        disabled={v.type !== "enum"}
                        placeholder={v.type === "enum" ? "a, b, c" : ""}
                        value={v.options}
                        onInput={(e) => onSet(i, { options: e.currentTarget.value })}
                      />
                    )}
                  </td>
                  <td>
                    <input aria-label={`Default of ${noun} ${i + 1}`} value={v.default} onInput={(e) => onSet(i, { default: e.currentTarget.value })} />
                  </td>
                  <td>
                    <input
                      aria-label={`Description of ${noun} ${i + 1}`}
                      value={v.description}
                      onInput={(e) => onSet(i, { description: e.currentTarget.value })}
                    />
                  </td>
                  <td>
                    <select
                      aria-label={`Validation of ${noun} ${i + 1}`}
                      value={v.basic ? "basic" : "none"}
                      disabled={CONSTRAINTS[v.type].length === 0}
                      onChange={(e) => onSet(i, { basic: e.currentTarget.value === "basic" })}
                    >
                      <option value="none">none</option>
                      <option value="basic">basic</option>
                    </select>
                  </td>
                  <td class="nowrap">
                    <button type="button" aria-label={`Move ${noun} ${i + 1} up`} disabled={i === 0} onClick={() => move(i, -1)}>
                      ↑
                    </button>
                    <button
                      type="button"
                      aria-label={`Move ${noun} ${i + 1} down`}
                      disabled={i === variables.length - 1}
                      onClick={() => move(i, 1)}
                    >
                      ↓
                    </button>
                    <button type="button" aria-label={`Remove ${noun} ${i + 1}`} onClick={() => props.onChange(variables.filter((_, j) => j !== i))}>
                      ×
                    </button>
                  </td>
                </tr>
                {v.basic && CONSTRAINTS[v.type].length > 0 && (
                  <tr class="constraints">
                    <td colSpan={7}>
                      <div class="row">
                        {CONSTRAINTS[v.type].map(([key, text]) => (
                          <label key={key}>
                            {text}
                            <input
                              aria-label={`${text} of ${noun} ${i + 1}`}
                              type={key === "pattern" ? "text" : "number"}
                              step="any"
                              value={v.constraints[key] ?? ""}
                              onInput={(e) => onSet(i, { constraints: { ...v.constraints, [key]: e.currentTarget.value } })}
                            />
                          </label>
                        ))}
                      </div>
                    </td>
                  </tr>
                )}
                {v.type === "array" && NESTING.includes(item.type) && (
                  <tr class="fields">
                    <td colSpan={7}>
                      <ItemEditor
                        base={`${base}[${i}].items`}
                        noun={`the items of ${noun} ${i + 1}`}
                        depth={depth + 1}
                        item={item}
                        violations={props.violations}
                        onChange={(next) => onSet(i, { item: next })}
                      />
                    </td>
                  </tr>
                )}
                {v.type === "object" && (
                  <tr class="fields">
                    <td colSpan={7}>
                      <VariablesTable
                        depth={depth + 1}
                        base={`${base}[${i}].fields`}
                        noun={`field of ${noun} ${i + 1}`}
                        addLabel={`Add a field to ${noun} ${i + 1}`}
                        variables={v.fields ?? []}
                        violations={props.violations}
                        onChange={(fields) => onSet(i, { fields })}
                      />
                    </td>
                  </tr>
                )}
                {errors.length > 0 && (
                  <tr>
                    <td colSpan={7}>
                      <FieldErrors messages={errors} />
                    </td>
                  </tr>
                )}
              </Fragment>
            );
          })}
        </tbody>
      </table>
      <button
        type="button"
        onClick={() => props.onChange([...variables, newVariable(`${depth > 1 ? "field" : noun === "variable" ? "var" : "field"}${variables.length + 1}`)])}
      >
        {props.addLabel}
      </button>
    </div>
  );
}

function RunOutput(props: { window: Window; onStop: () => void }) {
  const w = props.window;
  if (w.running)
    return (
      <div class="output" aria-label="Output" aria-busy="true" data-testid="run-streaming">
        <div class="row">
          <p class="muted" role="status">
            Running…
          </p>
          <button type="button" onClick={props.onStop}>
            Stop
          </button>
        </div>
        <pre class="text" data-testid="run-partial">
          {w.partial}
        </pre>
      </div>
    );
  if (w.stopped)
    return (
      <div class="output" aria-label="Output" data-testid="run-stopped">
        <p class="notice" role="status">
          Stopped: the run was cancelled.
        </p>
        <pre class="text">{w.partial}</pre>
      </div>
    );
  if (w.runError)
    return (
      <div class="output" role="alert" data-testid="run-error">
        <p class="error">{w.runError}</p>
      </div>
    );
  if (!w.result) return null;
  const r = w.result;
  const calls = (r.response?.output ?? []).filter((item) => item.type === "function_call");
  return (
    <div class="output" aria-label="Output" data-testid="run-output">
      <h3>Output</h3>
      <pre class="text">{r.text}</pre>
      {r.output !== undefined && r.output !== null && (
        <>
          <h4>Parsed</h4>
          <pre>{JSON.stringify(r.output, null, 2)}</pre>
        </>
      )}
      {calls.length > 0 && (
        <>
          <h4>Tool calls</h4>
          <ul class="tool-calls" data-testid="tool-calls">
            {calls.map((c) => (
              <li key={c.call_id}>
                <code>{c.name}</code>(<code>{c.arguments}</code>)
              </li>
            ))}
          </ul>
        </>
      )}
      {(r.model_calls ?? 1) > 1 && (
        <p class="notice" data-testid="attempts">
          The output was checked and asked again: {r.model_calls} model calls, the last one valid.
        </p>
      )}
      <p class="muted">
        {r.usage?.prompt_tokens ?? 0} prompt + {r.usage?.completion_tokens ?? 0} completion tokens · {r.model_calls ?? 1} model
        call{(r.model_calls ?? 1) === 1 ? "" : "s"} · {w.latencyMs} ms
        {w.firstTextMs !== null && <> (first text after {w.firstTextMs} ms)</>}
        {r.cost_usd && (
          <>
            {" "}
            · <span data-testid="run-cost">{usd(r.cost_usd)}</span>
          </>
        )}
      </p>
    </div>
  );
}

/** The item types an array's items editor is shown for (a scalar item is its type alone). */
const NESTING: VarType[] = ["object", "array", "enum"];

/** The messages of the violations at `path` that its own row shows: not those of its fields'
 * rows (`path.fields[i]…`), nor those of its items' editor (`path.items…`) when `itemsShown`. */
function own(violations: FieldViolation[], path: string, itemsShown: boolean): string[] {
  return violations
    .filter((v) => v.field === path || v.field.startsWith(`${path}.`))
    .filter((v) => !v.field.startsWith(`${path}.fields[`) && !(itemsShown && v.field.startsWith(`${path}.items`)))
    .map((v) => v.description);
}

/** An array's items when they hold more than a scalar: an object's fields, an enum's options, or
 * an array's own items (nested in turn). */
function ItemEditor(props: {
  base: string;
  noun: string;
  depth: number;
  item: Variable;
  violations: FieldViolation[];
  onChange: (item: Variable) => void;
}) {
  const { item, base, noun, depth } = props;
  const inner = item.item ?? newVariable("item");
  const mine = own(props.violations, base, item.type === "array" && NESTING.includes(inner.type));
  return (
    <div class="item-editor" role="group" aria-label={`Items of ${noun.replace(/^the items of /, "")}`}>
      {item.type === "enum" && (
        <label>
          Options of {noun}
          <input placeholder="a, b, c" value={item.options} onInput={(e) => props.onChange({ ...item, options: e.currentTarget.value })} />
        </label>
      )}
      {item.type === "object" && (
        <>
          <p class="muted">Fields of {noun}</p>
          <VariablesTable
            depth={depth + 1}
            base={`${base}.fields`}
            noun={`field of ${noun}`}
            addLabel={`Add a field to ${noun}`}
            variables={item.fields ?? []}
            violations={props.violations}
            onChange={(fields) => props.onChange({ ...item, fields })}
          />
        </>
      )}
      {item.type === "array" && (
        <>
          <label>
            Item type of {noun}
            <select value={inner.type} onChange={(e) => props.onChange({ ...item, item: { ...inner, type: e.currentTarget.value as VarType } })}>
              {typesAt(depth + 1).map((t) => (
                <option key={t} value={t}>
                  {t}
                </option>
              ))}
            </select>
          </label>
          {NESTING.includes(inner.type) && (
            <ItemEditor
              base={`${base}.items`}
              noun={`the items of ${noun}`}
              depth={depth + 1}
              item={inner}
              violations={props.violations}
              onChange={(next) => props.onChange({ ...item, item: next })}
            />
          )}
        </>
      )}
      <FieldErrors messages={mine} />
    </div>
  );
}

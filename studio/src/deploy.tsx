// Deploying a prompt: what it runs (a pinned version or a label it follows), the deployment's
// settings (concurrency, autoscale, caching, rate limits), then how to call it (curl and Python
// with the deployment's name; the API key stays a placeholder: no secret is ever put on the page).
import { useState } from "preact/hooks";
import { call, type Deployment, seg } from "./api";
import type { Variable } from "./draft";
import { ErrorBox } from "./ui";

export interface DeployTarget {
  /** The project the deployment is created in. */
  projectId: string;
  promptId: string;
  /** The prompt's project when it is not `projectId` (flow 2: the version is then pinned). */
  sourceProjectId?: string;
}

const example = (v: Variable): string => {
  if (v.default !== "") return v.default;
  if (v.type === "boolean") return "true";
  if (v.type === "integer" || v.type === "number") return "1";
  if (v.type === "enum") return v.options.split(",")[0]?.trim() ?? "";
  return `your ${v.name}`;
};

/** The variables of a call, as OpenAI's prompt reference takes them: strings (a non-string type
 * is read as JSON). */
const variablesOf = (inputs: Variable[]) => Object.fromEntries(inputs.map((v) => [v.name, example(v)]));

export function snippets(name: string, inputs: Variable[]): { curl: string; python: string } {
  const base = `${location.origin}/v1`;
  const prompt = { id: name, variables: variablesOf(inputs) };
  const body = JSON.stringify({ prompt }, null, 2).replace(/'/g, "'\\''");
  const curl = [
    `curl ${base}/responses \\`,
    `  -H "Authorization: Bearer $BUD_API_KEY" \\`,
    `  -H "Content-Type: application/json" \\`,
    `  -d '${body}'`,
  ].join("\n");
  const python = [
    "import os",
    "",
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url="${base}", api_key=os.environ["BUD_API_KEY"])`,
    `response = client.responses.create(prompt=${JSON.stringify(prompt)})`,
    "print(response.output_text)",
  ].join("\n");
  return { curl, python };
}

export function DeployPanel(props: {
  target: DeployTarget;
  defaultName: string;
  versions: number[];
  labels: string[];
  inputs: Variable[];
}) {
  const { target } = props;
  const pinnedOnly = Boolean(target.sourceProjectId);
  const [name, setName] = useState(props.defaultName);
  const [runs, setRuns] = useState(
    pinnedOnly || props.labels.length === 0 ? `v${props.versions[0] ?? 1}` : `label:${props.labels[0]}`,
  );
  const [minConcurrency, setMin] = useState("0");
  const [maxConcurrency, setMax] = useState("0");
  const [autoscale, setAutoscale] = useState(false);
  const [caching, setCaching] = useState(false);
  const [limited, setLimited] = useState(false);
  const [rpm, setRpm] = useState("60");
  const [tpm, setTpm] = useState("0");
  const [error, setError] = useState<unknown>(null);
  const [deployed, setDeployed] = useState<Deployment | null>(null);
  const [busy, setBusy] = useState(false);

  async function deploy(event: Event) {
    event.preventDefault();
    setError(null);
    setBusy(true);
    const prompt: Record<string, unknown> = { prompt_id: target.promptId };
    if (runs.startsWith("label:")) prompt.label = runs.slice("label:".length);
    else prompt.version = Number(runs.slice(1));
    if (target.sourceProjectId) prompt.project_id = target.sourceProjectId;
    try {
      const answer = await call<{ deployment: Deployment }>("POST", `/v1/projects/${seg(target.projectId)}/deployments`, {
        name,
        prompt,
        scaling: { min_concurrency: Number(minConcurrency), max_concurrency: Number(maxConcurrency), autoscale },
        caching,
        rate_limits: limited ? { requests_per_minute: Number(rpm), tokens_per_minute: Number(tpm) } : {},
      });
      setDeployed(answer.deployment);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  const code = deployed ? snippets(deployed.name, props.inputs) : null;
  return (
    <section class="deploy" aria-labelledby="deploy-title">
      <h2 id="deploy-title">Deploy</h2>
      <form onSubmit={deploy} aria-label="Deploy the prompt">
        <div class="grid">
          <label>
            Deployment name
            <input required maxLength={128} value={name} onInput={(e) => setName(e.currentTarget.value)} />
          </label>
          <label>
            Runs
            <select aria-label="Runs" value={runs} onChange={(e) => setRuns(e.currentTarget.value)}>
              {!pinnedOnly &&
                props.labels.map((l) => (
                  <option key={l} value={`label:${l}`}>
                    the version labelled {l}
                  </option>
                ))}
              {props.versions.map((v) => (
                <option key={v} value={`v${v}`}>
                  version {v} (pinned)
                </option>
              ))}
            </select>
          </label>
          <label>
            Minimum concurrency
            <input type="number" min="0" step="1" value={minConcurrency} onInput={(e) => setMin(e.currentTarget.value)} />
          </label>
          <label>
            Maximum concurrency (0: no limit)
            <input type="number" min="0" step="1" value={maxConcurrency} onInput={(e) => setMax(e.currentTarget.value)} />
          </label>
        </div>
        <div class="row">
          <label class="choice">
            <input type="checkbox" role="switch" checked={autoscale} onChange={(e) => setAutoscale(e.currentTarget.checked)} />
            Autoscale
          </label>
          <label class="choice">
            <input type="checkbox" role="switch" checked={caching} onChange={(e) => setCaching(e.currentTarget.checked)} />
            Caching
          </label>
          <label class="choice">
            <input type="checkbox" role="switch" checked={limited} onChange={(e) => setLimited(e.currentTarget.checked)} />
            Rate limiting
          </label>
        </div>
        {limited && (
          <div class="grid">
            <label>
              Requests per minute
              <input type="number" min="0" step="1" value={rpm} onInput={(e) => setRpm(e.currentTarget.value)} />
            </label>
            <label>
              Tokens per minute (0: no limit)
              <input type="number" min="0" step="1" value={tpm} onInput={(e) => setTpm(e.currentTarget.value)} />
            </label>
          </div>
        )}
        <button type="submit" class="primary" disabled={busy}>
          Deploy
        </button>
      </form>
      <ErrorBox error={error} />
      {deployed && code && (
        <div class="snippets" role="status" data-testid="deployed">
          <p class="notice">
            Deployed as <strong>{deployed.name}</strong>. Call it with a project API key (in <code>BUD_API_KEY</code>):
          </p>
          <h3>curl</h3>
          <pre data-testid="curl-snippet">{code.curl}</pre>
          <h3>Python</h3>
          <pre data-testid="python-snippet">{code.python}</pre>
        </div>
      )}
    </section>
  );
}

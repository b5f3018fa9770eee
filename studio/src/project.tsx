// A project: its deployments, API keys (create — the secret shown once —, rotate, revoke),
// prompts and usage.
import { useState } from "preact/hooks";
import { type ApiKey, call, type Deployment, type Project, type Prompt, seg } from "./api";
import { href } from "./router";
import { ErrorBox, Link, useLoad } from "./ui";
import { Usage } from "./usage";

type Tab = "deployments" | "keys" | "prompts" | "usage";
const TABS: [Tab, string][] = [
  ["deployments", "Deployments"],
  ["keys", "API keys"],
  ["prompts", "Prompts"],
  ["usage", "Usage"],
];

export function ProjectPage(props: { projectId: string; tab: Tab }) {
  const { projectId, tab } = props;
  const project = useLoad(() => call<{ project: Project }>("GET", `/v1/projects/${seg(projectId)}`), [projectId]);
  return (
    <main>
      <p class="crumbs">
        <Link href={href()}>Projects</Link> / {project.value?.project.name ?? projectId}
      </p>
      <h1>{project.value?.project.name ?? "Project"}</h1>
      <ErrorBox error={project.error} />
      <nav class="tabs" aria-label="Project sections">
        {TABS.map(([name, label]) => (
          <Link key={name} href={href("projects", projectId, name)} class={name === tab ? "current" : ""}>
            {label}
          </Link>
        ))}
      </nav>
      {tab === "deployments" && <Deployments projectId={projectId} />}
      {tab === "keys" && <ApiKeys projectId={projectId} />}
      {tab === "prompts" && <Prompts projectId={projectId} />}
      {tab === "usage" && <Usage projectId={projectId} />}
    </main>
  );
}

const STATUS = (s?: string) => (s ?? "DEPLOYMENT_STATUS_UNSPECIFIED").replace("DEPLOYMENT_STATUS_", "").toLowerCase();

/** Flow 1's start: *Create deployment* → a model (its source) or a prompt (a new one, or a new
 * one starting from an existing prompt's content). */
function CreateDeployment(props: { projectId: string; onCreated: () => void }) {
  const [kind, setKind] = useState<"model" | "prompt">("model");
  const [name, setName] = useState("");
  const [source, setSource] = useState("hugging_face_id");
  const [value, setValue] = useState("");
  const [from, setFrom] = useState("");
  const [error, setError] = useState<unknown>(null);
  const prompts = useLoad(
    () => call<{ prompts?: Prompt[] }>("GET", `/v1/projects/${seg(props.projectId)}/prompts`),
    [props.projectId],
  );

  async function create(event: Event) {
    event.preventDefault();
    setError(null);
    try {
      await call("POST", `/v1/projects/${seg(props.projectId)}/deployments`, { name, model: { [source]: value } });
      setName("");
      setValue("");
      props.onCreated();
    } catch (err) {
      setError(err);
    }
  }

  const promptHref = href("projects", props.projectId, "prompts", "new") + (from ? `?from=${encodeURIComponent(from)}` : "");
  return (
    <div class="create-deployment">
      <div class="row" role="radiogroup" aria-label="What to deploy">
        <label class="choice">
          <input type="radio" name="create-kind" checked={kind === "model"} onChange={() => setKind("model")} />
          A model
        </label>
        <label class="choice">
          <input type="radio" name="create-kind" checked={kind === "prompt"} onChange={() => setKind("prompt")} />
          A prompt
        </label>
      </div>
      {kind === "model" ? (
        <form class="inline" onSubmit={create} aria-label="Create a model deployment">
          <label>
            Deployment name
            <input required maxLength={128} value={name} onInput={(e) => setName(e.currentTarget.value)} />
          </label>
          <label>
            Source
            <select aria-label="Source" value={source} onChange={(e) => setSource(e.currentTarget.value)}>
              <option value="hugging_face_id">Hugging Face id</option>
              <option value="registry_model_id">Registry model id</option>
              <option value="builtin">Built-in model</option>
            </select>
          </label>
          <label>
            Model
            <input required value={value} onInput={(e) => setValue(e.currentTarget.value)} placeholder="Qwen/Qwen2.5-0.5B-Instruct" />
          </label>
          <button type="submit" class="primary">
            Create
          </button>
        </form>
      ) : (
        <div class="row">
          <label>
            Start from
            <select aria-label="Start from" value={from} onChange={(e) => setFrom(e.currentTarget.value)}>
              <option value="">a new, empty prompt</option>
              {(prompts.value?.prompts ?? []).map((p) => (
                <option key={p.id} value={p.id}>
                  a copy of {p.name}
                </option>
              ))}
            </select>
          </label>
          <Link href={promptHref} class="button">
            Write the prompt
          </Link>
        </div>
      )}
      <ErrorBox error={error || prompts.error} />
    </div>
  );
}

function Deployments(props: { projectId: string }) {
  const { value, error, reload } = useLoad(
    () => call<{ deployments?: Deployment[] }>("GET", `/v1/projects/${seg(props.projectId)}/deployments`),
    [props.projectId],
  );
  const [creating, setCreating] = useState(false);
  const rows = value?.deployments ?? [];
  return (
    <section aria-labelledby="deployments-title">
      <div class="row">
        <h2 id="deployments-title">Deployments</h2>
        <button type="button" aria-expanded={creating} onClick={() => setCreating(!creating)}>
          Create deployment
        </button>
      </div>
      {creating && <CreateDeployment projectId={props.projectId} onCreated={reload} />}
      <ErrorBox error={error} />
      {value && rows.length === 0 && <p>No deployments yet.</p>}
      {rows.length > 0 && (
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Serves</th>
              <th scope="col">Status</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((d) => (
              <tr key={d.id}>
                <td>{d.name}</td>
                <td>
                  {d.prompt
                    ? `prompt ${d.prompt.prompt_id}${d.prompt.version ? ` v${d.prompt.version}` : ` @${d.prompt.label || "default"}`}`
                    : `model ${Object.values(d.model ?? {})[0] ?? ""}${d.runner === "RUNNER_POOLING" ? " (embeddings)" : ""}`}
                </td>
                <td>
                  <span class={`status ${STATUS(d.status)}`}>{STATUS(d.status)}</span>
                  {d.status_message && <span class="muted"> {d.status_message}</span>}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** A secret shown this once, with a way to copy it. */
function SecretOnce(props: { secret: string; onClose: () => void }) {
  return (
    <div class="secret" role="status" aria-live="polite">
      <p>
        <strong>Copy this key now: it is shown only once.</strong>
      </p>
      <label>
        New API key
        <input readOnly value={props.secret} data-testid="new-secret" onFocus={(e) => e.currentTarget.select()} />
      </label>
      <button type="button" onClick={() => navigator.clipboard?.writeText(props.secret)}>
        Copy
      </button>
      <button type="button" onClick={props.onClose}>
        Done
      </button>
    </div>
  );
}

function ApiKeys(props: { projectId: string }) {
  const base = `/v1/projects/${seg(props.projectId)}/api_keys`;
  const { value, error, reload } = useLoad(() => call<{ api_keys?: ApiKey[] }>("GET", base), [base]);
  const [name, setName] = useState("");
  const [secret, setSecret] = useState<string | null>(null);
  const [actionError, setActionError] = useState<unknown>(null);

  async function act(work: () => Promise<void>) {
    setActionError(null);
    try {
      await work();
      reload();
    } catch (err) {
      setActionError(err);
    }
  }

  const create = (event: Event) => {
    event.preventDefault();
    return act(async () => {
      const answer = await call<{ secret: string }>("POST", base, { name });
      setSecret(answer.secret);
      setName("");
    });
  };
  const rotate = (key: ApiKey) =>
    act(async () => {
      if (!confirm(`Rotate the key "${key.name}"? The old secret stops working.`)) return;
      const answer = await call<{ secret: string }>("POST", `${base}/${seg(key.id)}:rotate`, {});
      setSecret(answer.secret);
    });
  const revoke = (key: ApiKey) =>
    act(async () => {
      if (!confirm(`Revoke the key "${key.name}"? Calls with it will fail.`)) return;
      await call("POST", `${base}/${seg(key.id)}:revoke`, {});
    });

  const keys = value?.api_keys ?? [];
  return (
    <section aria-labelledby="keys-title">
      <h2 id="keys-title">API keys</h2>
      <form class="inline" onSubmit={create} aria-label="Create an API key">
        <label>
          Key name
          <input required maxLength={100} value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <button type="submit">Create key</button>
      </form>
      {secret && <SecretOnce secret={secret} onClose={() => setSecret(null)} />}
      <ErrorBox error={error || actionError} />
      {keys.length > 0 && (
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Prefix</th>
              <th scope="col">State</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {keys.map((k) => {
              const revoked = k.state === "API_KEY_STATE_REVOKED";
              return (
                <tr key={k.id} data-key={k.name}>
                  <td>{k.name}</td>
                  <td>
                    <code>{k.prefix}…</code>
                  </td>
                  <td>{(k.state ?? "").replace("API_KEY_STATE_", "").toLowerCase()}</td>
                  <td>
                    {!revoked && (
                      <>
                        <button type="button" onClick={() => rotate(k)} aria-label={`Rotate ${k.name}`}>
                          Rotate
                        </button>{" "}
                        <button type="button" class="danger" onClick={() => revoke(k)} aria-label={`Revoke ${k.name}`}>
                          Revoke
                        </button>
                      </>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </section>
  );
}

function Prompts(props: { projectId: string }) {
  const { value, error } = useLoad(
    () => call<{ prompts?: Prompt[] }>("GET", `/v1/projects/${seg(props.projectId)}/prompts`),
    [props.projectId],
  );
  const prompts = value?.prompts ?? [];
  return (
    <section aria-labelledby="prompts-title">
      <h2 id="prompts-title">Prompts</h2>
      <p>
        <Link href={href("projects", props.projectId, "prompts", "new")} class="button">
          New prompt
        </Link>
      </p>
      <ErrorBox error={error} />
      {value && prompts.length === 0 && <p>No prompts yet.</p>}
      <ul class="cards">
        {prompts.map((p) => (
          <li key={p.id}>
            <Link href={href("projects", props.projectId, "prompts", p.id)}>{p.name}</Link>{" "}
            <span class="muted">v{p.latest_version}</span>
            {p.description && <p>{p.description}</p>}
          </li>
        ))}
      </ul>
    </section>
  );
}

// A saved prompt's history: where each label pointed over time (`labels:history`, newest first)
// and what differs between two versions (`versions/{a}:diff?other={b}`): the fields that changed,
// grouped as messages, parameters, variables and the rest, and a line diff of the templates.
import { useState } from "preact/hooks";
import { call, seg } from "./api";
import { describe, ErrorBox, useLoad } from "./ui";

interface LabelChange {
  label: string;
  from_version?: number;
  to_version?: number;
  user_id?: string;
  time?: string;
}

interface FieldChange {
  field: string;
  before?: unknown;
  after?: unknown;
}

interface Diff {
  changes?: FieldChange[];
  template_diff?: string;
}

/** The group a changed field is shown under. */
function groupOf(field: string): string {
  if (field.startsWith("messages") || field.startsWith("system_prompt")) return "Messages";
  if (field.startsWith("parameters")) return "Parameters";
  if (field.startsWith("input.") || field.startsWith("output.")) return "Variables";
  return "Other";
}
const GROUPS = ["Messages", "Parameters", "Variables", "Other"];

const shown = (value: unknown) => (value === undefined ? "(unset)" : typeof value === "string" ? value : JSON.stringify(value));

function move(c: LabelChange): string {
  if (!c.from_version) return `created at v${c.to_version}`;
  if (!c.to_version) return `deleted (was v${c.from_version})`;
  return `v${c.from_version} → v${c.to_version}`;
}

export function History(props: { base: string; promptId: string; versions: number[]; revision: string }) {
  const path = `${props.base}/prompts/${seg(props.promptId)}`;
  const history = useLoad(
    () => call<{ changes?: LabelChange[] }>("GET", `${path}/labels:history?page_size=100`).then((a) => a.changes ?? []),
    [path, props.revision],
  );
  const newest = props.versions[0] ?? 1;
  const [from, setFrom] = useState<number>(Math.max(1, newest - 1));
  const [to, setTo] = useState<number>(newest);
  const [diff, setDiff] = useState<Diff | null>(null);
  const [error, setError] = useState("");

  async function compare() {
    setError("");
    try {
      setDiff(await call<Diff>("GET", `${path}/versions/${seg(from)}:diff?other=${seg(to)}`));
    } catch (err) {
      setDiff(null);
      setError(describe(err));
    }
  }

  const changes = diff?.changes ?? [];
  return (
    <details class="history" data-testid="history">
      <summary>History and diffs</summary>
      <h3 class="subhead">Label history</h3>
      <ErrorBox error={history.error} />
      {history.value && history.value.length === 0 && <p class="muted">No label has been moved yet.</p>}
      {history.value && history.value.length > 0 && (
        <table data-testid="label-history">
          <thead>
            <tr>
              <th scope="col">Label</th>
              <th scope="col">Move</th>
              <th scope="col">When</th>
              <th scope="col">Who</th>
            </tr>
          </thead>
          <tbody>
            {history.value.map((c, i) => (
              <tr key={i}>
                <td>{c.label}</td>
                <td>{move(c)}</td>
                <td>{c.time ? new Date(c.time).toLocaleString() : ""}</td>
                <td>{c.user_id}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h3 class="subhead">Compare versions</h3>
      <div class="row">
        <VersionSelect label="From version" versions={props.versions} value={from} onChange={setFrom} />
        <VersionSelect label="To version" versions={props.versions} value={to} onChange={setTo} />
        <button type="button" onClick={compare}>
          Show diff
        </button>
      </div>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {diff && (
        <div data-testid="version-diff" aria-live="polite">
          {changes.length === 0 && <p class="muted">v{from} and v{to} have the same content.</p>}
          {GROUPS.map((group) => {
            const mine = changes.filter((c) => groupOf(c.field) === group);
            if (mine.length === 0) return null;
            return (
              <section key={group} aria-label={`${group} changes`} data-testid={`diff-${group.toLowerCase()}`}>
                <h4>{group}</h4>
                <table>
                  <thead>
                    <tr>
                      <th scope="col">Field</th>
                      <th scope="col">v{from}</th>
                      <th scope="col">v{to}</th>
                    </tr>
                  </thead>
                  <tbody>
                    {mine.map((c) => (
                      <tr key={c.field}>
                        <td>
                          <code>{c.field}</code>
                        </td>
                        <td class="before">{shown(c.before)}</td>
                        <td class="after">{shown(c.after)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </section>
            );
          })}
          {diff.template_diff && (
            <>
              <h4>Templates</h4>
              <pre class="template-diff" data-testid="template-diff">
                {diff.template_diff.split("\n").map((line, i) => (
                  <span key={i} class={line.startsWith("+") && !line.startsWith("+++") ? "added" : line.startsWith("-") && !line.startsWith("---") ? "removed" : ""}>
                    {line}
                    {"\n"}
                  </span>
                ))}
              </pre>
            </>
          )}
        </div>
      )}
    </details>
  );
}

/** A labelled choice of one of a prompt's versions. */
function VersionSelect(props: {
  label: string;
  versions: number[];
  value: number;
  onChange: (version: number) => void;
}) {
  return (
    <label>
      {props.label}
      <select value={props.value} onChange={(e) => props.onChange(Number(e.currentTarget.value))}>
        {props.versions.map((v) => (
          <option key={v} value={v}>
            v{v}
          </option>
        ))}
      </select>
    </label>
  );
}

// A window's tools: the integration catalogue (a switch per integration and a form for its access
// keys, masked once saved) and function tools with the JSON schema of their arguments.
import { integrationCatalogue } from "./api";
import { type Draft, type FunctionTool, type Integration, isMasked } from "./draft";
import { ErrorBox, useLoad } from "./ui";

function parses(text: string): boolean {
  if (text.trim() === "") return true;
  try {
    const value = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value);
  } catch {
    return false;
  }
}

export function Tools(props: { draft: Draft; idPrefix: string; errorsAt: (path: string) => string[]; onChange: (change: Partial<Draft>) => void }) {
  const { draft } = props;
  const catalogue = useLoad(integrationCatalogue, []);
  const entry = (name: string): Integration =>
    draft.integrations.find((t) => t.integration === name) ?? { integration: name, active: false, keys: {}, saved: {} };
  const setEntry = (next: Integration) =>
    props.onChange({
      integrations: [...draft.integrations.filter((t) => t.integration !== next.integration), next],
    });
  const setFunction = (i: number, change: Partial<FunctionTool>) =>
    props.onChange({ functions: draft.functions.map((f, j) => (j === i ? { ...f, ...change } : f)) });

  return (
    <fieldset>
      <legend>Tools</legend>
      <ErrorBox error={catalogue.error} />
      {(catalogue.value ?? []).map((item) => {
        const current = entry(item.name);
        const index = draft.integrations.findIndex((t) => t.integration === item.name);
        const describedBy = `${props.idPrefix}-integration-${item.name}`;
        return (
          <div class="integration" key={item.name} data-testid={`integration-${item.name}`}>
            <label class="choice">
              <input
                type="checkbox"
                role="switch"
                checked={current.active}
                onChange={(e) => setEntry({ ...current, active: e.currentTarget.checked })}
                aria-describedby={describedBy}
              />
              {item.display_name}
            </label>
            <p class="muted hint" id={describedBy}>
              {item.description}
              {(item.functions ?? []).length > 0 && <> Functions: {(item.functions ?? []).map((f) => f.name).join(", ")}.</>}
            </p>
            {(current.active || Object.keys(current.saved).length > 0) &&
              (item.credentials ?? []).map((credential) => {
                const key = credential.name;
                const saved = current.saved[key] ?? "";
                return (
                  <label key={key} title={credential.description}>
                    {item.display_name} {credential.display_name.toLowerCase()}
                    <input
                      type="password"
                      autocomplete="off"
                      value={current.keys[key] ?? ""}
                      placeholder={isMasked(saved) ? `saved (…${saved.slice(-4)}); type to replace` : ""}
                      onInput={(e) => setEntry({ ...current, keys: { ...current.keys, [key]: e.currentTarget.value } })}
                    />
                  </label>
                );
              })}
            {index >= 0 && (
              <ul class="field-errors" role="alert">
                {props.errorsAt(`integration_tools[${index}]`).map((m) => (
                  <li key={m}>{m}</li>
                ))}
              </ul>
            )}
          </div>
        );
      })}
      <h3 class="subhead">Function tools</h3>
      {draft.functions.map((f, i) => {
        const valid = parses(f.parameters);
        const errors = props.errorsAt(`tools[${i}]`);
        return (
          <div class="function" key={i} data-testid={`function-${i}`}>
            <div class="row">
              <label>
                Name of function {i + 1}
                <input value={f.name} maxLength={64} onInput={(e) => setFunction(i, { name: e.currentTarget.value })} />
              </label>
              <button
                type="button"
                aria-label={`Remove function ${i + 1}`}
                onClick={() => props.onChange({ functions: draft.functions.filter((_, j) => j !== i) })}
              >
                Remove
              </button>
            </div>
            <label>
              Description of function {i + 1}
              <input value={f.description} onInput={(e) => setFunction(i, { description: e.currentTarget.value })} />
            </label>
            <label>
              Parameters of function {i + 1} (JSON schema)
              <textarea
                rows={4}
                class="template"
                value={f.parameters}
                aria-invalid={!valid || errors.length > 0}
                onInput={(e) => setFunction(i, { parameters: e.currentTarget.value })}
              />
            </label>
            {(!valid || errors.length > 0) && (
              <ul class="field-errors" role="alert">
                {!valid && <li>Not a JSON object.</li>}
                {errors.map((m) => (
                  <li key={m}>{m}</li>
                ))}
              </ul>
            )}
          </div>
        );
      })}
      <button
        type="button"
        onClick={() =>
          props.onChange({
            functions: [
              ...draft.functions,
              { name: "", description: "", parameters: '{\n  "type": "object",\n  "properties": {}\n}' },
            ],
          })
        }
      >
        Add function tool
      </button>
    </fieldset>
  );
}

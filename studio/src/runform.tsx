// The step-by-step run form: one declared input per step, in declared order, with the widget its
// type calls for; Next (or Enter) and Back, Submit at the last step.
import { useEffect, useRef, useState } from "preact/hooks";
import { optionsOf, typedValue, type Variable, type VarType } from "./draft";

function initial(v: Variable): string {
  if (v.default !== "") return v.default;
  if (v.type === "array") return "[]";
  if (v.type === "object") {
    // Each field starts at its default, or the empty value of its type.
    const fields = (v.fields ?? []).map((f) => [f.name, typedValue(f, initial(f)) ?? ""]);
    return JSON.stringify(Object.fromEntries(fields));
  }
  if (v.type === "boolean") return "false";
  if (v.type === "enum") return optionsOf(v)[0] ?? "";
  return "";
}

/** One scalar value's widget (a list item, an object's field), labelled. */
function Scalar(props: { type: VarType; label: string; value: unknown; onChange: (value: unknown) => void }) {
  const { type, value } = props;
  if (type === "boolean") {
    return (
      <label class="choice">
        <input type="checkbox" role="switch" checked={value === true} onChange={(e) => props.onChange(e.currentTarget.checked)} />
        {props.label}
      </label>
    );
  }
  const numeric = type === "integer" || type === "number";
  return (
    <label>
      {props.label}
      <input
        type={numeric ? "number" : "text"}
        step={type === "integer" ? 1 : "any"}
        value={value === undefined || value === null ? "" : String(value)}
        onInput={(e) => {
          const text = e.currentTarget.value;
          props.onChange(numeric && text.trim() !== "" && Number.isFinite(Number(text)) ? Number(text) : text);
        }}
      />
    </label>
  );
}

export function RunForm(props: {
  inputs: Variable[];
  onSubmit: (values: Record<string, unknown>) => void;
  onCancel: () => void;
}) {
  const { inputs } = props;
  const [step, setStep] = useState(0);
  const [texts, setTexts] = useState<string[]>(() => inputs.map(initial));
  const [problem, setProblem] = useState("");
  const field = useRef<HTMLInputElement & HTMLSelectElement & HTMLTextAreaElement>(null);
  const box = useRef<HTMLDivElement>(null);
  const v = inputs[step];
  const last = step === inputs.length - 1;

  // Each step starts on its first control (a list's first item or its Add button, an object's
  // first field).
  useEffect(() => {
    (field.current ?? box.current?.querySelector<HTMLElement>("input, select, textarea, button"))?.focus();
  }, [step]);

  function valid(): boolean {
    if (typedValue(v, texts[step]) === undefined) {
      setProblem(v.type === "integer" ? "Enter a whole number." : v.type === "number" ? "Enter a number." : "Check the values.");
      return false;
    }
    setProblem("");
    return true;
  }

  function next(event?: Event) {
    event?.preventDefault();
    if (!valid()) return;
    if (!last) {
      setStep(step + 1);
      return;
    }
    const values: Record<string, unknown> = {};
    inputs.forEach((input, i) => {
      values[input.name] = typedValue(input, texts[i]);
    });
    props.onSubmit(values);
  }

  // Enter moves on from any widget (a switch or a dropdown has no implicit submission).
  function enter(event: KeyboardEvent) {
    const target = event.target as HTMLElement;
    if (event.key !== "Enter" || target.tagName === "BUTTON" || target.tagName === "TEXTAREA") return;
    next(event);
  }

  const set = (value: string) => setTexts(texts.map((t, i) => (i === step ? value : t)));
  const id = `run-${v.name}`;
  let widget;
  if (v.type === "boolean") {
    widget = (
      <input
        ref={field}
        id={id}
        type="checkbox"
        role="switch"
        checked={texts[step] === "true"}
        onChange={(e) => set(e.currentTarget.checked ? "true" : "false")}
      />
    );
  } else if (v.type === "enum") {
    widget = (
      <select ref={field} id={id} value={texts[step]} onChange={(e) => set(e.currentTarget.value)}>
        {optionsOf(v).map((o) => (
          <option key={o} value={o}>
            {o}
          </option>
        ))}
      </select>
    );
  } else if (v.type === "array") {
    const items = (typedValue(v, texts[step]) as unknown[] | undefined) ?? [];
    const put = (next: unknown[]) => set(JSON.stringify(next));
    widget = (
      <div ref={box} class="list-editor" id={id} role="group" aria-label={`Items of ${v.name}`}>
        {items.map((item, i) => (
          <div class="row" key={i}>
            <Scalar
              type={v.items ?? "string"}
              label={`${v.name} item ${i + 1}`}
              value={item}
              onChange={(value) => put(items.map((x, j) => (j === i ? value : x)))}
            />
            <button type="button" aria-label={`Remove ${v.name} item ${i + 1}`} onClick={() => put(items.filter((_, j) => j !== i))}>
              ×
            </button>
          </div>
        ))}
        <button type="button" onClick={() => put([...items, v.items === "boolean" ? false : v.items === "string" || !v.items ? "" : 0])}>
          Add item
        </button>
      </div>
    );
  } else if (v.type === "object") {
    const value = (typedValue(v, texts[step]) as Record<string, unknown> | undefined) ?? {};
    widget = (
      <div ref={box} class="object-editor" id={id} role="group" aria-label={`Fields of ${v.name}`}>
        {(v.fields ?? []).map((f) =>
          f.type === "enum" ? (
            <label key={f.name}>
              {f.name}
              <select value={String(value[f.name] ?? "")} onChange={(e) => set(JSON.stringify({ ...value, [f.name]: e.currentTarget.value }))}>
                {optionsOf(f).map((o) => (
                  <option key={o} value={o}>
                    {o}
                  </option>
                ))}
              </select>
            </label>
          ) : (
            <Scalar
              key={f.name}
              type={f.type}
              label={f.name}
              value={value[f.name]}
              onChange={(next) => set(JSON.stringify({ ...value, [f.name]: next }))}
            />
          ),
        )}
      </div>
    );
  } else {
    widget = (
      <input
        ref={field}
        id={id}
        type={v.type === "string" ? "text" : "number"}
        step={v.type === "integer" ? 1 : "any"}
        value={texts[step]}
        onInput={(e) => set(e.currentTarget.value)}
      />
    );
  }

  return (
    <form class="run-form" onSubmit={next} onKeyDown={enter} aria-label="Run inputs">
      <p class="muted" aria-live="polite">
        Step {step + 1} of {inputs.length}
      </p>
      <label for={id}>
        {v.name} <span class="muted">({v.type})</span>
      </label>
      {v.description && <p class="hint">{v.description}</p>}
      {widget}
      {problem && (
        <p class="error" role="alert">
          {problem}
        </p>
      )}
      <div class="row">
        <button type="button" onClick={() => (step === 0 ? props.onCancel() : setStep(step - 1))}>
          {step === 0 ? "Cancel" : "Back"}
        </button>
        <button type="submit" class="primary">
          {last ? "Submit" : "Next"}
        </button>
      </div>
    </form>
  );
}

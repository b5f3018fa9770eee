// The step-by-step run form: one declared input per step, in declared order, with the widget its
// type calls for; Next (or Enter) and Back, Submit at the last step.
import { useEffect, useRef, useState } from "preact/hooks";
import { emptyValue, newVariable, optionsOf, typedValue, type Variable, type VarType } from "./draft";

function initial(v: Variable): string {
  if (v.default !== "") return v.default;
  // Containers start at the empty value of their type, each field at its default, at every level.
  if (v.type === "array" || v.type === "object") return JSON.stringify(emptyValue(v));
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

/** The editor of one value of any type, nested as deep as the declaration: a list editor for an
 * array (its items each edited in turn), an object's fields each with its own widget, a dropdown
 * for an enum, a switch for a boolean, a text or number field. `label` names it for assistive
 * technology and tests: a declared object's fields by their names (`customer`), deeper ones by
 * their path (`customer.name`, `lines item 1`, `lines item 1.qty`). `nested`: not a step's own
 * value. */
function Value(props: { variable: Variable; label: string; value: unknown; nested?: boolean; onChange: (value: unknown) => void }) {
  const { variable: v, label, value } = props;
  if (v.type === "array") {
    const items = Array.isArray(value) ? value : [];
    const item = v.item ?? newVariable("item");
    const put = (next: unknown[]) => props.onChange(next);
    return (
      <div class="list-editor" role="group" aria-label={`Items of ${label}`}>
        {items.map((x, i) => (
          <div class="row" key={i}>
            <Value nested variable={item} label={`${label} item ${i + 1}`} value={x} onChange={(next) => put(items.map((y, j) => (j === i ? next : y)))} />
            <button type="button" aria-label={`Remove ${label} item ${i + 1}`} onClick={() => put(items.filter((_, j) => j !== i))}>
              ×
            </button>
          </div>
        ))}
        <button type="button" aria-label={`Add item to ${label}`} onClick={() => put([...items, emptyValue(item)])}>
          Add item
        </button>
      </div>
    );
  }
  if (v.type === "object") {
    const record = value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
    return (
      <fieldset class="object-editor" role="group" aria-label={`Fields of ${label}`}>
        <legend>{label}</legend>
        {(v.fields ?? []).map((f) => (
          <Value
            nested
            key={f.name}
            variable={f}
            label={props.nested ? `${label}.${f.name}` : f.name}
            value={record[f.name]}
            onChange={(next) => props.onChange({ ...record, [f.name]: next })}
          />
        ))}
      </fieldset>
    );
  }
  if (v.type === "enum") {
    return (
      <label>
        {label}
        <select value={String(value ?? "")} onChange={(e) => props.onChange(e.currentTarget.value)}>
          {optionsOf(v).map((o) => (
            <option key={o} value={o}>
              {o}
            </option>
          ))}
        </select>
      </label>
    );
  }
  return <Scalar type={v.type} label={label} value={value} onChange={props.onChange} />;
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
  } else if (v.type === "array" || v.type === "object") {
    const value = typedValue(v, texts[step]) ?? emptyValue(v);
    widget = (
      <div ref={box} id={id}>
        <Value variable={v} label={v.name} value={value} onChange={(next) => set(JSON.stringify(next))} />
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

// The step-by-step run form: one declared input per step, in declared order, with the widget its
// type calls for; Next (or Enter) and Back, Submit at the last step.
import { useEffect, useRef, useState } from "preact/hooks";
import { optionsOf, typedValue, type Variable } from "./draft";

function initial(v: Variable): string {
  if (v.default !== "") return v.default;
  if (v.type === "boolean") return "false";
  if (v.type === "enum") return optionsOf(v)[0] ?? "";
  return "";
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
  const v = inputs[step];
  const last = step === inputs.length - 1;

  useEffect(() => field.current?.focus(), [step]);

  function valid(): boolean {
    if (typedValue(v, texts[step]) === undefined) {
      setProblem(v.type === "integer" ? "Enter a whole number." : "Enter a number.");
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

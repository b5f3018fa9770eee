// Flow 2, "Deploy a prompt": any prompt the user can see, into a project they edit — as it is,
// pinned to a version (a prompt of another project always is), with the same deployment settings
// and snippets as flow 1; or first copied into that project's editor, to edit, run, save and
// deploy there (the same steps as flow 1).
import { useEffect, useState } from "preact/hooks";
import { call, type Project, type Prompt, seg } from "./api";
import { DeployPanel } from "./deploy";
import { fromVersion, runInputs, type Variable } from "./draft";
import { href } from "./router";
import { ErrorBox, Link, useLoad } from "./ui";

export function DeployPrompt() {
  const data = useLoad(
    () =>
      Promise.all([
        call<{ prompts?: Prompt[] }>("GET", "/v1/prompts?page_size=1000"),
        call<{ projects?: Project[] }>("GET", "/v1/projects?page_size=1000"),
      ]),
    [],
  );
  const prompts = data.value?.[0].prompts ?? [];
  const projects = data.value?.[1].projects ?? [];
  const projectName = (id: string) => projects.find((p) => p.id === id)?.name ?? id;
  const [promptId, setPromptId] = useState("");
  const [targetId, setTargetId] = useState("");
  const [version, setVersion] = useState(0);
  const [inputs, setInputs] = useState<Variable[]>([]);
  const [error, setError] = useState<unknown>(null);
  const chosen = prompts.find((p) => p.id === promptId);

  // The chosen prompt's newest version is the default; its inputs make the snippets' example.
  useEffect(() => setVersion(chosen?.latest_version ?? 0), [promptId]);
  useEffect(() => {
    if (!chosen || !version) return;
    call<{ version: Record<string, any> }>(
      "GET",
      `/v1/projects/${seg(chosen.project_id)}/prompts/${seg(chosen.id)}/versions/${version}`,
    ).then(
      (answer) => setInputs(runInputs(fromVersion(answer.version))),
      (err) => setError(err),
    );
  }, [promptId, version]);

  const versions = chosen ? Array.from({ length: chosen.latest_version ?? 0 }, (_, i) => (chosen.latest_version ?? 0) - i) : [];
  return (
    <main>
      <h1>Deploy a prompt</h1>
      <ErrorBox error={data.error || error} />
      <div class="deploy-pick">
        <label>
          Prompt
          <select aria-label="Prompt" value={promptId} onChange={(e) => setPromptId(e.currentTarget.value)}>
            <option value="">Choose a prompt…</option>
            {prompts.map((p) => (
              <option key={p.id} value={p.id}>
                {projectName(p.project_id)} / {p.name}
              </option>
            ))}
          </select>
        </label>
        {chosen && (
          <label>
            Version
            <select aria-label="Version" value={version} onChange={(e) => setVersion(Number(e.currentTarget.value))}>
              {versions.map((v) => (
                <option key={v} value={v}>
                  version {v}
                </option>
              ))}
            </select>
          </label>
        )}
        <label>
          Target project
          <select aria-label="Target project" value={targetId} onChange={(e) => setTargetId(e.currentTarget.value)}>
            <option value="">Choose a project…</option>
            {projects.map((p) => (
              <option key={p.id} value={p.id}>
                {p.name}
              </option>
            ))}
          </select>
        </label>
      </div>
      {chosen && targetId && version > 0 && (
        <p>
          <Link
            class="button"
            href={`${href("projects", targetId, "prompts", "new")}?${new URLSearchParams({
              from: chosen.id,
              from_project: chosen.project_id,
              version: String(version),
            })}`}
          >
            Edit and run it in {projectName(targetId)} first
          </Link>{" "}
          <span class="muted">(a copy saved as that project's own prompt), or deploy it as it is:</span>
        </p>
      )}
      {chosen && targetId && version > 0 && (
        <DeployPanel
          key={`${chosen.id}/${targetId}/${version}`}
          target={{
            projectId: targetId,
            promptId: chosen.id,
            sourceProjectId: chosen.project_id === targetId ? undefined : chosen.project_id,
          }}
          defaultName={chosen.name}
          versions={[version]}
          labels={[]}
          inputs={inputs}
        />
      )}
    </main>
  );
}

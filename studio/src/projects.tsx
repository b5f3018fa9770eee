// The projects the user has a role in.
import { call, type Project } from "./api";
import { href } from "./router";
import { ErrorBox, Link, useLoad } from "./ui";

export function Projects() {
  const { value, error } = useLoad(() => call<{ projects?: Project[] }>("GET", "/v1/projects"), []);
  return (
    <main>
      <h1>Projects</h1>
      <ErrorBox error={error} />
      {value && (value.projects ?? []).length === 0 && <p>No projects yet.</p>}
      <ul class="cards">
        {(value?.projects ?? []).map((p) => (
          <li key={p.id}>
            <Link href={href("projects", p.id)}>{p.name}</Link>
            {p.description && <p>{p.description}</p>}
          </li>
        ))}
      </ul>
    </main>
  );
}

// The studio's entry: login first (the token stays in memory), then the routed pages.
import { render } from "preact";
import { useState } from "preact/hooks";
import { signedIn, signOut } from "./api";
import { DeployPrompt } from "./flow2";
import { Editor } from "./editor";
import { Login } from "./login";
import { ProjectPage } from "./project";
import { Projects } from "./projects";
import { href, navigate, useRoute } from "./router";
import "./styles.css";
import { Link } from "./ui";

function App() {
  const route = useRoute();
  const [, setSession] = useState(0);
  if (!signedIn()) return <Login onDone={() => setSession((n) => n + 1)} />;
  return (
    <>
      <a class="skip" href="#content">
        Skip to content
      </a>
      <header class="topbar">
        <Link href={href()} class="brand">
          Bud Studio
        </Link>
        <nav aria-label="Main">
          <Link href={href()}>Projects</Link>
          <Link href={href("deploy")}>Deploy a prompt</Link>
        </nav>
        <button
          type="button"
          onClick={() => {
            signOut();
            navigate(href());
            setSession((n) => n + 1);
          }}
        >
          Log out
        </button>
      </header>
      <div id="content">
        {route.page === "projects" && <Projects />}
        {route.page === "deploy" && <DeployPrompt />}
        {route.page === "project" && <ProjectPage projectId={route.projectId} tab={route.tab} />}
        {route.page === "editor" && (
          <Editor key={`${route.projectId}/${route.promptId}`} projectId={route.projectId} promptId={route.promptId} />
        )}
        {route.page === "missing" && (
          <main>
            <h1>Not found</h1>
            <p>
              No such page. <Link href={href()}>Back to the projects</Link>.
            </p>
          </main>
        )}
      </div>
    </>
  );
}

render(<App />, document.getElementById("app")!);

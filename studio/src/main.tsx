// The studio's entry: login first (the token stays in memory), then the routed pages.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { currentUsername, onSessionChange, sessionExpired, signedIn, signOut } from "./api";
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
  useEffect(() => onSessionChange(() => setSession((n) => n + 1)), []);
  const expired = sessionExpired();
  if (!signedIn() && !expired) return <Login onDone={() => setSession((n) => n + 1)} />;
  const logOut = () => {
    signOut();
    navigate(href());
    setSession((n) => n + 1);
  };
  return (
    <>
      {expired && <Login again={{ username: currentUsername(), onLogOut: logOut }} onDone={() => setSession((n) => n + 1)} />}
      {/* The page stays mounted (and its unsaved state with it) under the re-login dialog. */}
      <div class="page" inert={expired} aria-hidden={expired}>
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
        <button type="button" onClick={logOut}>
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
      </div>
    </>
  );
}

render(<App />, document.getElementById("app")!);

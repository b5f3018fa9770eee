// Routing on the page's path under /studio/ (the gateway answers index.html for every such path):
// links are real URLs, Back and Forward work, and no secret ever goes into one.
import { useEffect, useState } from "preact/hooks";

export const BASE = "/studio";

export type Route =
  | { page: "projects" }
  | { page: "project"; projectId: string; tab: "deployments" | "keys" | "prompts" | "usage" }
  | { page: "editor"; projectId: string; promptId: string | null }
  | { page: "deploy" }
  | { page: "missing" };

export function parse(pathname: string): Route {
  const rest = pathname.startsWith(BASE) ? pathname.slice(BASE.length) : pathname;
  const parts = rest.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0) return { page: "projects" };
  if (parts.length === 1 && parts[0] === "deploy") return { page: "deploy" };
  if (parts[0] !== "projects" || parts.length < 2) return { page: "missing" };
  const projectId = parts[1];
  if (parts.length === 2) return { page: "project", projectId, tab: "deployments" };
  if (parts.length === 3 && (parts[2] === "keys" || parts[2] === "deployments" || parts[2] === "prompts" || parts[2] === "usage")) {
    return { page: "project", projectId, tab: parts[2] };
  }
  if (parts.length === 4 && parts[2] === "prompts") {
    return { page: "editor", projectId, promptId: parts[3] === "new" ? null : parts[3] };
  }
  return { page: "missing" };
}

export function href(...parts: string[]): string {
  return [BASE, ...parts.map(encodeURIComponent)].join("/") + (parts.length ? "" : "/");
}

export function navigate(to: string): void {
  if (to !== location.pathname + location.search) history.pushState(null, "", to);
  dispatchEvent(new PopStateEvent("popstate"));
}

/** The current route; follows pushState navigations and Back/Forward. */
export function useRoute(): Route {
  const [route, setRoute] = useState(() => parse(location.pathname));
  useEffect(() => {
    const update = () => setRoute(parse(location.pathname));
    addEventListener("popstate", update);
    return () => removeEventListener("popstate", update);
  }, []);
  return route;
}

/** Click handler of an in-app link: navigates without a reload (modified clicks left to the
 * browser). */
export function follow(event: MouseEvent): void {
  const anchor = event.currentTarget as HTMLAnchorElement;
  if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  navigate(anchor.pathname + anchor.search);
}

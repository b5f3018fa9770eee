// The public REST API, called with the user's session token. The token lives in this module's
// memory only: never in storage, a cookie or a URL (a reload asks for the password again).
//
// An expired session (a call answered 401 although it carried the token) does not unmount the
// page: the session is marked expired, the page shows the login form over what the user was
// doing (nothing of it is lost, nothing navigates), and every call refused meanwhile waits; once
// the same user logs in again, each is sent again with the new token and the page carries on.

export interface FieldViolation {
  field: string;
  description: string;
}

/** An API error in words: the message, the HTTP status and the fields at fault. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly violations: FieldViolation[] = [],
  ) {
    super(message);
  }
}

const LOGIN = "/v1/auth/login";
let token: string | null = null;
let username = "";
let expired = false;
// The calls waiting for the user to log in again, and who is told the session changed.
let waiting: (() => void)[] = [];
const listeners = new Set<() => void>();

export function signedIn(): boolean {
  return token !== null;
}

/** The session's token was refused (expired): the login form is shown over the page. */
export function sessionExpired(): boolean {
  return expired;
}

/** Who was logged in (the re-login form asks for the same user). */
export function currentUsername(): string {
  return username;
}

/** Calls `listener` when the session expires, resumes or ends; returns the unsubscribe. */
export function onSessionChange(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

const notify = () => listeners.forEach((listener) => listener());

export function signOut(): void {
  token = null;
  expired = false;
  waiting = []; // calls waiting for a login are dropped with the page they belonged to
  notify();
}

/** Marks the session expired (once) and waits until the user has logged in again. */
function expire(): Promise<void> {
  const resumed = new Promise<void>((resolve) => waiting.push(resolve));
  if (!expired) {
    expired = true;
    token = null;
    notify();
  }
  return resumed;
}

/** The error a failed call answers: google.rpc.Status JSON (management routes) or OpenAI's
 * error JSON; anything else is named by its status. */
function errorOf(status: number, body: unknown): ApiError {
  const text = (value: unknown) => (typeof value === "string" && value ? value : "");
  if (body && typeof body === "object") {
    const record = body as Record<string, unknown>;
    if (record.error && typeof record.error === "object") {
      const err = record.error as Record<string, unknown>;
      const param = text(err.param);
      const violations = param ? [{ field: param, description: text(err.message) }] : [];
      return new ApiError(text(err.message) || `HTTP ${status}`, status, violations);
    }
    const violations: FieldViolation[] = [];
    for (const detail of (record.details as Record<string, unknown>[] | undefined) ?? []) {
      for (const v of (detail.fieldViolations as FieldViolation[] | undefined) ?? []) {
        violations.push({ field: v.field, description: v.description });
      }
    }
    if (text(record.message)) return new ApiError(text(record.message), status, violations);
  }
  if (status === 0) return new ApiError("The platform cannot be reached.", status);
  return new ApiError(`The request failed (HTTP ${status}).`, status);
}

/** One call: JSON in, JSON out; throws ApiError. A 401 to a call that carried the session's
 * token (it expired, or was revoked) waits for the user to log in again, then is sent again. */
export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  // A call begun while the login form is up waits for it too (not the login's own).
  if (expired && path !== LOGIN) await expire();
  const headers: Record<string, string> = { accept: "application/json" };
  const sent = token;
  if (sent) headers.authorization = `Bearer ${sent}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
  } catch {
    throw errorOf(0, null);
  }
  const raw = await response.text();
  let parsed: unknown = null;
  try {
    parsed = raw ? JSON.parse(raw) : {};
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    if (response.status === 401 && sent) {
      await expire();
      return call<T>(method, path, body);
    }
    throw errorOf(response.status, parsed);
  }
  return parsed as T;
}

/** One server-sent event: its name (`event:`) and its data, parsed. */
export interface StreamEvent {
  event: string;
  data: unknown;
}

/** A streamed call (a route's `"stream": true`): POSTs `body` and hands each server-sent event to
 * `onEvent` as it arrives. An error answered before the stream (a refused body) throws ApiError as
 * `call` does; an error event inside the stream throws it too. Aborting `signal` closes the
 * connection, which cancels the run on the server (the gateway cancels the call it made). */
export async function stream(
  path: string,
  body: unknown,
  onEvent: (event: StreamEvent) => void,
  signal: AbortSignal,
): Promise<void> {
  if (expired) await expire();
  const headers: Record<string, string> = { accept: "text/event-stream", "content-type": "application/json" };
  const sent = token;
  if (sent) headers.authorization = `Bearer ${sent}`;
  let response: Response;
  try {
    response = await fetch(path, {
      method: "POST",
      headers,
      body: JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
      signal,
    });
  } catch (err) {
    if (signal.aborted) throw err;
    throw errorOf(0, null);
  }
  if (!response.ok || !response.body) {
    const raw = await response.text();
    let parsed: unknown = null;
    try {
      parsed = raw ? JSON.parse(raw) : {};
    } catch {
      parsed = null;
    }
    if (response.status === 401 && sent) {
      await expire();
      return stream(path, body, onEvent, signal);
    }
    throw errorOf(response.status, parsed);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "";
      const data: string[] = [];
      for (const line of frame.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length === 0) continue;
      let parsed: unknown = null;
      try {
        parsed = JSON.parse(data.join("\n"));
      } catch {
        continue; // a sentinel, not JSON
      }
      if (event === "error") {
        // A failure after the stream began: `{"error": <google.rpc.Status>}`.
        const status = parsed && typeof parsed === "object" ? (parsed as Record<string, unknown>).error : null;
        throw errorOf(500, status);
      }
      onEvent({ event, data: parsed });
    }
  }
}

export async function logIn(name: string, password: string): Promise<void> {
  const answer = await call<{ access_token: string }>("POST", LOGIN, { username: name, password });
  token = answer.access_token;
  username = name;
  if (expired) {
    // The same user is back: the calls that waited are sent again with the new token.
    expired = false;
    const resume = waiting;
    waiting = [];
    resume.forEach((go) => go());
  }
  notify();
}

/** A path segment, escaped. */
export const seg = (value: string | number): string => encodeURIComponent(String(value));

// ---- the shapes the pages read (the proto JSON, snake_case field names) -------------------------

export interface Project {
  id: string;
  name: string;
  description?: string;
}

export interface Deployment {
  id: string;
  name: string;
  project_id: string;
  model?: Record<string, string>;
  prompt?: { prompt_id: string; version?: number; label?: string; project_id?: string };
  runner?: string;
  status?: string;
  status_message?: string;
  caching?: boolean;
  scaling?: { min_concurrency?: number; max_concurrency?: number; autoscale?: boolean };
  rate_limits?: { requests_per_minute?: number; tokens_per_minute?: number };
}

export interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  state?: string;
  create_time?: string;
  revoke_time?: string;
}

export interface Prompt {
  id: string;
  project_id: string;
  name: string;
  description?: string;
  latest_version?: number;
  default_label?: string;
  labels?: { name: string; version: number }[];
}

/** The chat deployments of a project: model deployments that generate text. */
export function chatDeployments(deployments: Deployment[]): Deployment[] {
  return deployments.filter((d) => d.model && d.runner !== "RUNNER_POOLING");
}

/** An integration of the catalogue (`GET /v1/prompt-integrations`). */
export interface IntegrationInfo {
  name: string;
  display_name: string;
  description?: string;
  credentials?: { name: string; display_name: string; description?: string }[];
  functions?: { name: string; description?: string }[];
}

let catalogue: Promise<IntegrationInfo[]> | null = null;

/** The integration catalogue, asked once per page load (it changes with a release, not per user). */
export function integrationCatalogue(): Promise<IntegrationInfo[]> {
  catalogue ??= call<{ integrations?: IntegrationInfo[] }>("GET", "/v1/prompt-integrations").then(
    (a) => a.integrations ?? [],
    (err) => {
      catalogue = null; // asked again next time
      throw err;
    },
  );
  return catalogue;
}

// The login form: username and password for the JWT the rest of the page uses (in memory). Also
// the re-login dialog shown over the page when the session expires (`again`: the same user).
import { useEffect, useRef, useState } from "preact/hooks";
import { logIn } from "./api";
import { ErrorBox } from "./ui";

export function Login(props: { onDone: () => void; again?: { username: string; onLogOut: () => void } }) {
  const again = props.again;
  const [username, setUsername] = useState(again?.username ?? "");
  const passwordField = useRef<HTMLInputElement>(null);
  // The dialog comes up over a page already loaded (autofocus applies at load only): its
  // password field takes the focus.
  useEffect(() => {
    if (again) passwordField.current?.focus();
  }, []);
  const [password, setPassword] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: Event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await logIn(username, password);
      setPassword("");
      props.onDone();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  const form = (
    <form method="post" onSubmit={submit} aria-label="Log in">
      <label>
        Username
        <input
          name="username"
          autocomplete="username"
          required
          autofocus={!again}
          readOnly={Boolean(again)}
          value={username}
          onInput={(e) => setUsername(e.currentTarget.value)}
        />
      </label>
      <label>
        Password
        <input
          name="password"
          type="password"
          autocomplete="current-password"
          required
          ref={passwordField}
          value={password}
          onInput={(e) => setPassword(e.currentTarget.value)}
        />
      </label>
      <div class="row">
        <button type="submit" disabled={busy}>
          Log in
        </button>
        {again && (
          <button type="button" onClick={again.onLogOut}>
            Log out instead
          </button>
        )}
      </div>
      <ErrorBox error={error} />
    </form>
  );
  if (again) {
    // Over the page, which stays as it was (inert) underneath: the calls refused meanwhile are
    // sent again once the user is back.
    return (
      <div class="modal-backdrop">
        <div class="modal login" role="dialog" aria-modal="true" aria-labelledby="relogin-title" aria-describedby="relogin-why">
          <h2 id="relogin-title">Your session has expired</h2>
          <p id="relogin-why">Log in again to carry on where you were: nothing you typed is lost.</p>
          {form}
        </div>
      </div>
    );
  }
  return (
    <main class="login">
      <h1>Bud Studio</h1>
      {form}
    </main>
  );
}

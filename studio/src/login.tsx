// The login form: username and password for the JWT the rest of the page uses (in memory).
import { useState } from "preact/hooks";
import { logIn } from "./api";
import { ErrorBox } from "./ui";

export function Login(props: { onDone: () => void }) {
  const [username, setUsername] = useState("");
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

  return (
    <main class="login">
      <h1>Bud Studio</h1>
      <form method="post" onSubmit={submit} aria-label="Log in">
        <label>
          Username
          <input
            name="username"
            autocomplete="username"
            required
            autofocus
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
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </label>
        <button type="submit" disabled={busy}>
          Log in
        </button>
        <ErrorBox error={error} />
      </form>
    </main>
  );
}

"""The control plane: makes the engines serve what the model deployments ask for.

A background task of the app process. Each pass reads every model deployment and, per engine
endpoint, asks the engine at `address` what it serves (ListModels, once per engine per pass). A
model missing under the endpoint's `served_model_name` is loaded (LoadModel with the deployment's
source, runner and engine args); one loaded for an older version of the deployment is unloaded
and loaded again. The deployment's status follows: PENDING → LOADING → READY, or FAILED with the
engine's reason. An unreachable engine is not a failure: the deployment goes (back) to PENDING
with a message saying so, and the engine is retried with exponential backoff — which is also how
an engine restart is healed.

Passes run at start, when a servicer calls :meth:`Reconciler.kick` (create/update), and every
`interval` seconds. Loads run in tasks of their own, one per deployment at a time, so a long load
never delays anything else; RPCs never wait for them.

What this process loaded is remembered in memory (per endpoint, a fingerprint of source, runner
and args). After an app restart a model the engine already serves READY under the endpoint's
name is adopted as is (the app cannot change a deployment while it is down). A load that failed
is retried only after a long backoff (or at once when the deployment is updated), not every pass.
Models of deleted deployments are unloaded best effort; one left behind when the app stopped in
between is not cleaned up (engines may serve models the app does not manage).

Each pass ends by handing the desired models (and, when it asks for them, the engines' GetStats)
to the scaler hook; the default scales nothing.

Modules: `desired_state` (what the deployments ask for), `engine_client` (channels and the engine
calls), `status` (deployment status from the endpoints' outcomes, and writing it), `loop` (the
`Reconciler`: passes, tasks, retry schedules), `scaler` (the hook).
"""

from app.control.loop import Reconciler

__all__ = ["Reconciler"]

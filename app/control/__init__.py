"""The control plane: makes the engines serve what the model deployments ask for.

A background task of the app process. Each pass reads every model deployment and, per endpoint
(a registered engine, see `engines`), asks the engine what it serves (ListModels, once per engine
per pass). Models' names on engines are the platform's, ``<deployment id>-g<generation>``, and
every LoadModel and UnloadModel carries the owner (deployment id and generation), which the engine
records and enforces. A model missing under the endpoint's name is loaded (with the deployment's
source, runner and engine args); models this engine serves for an older generation of the same
deployment are unloaded first, as their owner. The deployment's status follows: PENDING →
LOADING → READY, or FAILED with the engine's reason. An unreachable engine is not a failure: the
deployment goes (back) to PENDING with "engine unavailable; retrying" (the connection error is
logged, never shown to tenants), and the engine is retried with exponential backoff — which is
also how an engine restart is healed.

Each pass starts with the engines whose lease ended (engines that announced themselves and
stopped, `leases`): their replicas are lost and move to live engines (the control plane's own
replicas are removed and placed again by the scaler's floor).

Passes run at start, when a servicer calls :meth:`Reconciler.kick` (create/update), and every
`interval` seconds. Loads run in tasks of their own, one per deployment at a time, so a long load
never delays anything else; RPCs never wait for them.

Only a model whose recorded owner is the deployment and its current generation is the
deployment's: after an app restart such a model, READY, is adopted as is. A model under the name
with any other owner (an operator's, loaded by hand) is never adopted, replaced or unloaded: the
endpoint fails until it is gone. A load that failed is retried only after a long backoff (or at
once when the deployment is updated), not every pass. Models of deleted deployments (or of
engines a deployment left) are unloaded best effort, as their owner; one left behind when the app
stopped in between is not cleaned up.

Each pass ends by handing the desired models (and, when it asks for them, the engines' GetStats)
to the scaler hook: the app's is `autoscaler.Autoscaler` (replicas between a deployment's bounds,
autoscaling from the gateways' load reports and the engines' stats, draining, scale to zero and
wake; see its docstring). Replicas being drained are not loaded, and a deployment scaled to zero
(no replica desired) is left alone.

Modules: `engines` (names, owners, placement on registered engines), `desired_state` (what the
deployments ask for), `engine_client` (channels and the engine calls), `status` (deployment status
from the endpoints' outcomes, and writing it), `loop` (the `Reconciler`: passes, tasks, retry
schedules), `scaler` (the hook), `autoscaler`, `replicas` (bounds), `load` (the gateways'
reports), `events` (scaling events), `leases` (engines whose lease ended).
"""

from app.control.loop import Reconciler

__all__ = ["Reconciler"]

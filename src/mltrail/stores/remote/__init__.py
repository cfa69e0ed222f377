"""The remote store: an MLflow tracking server over its REST API, spooled on local disk.

One concern per module:

- `wire`: the REST JSON both ways (requests encoded, answers as entities);
- `http`: the one session to a server (auth, TLS, retries, error translation);
- `budget`: foreground requests with a time budget that outlive it;
- `spool`: where records wait, and what of each run the server has (ship state);
- `ids`: spool run ids and server run ids, both ways;
- `shipper`: one run to the server, exactly once; `sender`: the background thread;
- `artifact_roots`: artifact files wherever a run's artifact URI says (proxied by the
  server, a plain folder, or an ``s3://``-like root through `mltrail.stores.bridge`);
- `store`: `RestStore`, the Store protocol on top of them;
- `registry`: the model registry over REST;
- `sync` and `doctor`: the `mltrail sync` and `mltrail doctor` commands.
"""

from __future__ import annotations

from .http import RemoteSettings
from .store import RestStore

__all__ = ["RemoteSettings", "RestStore"]

"""roomcast's user-facing Python tools: the client SDK (`roomcast.client`), the
`roomcast` command (`roomcast.cli`) and the load generator (`roomcast.bench`).

The server side lives in the design packages `gateway`, `workers` and `shared`."""

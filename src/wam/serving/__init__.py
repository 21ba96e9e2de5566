"""Serving: any `Policy` behind openpi's websocket protocol, and a light client for robots.

    server          `PolicyServer` (a thread per connection, one inference at a time), `ServerThread`
    observation     the request keys of a served policy, their checks and their conversion to a batch
    loading         what `wam serve SOURCE` serves: run folders, presets, scripted policies (torch)
    client          `PolicyClient` (numpy + msgpack + websockets only), `ActionChunkBroker`
    broker          one action per control tick, optional temporal ensembling (ACT)
    remote          `RemotePolicy`: a served policy behind our `Policy` contract (`--policy ws://...`)
    msgpack_numpy   the wire encoding (openpi's), never pickle

Importing this package imports nothing heavy; only `loading` imports torch (inside its functions).
"""

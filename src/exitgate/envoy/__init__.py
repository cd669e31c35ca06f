"""IR -> Envoy protos, the bootstrap, and the Envoy process supervisor."""

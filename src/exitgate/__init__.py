"""exitgate: Istio's egress gateway with TLS origination, as a standalone control plane for Envoy."""

__version__ = "0.1.0"

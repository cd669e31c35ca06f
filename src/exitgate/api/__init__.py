"""Istio resources at the YAML boundary: typed models, the loader, diagnostics."""

"""Cross-resource checks with Istio's analyzer codes."""

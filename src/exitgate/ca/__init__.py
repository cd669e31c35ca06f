"""The mesh certificate authority: root, SPIFFE workload certificates, rotation."""

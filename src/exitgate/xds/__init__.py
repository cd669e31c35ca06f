"""The xDS side: snapshot cache, ADS protocol state, the gRPC server."""

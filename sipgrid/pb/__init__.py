"""Generated protobuf and gRPC stubs of the Routr v2beta1 contracts in ../../proto (`make protos`)."""

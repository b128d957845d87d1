"""The interfaces between sipgrid services, as plain Python types.

Services talk through these: in one process by direct calls, across processes through
the gRPC contracts in proto/, converted at the edge by :mod:`sipgrid.api.convert`.
"""

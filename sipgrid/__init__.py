"""sipgrid: a cloud-native SIP softswitch, wire-compatible with Routr v2."""

__version__ = "0.1.0"

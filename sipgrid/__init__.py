"""sipgrid: a cloud-native SIP softswitch, wire-compatible with Routr v2."""

from sipgrid import native as _native

__version__ = "0.1.0"

# the modules compiled by mypyc, when their build matches the sources (sipgrid/native.py)
_native.install()

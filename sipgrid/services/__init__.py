"""sipgrid's services (EdgePort, Dispatcher, Connect, Location, APIServer, Registry,
Requester, RTPRelay), imported as ``sipgrid.services``. The checkout's top-level
``services/`` is a link to this folder, for reading; importing it as ``services`` would
load every module twice (two metric registries, two of everything), so it is refused.
"""

if __name__ != "sipgrid.services":
    raise ImportError(f"import sipgrid.services, not {__name__}")

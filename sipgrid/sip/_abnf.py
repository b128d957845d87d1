"""Character classes and rules of the RFC 3261 section 25 grammar, as regexes.

Each regex quotes the ABNF it implements. They are compiled once, at import.
"""

from __future__ import annotations

import re
from typing import Final

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )
TOKEN: Final = r"[A-Za-z0-9\-.!%*_+`'~]+"
token_re: Final = re.compile(TOKEN)

# Methods known to be tokens (RFC 3261 section 25.1, and the extensions'): a set lookup
# instead of token_re for nearly every request
KNOWN_METHODS: Final = frozenset(
    [
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "REGISTER",
        "OPTIONS",
        "MESSAGE",
        "INFO",
        "NOTIFY",
        "SUBSCRIBE",
        "PRACK",
        "UPDATE",
        "REFER",
        "PUBLISH",
    ]
)

# SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT
sip_version_re: Final = re.compile(r"[Ss][Ii][Pp]/([0-9]+)\.([0-9]+)")

# Status-Code = 3DIGIT
status_code_re: Final = re.compile(r"[1-6][0-9][0-9]")

# LWS = [*WSP CRLF] 1*WSP ; after unfolding, runs of SP and HTAB
LWS: Final = r"[ \t]+"
SWS: Final = r"[ \t]*"

# Via = sent-protocol LWS sent-by *( SEMI via-params )
# sent-protocol = protocol-name SLASH protocol-version SLASH transport
# SLASH = SWS "/" SWS
# sent-by = host [ COLON port ]
# host = hostname / IPv4address / IPv6reference
via_re: Final = re.compile(
    rf"{SWS}({TOKEN}){SWS}/{SWS}({TOKEN}){SWS}/{SWS}({TOKEN}){LWS}"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-_.]+)"
    rf"(?:{SWS}:{SWS}([0-9]{{1,5}}))?{SWS}(;.*)?"
)

# host = hostname / IPv4address / IPv6reference (hostname leniently allows "_")
HOST: Final = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-_.]+)"
host_re: Final = re.compile(HOST)

# user = 1*( unreserved / escaped / user-unreserved )
# user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
# unreserved = alphanum / mark ; mark = "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
# ("#" is accepted too: some phones send it unescaped for feature codes)
user_re: Final = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%#]+")

# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
password_re: Final = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,%]*")

# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
scheme_re: Final = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")

# uri-parameter: pname [ "=" pvalue ] ; paramchar = param-unreserved / unreserved / escaped
# param-unreserved = "[" / "]" / "/" / ":" / "&" / "+" / "$"
uri_param_re: Final = re.compile(r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$%]+")

# header = hname "=" hvalue ; hnv-unreserved = "[" / "]" / "/" / "?" / ":" / "+" / "$"
uri_headers_re: Final = re.compile(r"[A-Za-z0-9\-_.!~*'()\[\]/?:+$%=&]*")

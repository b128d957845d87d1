"""sipp scenarios, as XML built here so each test states its own expectations.

Keywords in [brackets] are sipp's; -key sets user, domain, contact_host, contact_port,
expires and callee. -au/-ap give the digest credentials.
"""

from __future__ import annotations

from html import escape

HEAD = '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="{name}">\n'
TAIL = "</scenario>\n"

# the 200 to an in-dialog request (a BYE): its own transaction's headers
ANSWER_200 = """      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0"""

SDP = """v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000"""


def _send(body: str, retrans: bool = True, extra: str = "") -> str:
    attribute = ' retrans="500"' if retrans else ""
    return f"  <send{attribute}{extra}>\n    <![CDATA[\n\n{body}\n\n    ]]>\n  </send>\n"


def _register_request(cseq: int, auth: bool, contact: str, headers: str = "") -> str:
    authentication = "      [authentication]\n" if auth else ""
    authentication += "".join(f"      {line}\n" for line in headers.splitlines())
    return f"""      REGISTER sip:[domain] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[user]@[domain]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[user]@[domain]>
      Call-ID: [call_id]
      CSeq: {cseq} REGISTER
      Contact: {contact}
{authentication}      Max-Forwards: 70
      Expires: [expires]
      User-Agent: sipp
      Content-Length: 0"""


def register(
    final: int = 200,
    contact: str = "<sip:[user]@[contact_host]:[contact_port];transport=[transport]>",
    check_contacts: int | None = None,
    headers: str = "",
) -> str:
    """REGISTER, 401, REGISTER with credentials (and ``headers``, one a line), then ``final``."""
    check = ""
    if check_contacts is not None:
        # exactly n Contact values with expires: n matches and not n+1
        n_times = ".*".join(["expires=[1-9][0-9]*"] * check_contacts)
        more = ".*".join(["expires=[1-9][0-9]*"] * (check_contacts + 1))
        check = (
            f'  <recv response="{final}">\n    <action>\n'
            f'      <ereg regexp="{n_times}" search_in="msg" check_it="true" assign_to="enough"/>\n'
            f'      <ereg regexp="{more}" search_in="msg" check_it_inverse="true" assign_to="toomany"/>\n'
            "    </action>\n  </recv>\n"
            '  <Reference variables="enough,toomany"/>\n'
        )
    last = check or f'  <recv response="{final}"/>\n'
    return (
        HEAD.format(name="register")
        + _send(_register_request(1, False, contact))
        + '  <recv response="401" auth="true"/>\n'
        + _send(_register_request(2, True, contact, headers))
        + last
        + TAIL
    )


def register_flood() -> str:
    """A REGISTER sent and forgotten: a flood, with no interest in the answers."""
    return (
        HEAD.format(name="register-flood")
        + _send(_register_request(1, False, "<sip:[user]@[local_ip]:[local_port]>"), retrans=False)
        + TAIL
    )


def register_unauthenticated(final: int) -> str:
    """A REGISTER answered at once (403 by ACL, 404 for an unknown domain...)."""
    return (
        HEAD.format(name="register-direct")
        + _send(_register_request(1, False, "<sip:[user]@[local_ip]:[local_port]>"))
        + f'  <recv response="{final}"/>\n'
        + TAIL
    )


def _invite(cseq: int, auth: bool) -> str:
    authentication = "      [authentication]\n" if auth else ""
    return f"""      INVITE sip:[callee]@[domain] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[user]@[domain]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[callee]@[domain]>
      Call-ID: [call_id]
      CSeq: {cseq} INVITE
      Contact: <sip:[user]@[local_ip]:[local_port];transport=[transport]>
{authentication}      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      {SDP}"""


ACK_NON_2XX = """      ACK sip:[callee]@[domain] SIP/2.0
      [last_Via:]
      From: <sip:[user]@[domain]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: {cseq} ACK
      Max-Forwards: 70
      Content-Length: 0"""


def _in_dialog(method: str, cseq: int) -> str:
    return f"""      {method} [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      [routes]
      From: <sip:[user]@[domain]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      Contact: <sip:[user]@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0"""


def _challenge() -> str:
    return (
        _send(_invite(1, False))
        + '  <recv response="100" optional="true"/>\n'
        + '  <recv response="407" auth="true"/>\n'
        + _send(ACK_NON_2XX.format(cseq=1), retrans=False)
        + _send(_invite(2, True))
        + '  <recv response="100" optional="true"/>\n'
    )


def call(
    hangup: str = "caller",
    lose_first_200: bool = False,
    bye_after: int = 200,
    bye_answer: int = 200,
) -> str:
    """The caller: INVITE, 407, ACK, INVITE with credentials, 180, 200, ACK, then BYE
    from the caller (``hangup="caller"``: ``bye_after`` ms after the ACK, answered
    ``bye_answer``) or the callee. With ``lose_first_200`` it
    waits 1.7 s before the ACK, as a caller whose first 200 was lost would: the callee
    retransmits the 200 meanwhile (sipp counts those in the Retrans column)."""
    body = (
        HEAD.format(name="call")
        + _challenge()
        + '  <recv response="180" optional="true"/>\n'
        + '  <recv response="183" optional="true"/>\n'
        + '  <recv response="200" rrs="true"/>\n'
        + ('  <pause milliseconds="1700"/>\n' if lose_first_200 else "")
        + _send(_in_dialog("ACK", 2), retrans=False)
    )
    if hangup == "caller":
        body += (
            f'  <pause milliseconds="{bye_after}"/>\n'
            + _send(_in_dialog("BYE", 3))
            + f'  <recv response="{bye_answer}"/>\n'
        )
    else:
        body += (
            '  <recv request="BYE"/>\n'
            + _send(
                ANSWER_200,
                retrans=False,
            )
            + '  <pause milliseconds="500"/>\n'
        )
    return body + TAIL


def call_rejected(final: int, challenged: bool = True) -> str:
    """An INVITE that ends in ``final`` (after the 407 round when ``challenged``)."""
    body = HEAD.format(name=f"call-{final}")
    if challenged:
        body += _challenge()
    else:
        body += _send(_invite(1, False)) + '  <recv response="100" optional="true"/>\n'
    cseq = 2 if challenged else 1
    body += '  <recv response="180" optional="true"/>\n'
    body += f'  <recv response="{final}"/>\n' + _send(ACK_NON_2XX.format(cseq=cseq), retrans=False)
    return body + '  <pause milliseconds="200"/>\n' + TAIL


def call_cancelled() -> str:
    """The caller cancels after 180 and gets 200 for the CANCEL and 487 for the INVITE."""
    cancel = """      CANCEL sip:[callee]@[domain] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-3];rport
      From: <sip:[user]@[domain]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[callee]@[domain]>
      Call-ID: [call_id]
      CSeq: 2 CANCEL
      Max-Forwards: 70
      Content-Length: 0"""
    return (
        HEAD.format(name="call-cancel")
        + _challenge()
        + '  <recv response="180"/>\n'
        + _send(cancel)
        + '  <recv response="200"/>\n'
        + '  <recv response="487"/>\n'
        + _send(ACK_NON_2XX.format(cseq=2), retrans=False)
        + '  <pause milliseconds="200"/>\n'
        + TAIL
    )


def message(final: int = 200, challenged: bool = True) -> str:
    """A MESSAGE to [callee], challenged with 407 first (or answered ``final`` at once)."""

    def request(cseq: int, auth: bool) -> str:
        authentication = "      [authentication]\n" if auth else ""
        return f"""      MESSAGE sip:[callee]@[domain] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[user]@[domain]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[callee]@[domain]>
      Call-ID: [call_id]
      CSeq: {cseq} MESSAGE
{authentication}      Max-Forwards: 70
      Content-Type: text/plain
      Content-Length: [len]

      hello from sipp"""

    if not challenged:
        return (
            HEAD.format(name="message")
            + _send(request(1, False))
            + f'  <recv response="{final}"/>\n'
            + TAIL
        )
    return (
        HEAD.format(name="message")
        + _send(request(1, False))
        + '  <recv response="407" auth="true"/>\n'
        + _send(request(2, True))
        + f'  <recv response="{final}"/>\n'
        + TAIL
    )


UAS_REPLY = """      SIP/2.0 {status} {reason}
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0"""

UAS_OK_SDP = (
    """      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      """
    + SDP
)


RECV_INVITE = """  <recv request="INVITE" crlf="true" rrs="true">
    <action>
      <ereg regexp="tag=([^;>]+)" search_in="hdr" header="From:" assign_to="dummy1,caller_tag"/>
      <ereg regexp="([0-9]+) INVITE" search_in="hdr" header="CSeq:" assign_to="dummy2,invite_cseq"/>
      <ereg regexp="(Via: SIP/2.0/[A-Z]+ [-A-Za-z0-9.:;=_]+)[^V]+(Via: SIP/2.0/[A-Z]+ [-A-Za-z0-9.:;=_]+)" search_in="msg" assign_to="dummy3,via1,via2"/>
    </action>
  </recv>
"""


def _check(index: int, name: str, regex: str) -> str:
    """A check on the received request: a header's value, ("Request-URI") its first line,
    or ("body") its body."""
    pattern = escape(regex, quote=True)
    where = 'search_in="msg"' if name == "Request-URI" else f'search_in="hdr" header="{name}:"'
    if name == "body":
        where = 'search_in="body"'
    if name == "Request-URI":
        pattern = f"^[A-Z]+ {pattern}"
    return f'      <ereg regexp="{pattern}" {where} check_it="true" assign_to="expect{index}"/>\n'


def uas(mode: str = "answer", expect: dict[str, str] | None = None) -> str:
    """The callee. ``answer``: 180, 200, ACK, then the caller's BYE. ``hangup``: 180, 200,
    ACK, then a BYE of its own. ``decline``: 180 then 603. ``ring``: 180, then the
    CANCEL and 487. ``expect`` maps header names (or "Request-URI", or "body") to regular
    expressions the INVITE must match (the scenario fails otherwise)."""
    checks = "".join(
        _check(i, name, regex) for i, (name, regex) in enumerate((expect or {}).items())
    )
    names = "".join(f",expect{i}" for i in range(len(expect or {})))
    body = HEAD.format(name=f"uas-{mode}") + RECV_INVITE.replace(
        "    </action>", checks + "    </action>"
    )
    body += (
        f'  <Reference variables="dummy1,dummy2,dummy3,caller_tag,invite_cseq,via1,via2{names}"/>\n'
    )
    if mode.startswith("reject-"):  # reject-503: that final answer at once
        status = int(mode.removeprefix("reject-"))
        return (
            body
            + _send(UAS_REPLY.format(status=status, reason="Rejected"), retrans=False)
            + '  <recv request="ACK"/>\n'
            + TAIL
        )
    body += _send(UAS_REPLY.format(status=180, reason="Ringing"), retrans=False)
    if mode == "decline":
        return (
            body
            + _send(UAS_REPLY.format(status=603, reason="Decline"), retrans=False)
            + '  <recv request="ACK"/>\n'
            + TAIL
        )
    if mode == "ring":
        # the 487 answers the INVITE: its Via set, not the CANCEL's single Via
        terminated = (
            UAS_REPLY.format(status=487, reason="Request Terminated")
            .replace("[last_CSeq:]", "CSeq: [$invite_cseq] INVITE")
            .replace("[last_Via:]", "[$via1]\n      [$via2]")
        )
        return (
            body
            + '  <recv request="CANCEL"/>\n'
            + _send(UAS_REPLY.format(status=200, reason="OK"), retrans=False)
            + _send(terminated, retrans=False)
            + '  <recv request="ACK"/>\n'
            + TAIL
        )
    body += _send(UAS_OK_SDP, retrans=True)
    body += '  <recv request="ACK" crlf="true"/>\n'
    if mode == "hangup":
        bye = """      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      [routes]
      From: <sip:[callee]@[domain]>;tag=[pid]SIPpTag01[call_number]
      To: <sip:[user]@[domain]>;tag=[$caller_tag]
      Call-ID: [call_id]
      CSeq: 1 BYE
      Max-Forwards: 70
      Content-Length: 0"""
        return (
            body
            + '  <pause milliseconds="200"/>\n'
            + _send(bye)
            + '  <recv response="200"/>\n'
            + TAIL
        )
    return (
        body
        + '  <recv request="BYE"/>\n'
        + _send(
            ANSWER_200,
            retrans=False,
        )
        + TAIL
    )


def uas_message() -> str:
    return (
        HEAD.format(name="uas-message")
        + '  <recv request="MESSAGE"/>\n'
        + _send(
            UAS_REPLY.format(status=200, reason="OK").replace("      [last_Record-Route:]\n", ""),
            retrans=False,
        )
        + TAIL
    )


def did_call(number: str, trunk_host: str, headers: str = "", to_contact: str = "") -> str:
    """A provider's call to a number: INVITE without credentials, 200, ACK, BYE. With
    ``to_contact`` it goes to that registered Contact, the number in the To header."""
    target = to_contact or f"sip:{number}@{trunk_host}"
    invite = f"""      INVITE {target} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:+15551234567@provider.example>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{number}@{trunk_host}>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:+15551234567@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
{headers}      Content-Type: application/sdp
      Content-Length: [len]

      {SDP}"""
    caller = "<sip:+15551234567@provider.example>"
    ack = _in_dialog("ACK", 1).replace("<sip:[user]@[domain]>", caller)
    bye = _in_dialog("BYE", 2).replace("<sip:[user]@[domain]>", caller)
    return (
        HEAD.format(name="did-call")
        + _send(invite)
        + '  <recv response="100" optional="true"/>\n'
        + '  <recv response="180" optional="true"/>\n'
        + '  <recv response="200" rrs="true"/>\n'
        + _send(ack, retrans=False)
        + '  <pause milliseconds="200"/>\n'
        + _send(bye)
        + '  <recv response="200"/>\n'
        + TAIL
    )


def uas_challenging(username: str, password: str) -> str:
    """A provider that asks for credentials: INVITE, 401, ACK, the INVITE again (digest
    checked: 403 when wrong), 200, ACK, then the caller's BYE. (401, not 407: sipp's
    verifyauth reads the Authorization header only.)"""
    challenge = UAS_REPLY.format(status=401, reason="Unauthorized").replace(
        "      Content-Length: 0",
        '      WWW-Authenticate: Digest realm="provider.example", '
        'nonce="[pid]n0nce[call_number]", qop="auth", algorithm=MD5\n      Content-Length: 0',
    )
    verify = (
        '  <recv request="INVITE" rrs="true">\n    <action>\n'
        f'      <verifyauth assign_to="authvalid" username="{username}" password="{password}"/>\n'
        "    </action>\n  </recv>\n"
        '  <nop hide="true" test="authvalid" next="good"/>\n'
        + _send(UAS_REPLY.format(status=403, reason="Wrong Credentials"), retrans=False)
        + '  <recv request="ACK" next="end"/>\n'
        + '  <label id="good"/>\n'
    )
    return (
        HEAD.format(name="uas-challenging")
        + '  <recv request="INVITE"/>\n'
        + _send(challenge, retrans=False)
        + '  <recv request="ACK"/>\n'
        + verify
        + _send(UAS_OK_SDP, retrans=True)
        + '  <recv request="ACK" crlf="true"/>\n'
        + '  <recv request="BYE"/>\n'
        + _send(ANSWER_200, retrans=False)
        + '  <label id="end"/>\n'
        + TAIL
    )


def registrar(cycles: int = 2, expires: int = 10, unavailable: int = 0) -> str:
    """A provider's registrar: first ``unavailable`` REGISTERs answered 503, then
    ``cycles`` times REGISTER, 401, REGISTER with credentials (checked: sipgrid /
    provider-secret, else 403), 200 granting ``expires`` seconds."""
    challenge = """      SIP/2.0 401 Unauthorized
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      WWW-Authenticate: Digest realm="provider.example", nonce="[pid]n[call_number]", algorithm=MD5
      Content-Length: 0"""
    granted = f"""      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Contact:];expires={expires}
      Content-Length: 0"""
    refused = granted.replace("200 OK", "403 Wrong Credentials")
    busy = challenge.replace("401 Unauthorized", "503 Service Unavailable").replace(
        'WWW-Authenticate: Digest realm="provider.example", nonce="[pid]n[call_number]", '
        "algorithm=MD5\n      ",
        "",
    )
    body = HEAD.format(name="registrar")
    for _ in range(unavailable):
        body += '  <recv request="REGISTER"/>\n' + _send(busy, retrans=False)
    for cycle in range(cycles):
        body += (
            '  <recv request="REGISTER"/>\n'
            + _send(challenge, retrans=False)
            + '  <recv request="REGISTER">\n    <action>\n'
            '      <verifyauth assign_to="valid" username="sipgrid" password="provider-secret"/>\n'
            "    </action>\n  </recv>\n"
            + f'  <nop hide="true" test="valid" next="ok{cycle}"/>\n'
            + _send(refused, retrans=False)
            + '  <nop next="end"/>\n'
            + f'  <label id="ok{cycle}"/>\n'
            + _send(granted, retrans=False)
        )
    return body + '  <label id="end"/>\n' + TAIL

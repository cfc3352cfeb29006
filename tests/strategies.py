"""hypothesis strategies for EAP messages, shared by the codec and session tests."""

from __future__ import annotations

from hypothesis import strategies as st

from eapkit.packet import (
    Code,
    EapType,
    Expanded,
    ExpandedNak,
    Experimental,
    Failure,
    Identity,
    Message,
    MethodData,
    MethodId,
    Nak,
    Notification,
    Success,
)

identifiers = st.integers(0, 255)
req_or_resp = st.sampled_from([Code.REQUEST, Code.RESPONSE])
payload = st.binary(max_size=300)
method_types = st.integers(4, 253).filter(lambda t: t not in (EapType.EXPANDED,))
method_ids = st.builds(MethodId, st.integers(0, 0xFFFFFF), st.integers(0, 0xFFFFFFFF))
expanded_methods = method_ids.filter(lambda m: not (m.vendor_id == 0 and m.vendor_type == 3))

successes = st.builds(Success, identifiers)
failures = st.builds(Failure, identifiers)
identities = st.builds(Identity, req_or_resp, identifiers, payload)
notifications = st.builds(Notification, req_or_resp, identifiers, payload)
naks = st.builds(
    Nak, identifiers, st.lists(st.integers(0, 255), min_size=1, max_size=20).map(tuple)
)
expanded_naks = st.builds(
    ExpandedNak, identifiers, st.lists(method_ids, min_size=1, max_size=10).map(tuple)
)
expandeds = expanded_methods.flatmap(
    lambda m: st.builds(
        Expanded, req_or_resp, identifiers, st.just(m.vendor_id), st.just(m.vendor_type), payload
    )
)
experimentals = st.builds(Experimental, req_or_resp, identifiers, payload)
method_datas = st.builds(MethodData, req_or_resp, identifiers, method_types, payload)

messages: st.SearchStrategy[Message] = st.one_of(
    successes,
    failures,
    identities,
    notifications,
    naks,
    expanded_naks,
    expandeds,
    experimentals,
    method_datas,
)

"""A PKI and profile requests for the profile tests, and the vendors' rules as code."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import uuid
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path
from typing import Any

import xmlschema
import yaml

from eapkit.pki import Issued, make_ca, make_client, make_server
from eapkit.profiles import windows
from eapkit.profiles.common import DeviceCredential, ProfileRequest

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "profiles"
NOW = dt.datetime.now(dt.UTC)
P12_PASSWORD = "correct horse battery"


@cache
def pki() -> tuple[Issued, Issued, Issued, Issued]:
    """CA, gateway certificate, alice's certificate, a laptop's device certificate."""
    ca = make_ca("Example VPN CA", now=NOW)
    gateway = make_server(ca, ["vpn.example.org"], now=NOW)
    alice = make_client(ca, "alice", email="alice@example.org", now=NOW)
    laptop = make_client(ca, "laptop.example.org", dns_names=["laptop.example.org"], now=NOW)
    return ca, gateway, alice, laptop


def device(issued: Issued) -> DeviceCredential:
    key: Any = issued.key
    return DeviceCredential(issued.certificate, (), key)


def request(method: str = "eap-mschapv2", user: str = "alice", **changes: Any) -> ProfileRequest:
    ca, _, alice, laptop = pki()
    holder = {"eap-tls": alice, "cert-eap": laptop}.get(method)
    fields: dict[str, Any] = {
        "user": user,
        "gateway": "vpn.example.org",
        "gateway_id": "vpn.example.org",
        "method": method,
        "ca": ca.certificate,
        "eap_server_names": ("radius.example.org",),
        "device": device(holder) if holder else None,
        "p12_password": P12_PASSWORD if holder else None,
    }
    return ProfileRequest(**(fields | changes))


# --- Apple: payload keys and types against apple/device-management's YAML -------------

_APPLE_TYPES: dict[str, type] = {
    "<string>": str,
    "<integer>": int,
    "<boolean>": bool,
    "<dictionary>": dict,
    "<array>": list,
    "<data>": bytes,
    "<date>": dt.datetime,
    "<real>": float,
}


@cache
def apple_schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((VECTORS / "apple" / f"{name}.yaml").read_text())
    return loaded


def _apple_keys(keys: list[dict[str, Any]], value: dict[str, Any], where: str) -> list[str]:
    declared = {k["key"]: k for k in keys}
    if "ANY" in declared:
        return []
    errors = [
        f"{where}.{name}: not a key of Apple's schema" for name in value if name not in declared
    ]
    for name, item in value.items():
        if name in declared:
            errors += _apple_value(item, declared[name], f"{where}.{name}")
    errors += [
        f"{where}.{k['key']}: required by Apple's schema, missing"
        for k in keys
        if k.get("presence") == "required" and k["key"] not in value
    ]
    return errors


def _apple_value(value: Any, spec: dict[str, Any], where: str) -> list[str]:
    kind = spec["type"]
    if kind == "<any>":
        return []
    expected = _APPLE_TYPES[kind]
    # plistlib gives bools for <true/>, ints for <integer>: bool is an int in Python
    if type(value) is not expected:
        return [f"{where}: {type(value).__name__}, Apple's schema says {kind}"]
    errors = []
    if "rangelist" in spec and value not in spec["rangelist"]:
        errors.append(f"{where}: {value!r} not in {spec['rangelist']}")
    bounds = spec.get("range", {})
    if ("min" in bounds and value < bounds["min"]) or ("max" in bounds and value > bounds["max"]):
        errors.append(f"{where}: {value!r} outside {bounds}")
    if isinstance(value, dict) and "subkeys" in spec:
        errors += _apple_keys(spec["subkeys"], value, where)
    if isinstance(value, list) and spec.get("subkeys"):
        for index, item in enumerate(value):
            errors += _apple_value(item, spec["subkeys"][0], f"{where}[{index}]")
    return errors


def apple_errors(profile: dict[str, Any]) -> list[str]:
    """Everything in ``profile`` that Apple's device-management schema does not allow."""
    errors = _apple_keys(apple_schema("TopLevel")["payloadkeys"], profile, "profile")
    for index, payload in enumerate(profile.get("PayloadContent", [])):
        kind = payload.get("PayloadType")
        path = VECTORS / "apple" / f"{kind}.yaml"
        if not path.exists():
            errors.append(f"payload {index}: no vendored schema for {kind}")
            continue
        keys = apple_schema("CommonPayloadKeys")["payloadkeys"] + apple_schema(kind)["payloadkeys"]
        errors += _apple_keys(keys, payload, f"{kind}")
    return errors


# --- Windows: EapHostConfig against Microsoft's EAPHost schemas ----------------------

# Elements whose children the schemas take as xs:any (lax): each child there must be a
# declared global element, or lax validation would let a misspelt one through unchecked.
_ANY_PARENTS = {
    f"{{{windows.HOST}}}Config",
    f"{{{windows.BASE}}}Eap",
    f"{{{windows.TEAP}}}InnerMethodConfig",
}


@cache
def windows_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(VECTORS / "windows" / "all.xsd"))


def eap_host_config_errors(root: ET.Element) -> list[str]:
    """What Microsoft's EAPHost schemas (vectors/profiles/windows) find wrong in an
    EapHostConfig document, and children of xs:any elements no schema declares."""
    schema = windows_schema()
    errors = [str(e.reason) for e in schema.iter_errors(ET.tostring(root, encoding="unicode"))]
    declared = set(schema.maps.elements)
    for parent in root.iter():
        if parent.tag in _ANY_PARENTS:
            for child in parent:
                if child.tag not in declared and child.tag != f"{{{windows.BASE}}}Type":
                    errors.append(f"{child.tag} under {parent.tag} is declared by no schema")
    return errors


def script_eap_xml(script: str) -> ET.Element:
    """The EapHostConfig of a Windows script (its ``$eapXml = [xml]'...'`` line)."""
    xml = re.search(r"^\$eapXml = \[xml\]'(.*)'\r?$", script, re.M)
    assert xml is not None, "no $eapXml line"
    return ET.fromstring(xml.group(1).replace("''", "'"))


# --- Android: the strongSwan app's importer, as rules --------------------------------


@cache
def sswan_rules() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((VECTORS / "android" / "sswan_rules.json").read_text())
    return loaded


def _sswan_field(value: Any, spec: dict[str, Any], where: str, ike: bool) -> list[str]:
    kind = spec["type"]
    rules = sswan_rules()
    if kind in ("string", "proposal") and not isinstance(value, str):
        return [f"{where}: not a string"]
    if kind == "uuid":
        try:
            uuid.UUID(value)
        except (ValueError, TypeError, AttributeError):
            return [f"{where}: not a UUID"]
    if kind == "object" and not isinstance(value, dict):
        return [f"{where}: not an object"]
    if kind == "boolean" and not isinstance(value, bool):
        return [f"{where}: not a boolean"]
    if kind == "integer" and (type(value) is not int or not spec["min"] <= value <= spec["max"]):
        return [f"{where}: not an integer in {spec['min']}..{spec['max']}"]
    if kind == "base64":
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError, ValueError):
            return [f"{where}: not base64"]
    if kind == "proposal":
        allowed = set(rules["proposal_keywords"]["ike" if ike else "esp"])
        unknown = [w for w in value.split("-") if w not in allowed]
        if unknown:
            return [f"{where}: unknown proposal keywords {unknown}"]
    if kind == "string_list" and not isinstance(value, (str, list)):
        return [f"{where}: neither a string nor a list"]
    return []


def sswan_errors(document: dict[str, Any]) -> list[str]:
    """What the strongSwan app would refuse, or read differently than written."""
    rules = sswan_rules()
    errors: list[str] = []
    for section, where, value in (
        ("top", "", document),
        ("remote", "remote.", document.get("remote", {})),
        ("local", "local.", document.get("local", {})),
    ):
        if not isinstance(value, dict):
            continue
        spec = rules[section]
        errors += [f"{where}{k}: not read by the app" for k in value if k not in spec]
        errors += [
            f"{where}{k}: required" for k, s in spec.items() if s["required"] and k not in value
        ]
        for key, item in value.items():
            if key in spec:
                errors += _sswan_field(item, spec[key], where + key, key == "ike-proposal")
    kind = document.get("type")
    features = rules["types"].get(kind)
    if features is None:
        errors.append(f"type: {kind!r} would be imported as {rules['unknown_type_becomes']}")
    else:
        for key in document.get("local", {}):
            need = rules["local"].get(key, {}).get("feature")
            if need and need not in features:
                errors.append(f"local.{key}: ignored for {kind}")
    return errors


def swanctl_sections(text: str) -> list[str]:
    """Section names of a swanctl.conf, nested with dots (a light syntax check)."""
    stack: list[str] = []
    names: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.endswith("{"):
            stack.append(line[:-1].strip())
            names.append(".".join(stack))
        elif line == "}":
            stack.pop()
        elif line and not re.match(r"^[\w.-]+ = .+$", line):
            raise AssertionError(f"not a swanctl.conf line: {line!r}")
    assert not stack, "unclosed section"
    return names

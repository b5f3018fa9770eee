"""JSON Schemas for the custom resources the chart renders, which the Kubernetes schemas
(kubernetes-validate) do not cover. Each is written from the CRD's documented fields, only those
the chart uses plus what the CRD requires, with unknown fields refused where the CRD itself
refuses them (a typo in the chart fails here as `kubectl apply` would):

- cert-manager `cert-manager.io/v1` Certificate and Issuer (cert-manager.io/docs/reference/api-docs);
- Prometheus Operator `monitoring.coreos.com/v1` ServiceMonitor (prometheus-operator API docs);
- KEDA `keda.sh/v1alpha1` ScaledObject (keda.sh/docs/latest/reference/scaledobject-spec).
"""

from __future__ import annotations

from typing import Any

_STR = {"type": "string"}
_STRS = {"type": "array", "items": _STR}
_META = {"type": "object", "required": ["name"], "properties": {"name": _STR}}


def _resource(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _META,
            "spec": spec,
        },
    }


_ISSUER_REF = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {"name": _STR, "kind": {"enum": ["Issuer", "ClusterIssuer"]}, "group": _STR},
}
_USAGES = [
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
    "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
    "server auth", "client auth", "code signing", "email protection", "s/mime", "ipsec end system",
    "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc",
]  # fmt: skip

CERTIFICATE = _resource(
    "cert-manager.io/v1",
    "Certificate",
    {
        "type": "object",
        "required": ["secretName", "issuerRef"],
        "additionalProperties": False,
        "properties": {
            "secretName": _STR,
            "issuerRef": _ISSUER_REF,
            "commonName": _STR,
            "isCA": {"type": "boolean"},
            "duration": {"type": "string", "pattern": r"^(\d+(h|m|s))+$"},
            "renewBefore": {"type": "string", "pattern": r"^(\d+(h|m|s))+$"},
            "dnsNames": _STRS,
            "ipAddresses": _STRS,
            "uris": _STRS,
            "usages": {"type": "array", "items": {"enum": _USAGES}},
            "privateKey": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                    "size": {"type": "integer"},
                    "rotationPolicy": {"enum": ["Never", "Always"]},
                    "encoding": {"enum": ["PKCS1", "PKCS8"]},
                },
            },
        },
    },
)

ISSUER = _resource(
    "cert-manager.io/v1",
    "Issuer",
    {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "maxProperties": 1,  # exactly one kind of issuer
        "properties": {
            "selfSigned": {"type": "object"},
            "ca": {
                "type": "object",
                "required": ["secretName"],
                "additionalProperties": False,
                "properties": {"secretName": _STR},
            },
        },
    },
)

SERVICE_MONITOR = _resource(
    "monitoring.coreos.com/v1",
    "ServiceMonitor",
    {
        "type": "object",
        "required": ["selector", "endpoints"],
        "additionalProperties": False,
        "properties": {
            "selector": {
                "type": "object",
                "properties": {"matchLabels": {"type": "object", "additionalProperties": _STR}},
            },
            "endpoints": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "port": _STR,
                        "path": _STR,
                        "interval": {"type": "string", "pattern": r"^(\d+(ms|s|m|h))+$"},
                        "authorization": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "type": _STR,
                                "credentials": {
                                    "type": "object",
                                    "required": ["key"],
                                    "properties": {"name": _STR, "key": _STR},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
)

SCALED_OBJECT = _resource(
    "keda.sh/v1alpha1",
    "ScaledObject",
    {
        "type": "object",
        "required": ["scaleTargetRef", "triggers"],
        "additionalProperties": False,
        "properties": {
            "scaleTargetRef": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {"apiVersion": _STR, "kind": _STR, "name": _STR},
            },
            "minReplicaCount": {"type": "integer", "minimum": 0},
            "maxReplicaCount": {"type": "integer", "minimum": 1},
            "cooldownPeriod": {"type": "integer", "minimum": 0},
            "pollingInterval": {"type": "integer", "minimum": 1},
            "triggers": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["type", "metadata"],
                    "properties": {
                        "type": _STR,
                        # KEDA's trigger metadata is a map of strings.
                        "metadata": {"type": "object", "additionalProperties": _STR},
                    },
                },
            },
        },
    },
)

SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("cert-manager.io/v1", "Certificate"): CERTIFICATE,
    ("cert-manager.io/v1", "Issuer"): ISSUER,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT,
}

//! The Kubernetes objects of a stack: namespaces, one ServiceAccount per `access` entry
//! annotated with its IAM role, the demo app's Deployment and Service, and the database relay
//! ([`crate::relay`]: a ConfigMap, a Deployment and a NetworkPolicy).
//!
//! [`manifests`] builds them from the resource graph, with values from the state where it has
//! them and `<known after apply>` where not. `pwless manifests` prints them for review and for
//! GitOps users; the Kubernetes provider server-side-applies the same objects
//! ([`object_of`], from resolved inputs).

use serde_json::{Map, Value, json};

use crate::graph::{Expr, OutputRef, Resource, ResourceGraph, ResourceKind};
use crate::state::State;

/// The user and group the demo image runs as (the Dockerfile's `USER 65532:65532`,
/// distroless's `nonroot`), set on its pods so that `runAsNonRoot` can be checked.
pub const DEMO_RUN_AS: u32 = 65532;

pub const UNKNOWN: &str = "<known after apply>";

/// The value of `expr`, with every reference the state cannot answer shown as
/// [`UNKNOWN`].
fn resolve(expr: &Expr, state: Option<&State>) -> Value {
    let lookup = |reference: &OutputRef| {
        state?
            .resource(&reference.address)?
            .outputs
            .get(&reference.output)
            .cloned()
    };
    match expr {
        Expr::Value(value) => value.clone(),
        Expr::Ref(reference) => lookup(reference).unwrap_or_else(|| json!(UNKNOWN)),
        Expr::List(items) => Value::Array(items.iter().map(|item| resolve(item, state)).collect()),
        Expr::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(key, value)| (key.clone(), resolve(value, state)))
                .collect(),
        ),
    }
}

fn input(resource: &Resource, name: &str, state: Option<&State>) -> Value {
    resource
        .inputs
        .get(name)
        .map_or(Value::Null, |expr| resolve(expr, state))
}

/// A pod template's metadata: its labels, and for a Pod Identity service account the
/// `pwless/identity` annotation (its change rolls the pods over to the new mechanism).
fn template_metadata(labels: Value, identity: Value) -> Value {
    if identity.is_null() {
        json!({"labels": labels})
    } else {
        json!({"labels": labels, "annotations": {IDENTITY_ANNOTATION: identity}})
    }
}

/// The service account annotation that names its IRSA role (the EKS Pod Identity Webhook's).
pub const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

/// The pod template annotation that names a Deployment's identity mechanism when it is not
/// IRSA.
pub const IDENTITY_ANNOTATION: &str = "pwless/identity";

/// The object for one Kubernetes resource of the graph; `None` for other kinds.
pub fn object(resource: &Resource, state: Option<&State>) -> Option<Value> {
    object_of(resource.kind, |name| input(resource, name, state))
}

/// The object of a Kubernetes resource of `kind` whose inputs `get` answers (resolved inputs
/// when the provider applies it, graph inputs with state values for `pwless manifests`).
pub fn object_of(kind: ResourceKind, get: impl Fn(&str) -> Value) -> Option<Value> {
    let object = match kind {
        ResourceKind::KubernetesNamespace => json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": get("name"), "labels": get("labels")},
        }),
        ResourceKind::KubernetesServiceAccount => {
            let mut account = json!({
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {
                    "name": get("name"),
                    "namespace": get("namespace"),
                    "labels": get("labels"),
                },
            });
            // IRSA's annotation; a Pod Identity service account has none (server-side apply
            // then removes the one pwless set before).
            let role_arn = get("role_arn");
            if !role_arn.is_null() {
                account["metadata"]["annotations"] = json!({ROLE_ARN_ANNOTATION: role_arn});
            }
            account
        }
        ResourceKind::KubernetesDeployment => {
            let labels = get("labels");
            let selector = json!({"app.kubernetes.io/name": labels.get("app.kubernetes.io/name").cloned().unwrap_or(Value::Null)});
            // Kubernetes wants every environment value as a string.
            let env: Vec<Value> = get("env")
                .as_object()
                .map(|entries| {
                    entries
                        .iter()
                        .map(|(name, value)| json!({"name": name, "value": value.as_str().map_or_else(|| value.to_string(), str::to_string)}))
                        .collect()
                })
                .unwrap_or_default();
            let probe = json!({"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10, "timeoutSeconds": 2});
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": get("name"), "namespace": get("namespace"), "labels": labels},
                "spec": {
                    "replicas": get("replicas"),
                    "selector": {"matchLabels": selector},
                    "template": {
                        "metadata": template_metadata(labels, get("identity")),
                        "spec": {
                            "serviceAccountName": get("service_account"),
                            "automountServiceAccountToken": true,
                            "securityContext": {"runAsNonRoot": true, "runAsUser": DEMO_RUN_AS, "runAsGroup": DEMO_RUN_AS, "seccompProfile": {"type": "RuntimeDefault"}},
                            "containers": [{
                                "name": "pwless-demo",
                                "image": get("image"),
                                "ports": [{"name": "http", "containerPort": get("port")}],
                                "env": env,
                                "readinessProbe": probe,
                                "livenessProbe": probe,
                                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
                                "securityContext": {
                                    "allowPrivilegeEscalation": false,
                                    "readOnlyRootFilesystem": true,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                            }],
                        },
                    },
                },
            })
        }
        ResourceKind::KubernetesConfigMap => json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": get("name"), "namespace": get("namespace"), "labels": get("labels")},
            "data": get("data"),
        }),
        // Egress only to the database port inside the VPC, and to the cluster's DNS (the
        // relay resolves the cluster endpoint); no ingress: a port-forward reaches the pod
        // through the kubelet inside the pod's own network namespace, not over the network.
        ResourceKind::KubernetesNetworkPolicy => json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": get("name"), "namespace": get("namespace"), "labels": get("labels")},
            "spec": {
                "podSelector": {"matchLabels": get("pod_selector")},
                "policyTypes": ["Ingress", "Egress"],
                "egress": [
                    {"to": [{"ipBlock": {"cidr": get("egress_cidr")}}], "ports": [{"protocol": "TCP", "port": get("egress_port")}]},
                    {
                        "to": [{
                            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                        }],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                    },
                ],
            },
        }),
        ResourceKind::KubernetesDbRelay => {
            let labels = get("labels");
            let selector = json!({"app.kubernetes.io/name": labels.get("app.kubernetes.io/name").cloned().unwrap_or(Value::Null)});
            let probe = json!({"tcpSocket": {"port": "postgres"}, "periodSeconds": 10, "timeoutSeconds": 2});
            let text = |value: Value| {
                value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_string)
            };
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": get("name"), "namespace": get("namespace"), "labels": labels},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": selector},
                    "template": {
                        // A new configuration rolls the pod (the ConfigMap is read at start).
                        "metadata": {"labels": labels, "annotations": {"pwless/config-sha256": get("config_sha256")}},
                        "spec": {
                            "automountServiceAccountToken": false,
                            "enableServiceLinks": false,
                            "securityContext": {
                                "runAsNonRoot": true,
                                "runAsUser": crate::relay::RUN_AS_USER,
                                "runAsGroup": crate::relay::RUN_AS_USER,
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "containers": [{
                                "name": "relay",
                                "image": get("image"),
                                "args": ["-f", format!("{}/haproxy.cfg", crate::relay::CONFIG_DIR)],
                                "ports": [{"name": "postgres", "containerPort": crate::relay::PORT, "protocol": "TCP"}],
                                "env": [
                                    {"name": "DB_ENDPOINT", "value": text(get("endpoint"))},
                                    {"name": "DB_PORT", "value": text(get("port"))},
                                ],
                                "readinessProbe": probe,
                                "livenessProbe": probe,
                                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}},
                                "securityContext": {
                                    "allowPrivilegeEscalation": false,
                                    "readOnlyRootFilesystem": true,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                                "volumeMounts": [{"name": "config", "mountPath": crate::relay::CONFIG_DIR, "readOnly": true}],
                            }],
                            "volumes": [{"name": "config", "configMap": {"name": get("config_map")}}],
                        },
                    },
                },
            })
        }
        ResourceKind::KubernetesService => json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": get("name"), "namespace": get("namespace"), "labels": get("labels")},
            "spec": {
                "type": get("type"),
                "selector": get("selector"),
                "ports": [{"name": "http", "port": get("port"), "targetPort": get("target_port"), "protocol": "TCP"}],
            },
        }),
        _ => return None,
    };
    Some(object)
}

/// Every Kubernetes object of the stack, in apply order.
pub fn manifests(graph: &ResourceGraph, state: Option<&State>) -> Vec<Value> {
    graph
        .in_order()
        .filter_map(|resource| object(resource, state))
        .collect()
}

/// YAML documents, `---` between them. Strings are always double-quoted (JSON escaping, which
/// YAML reads the same), so no value is ever re-typed (`"on"`, `"1.30"`, `"null"` stay strings).
pub fn to_yaml(documents: &[Value]) -> String {
    let mut out = String::new();
    for document in documents {
        out.push_str("---\n");
        emit(document, 0, &mut out);
    }
    out
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) => Value::String(text.clone()).to_string(),
        other => other.to_string(),
    }
}

fn key(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !text.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.');
    if plain {
        text.to_string()
    } else {
        Value::String(text.to_string()).to_string()
    }
}

fn is_empty_collection(value: &Value) -> bool {
    matches!(value, Value::Object(map) if map.is_empty())
        || matches!(value, Value::Array(items) if items.is_empty())
}

fn emit(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => emit_map(map, indent, out),
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(map) if !map.is_empty() => {
                        // The first key on the dash line, the rest aligned under it.
                        let mut nested = String::new();
                        emit_map(map, indent + 2, &mut nested);
                        out.push_str(&pad);
                        out.push_str("- ");
                        out.push_str(nested.trim_start());
                    }
                    other if is_empty_collection(other) => out.push_str(&format!(
                        "{pad}- {}\n",
                        if other.is_array() { "[]" } else { "{}" }
                    )),
                    Value::Array(_) => {
                        out.push_str(&format!("{pad}-\n"));
                        emit(item, indent + 2, out);
                    }
                    other => out.push_str(&format!("{pad}- {}\n", scalar(other))),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

fn emit_map(map: &Map<String, Value>, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for (name, value) in map {
        match value {
            _ if is_empty_collection(value) => out.push_str(&format!(
                "{pad}{}: {}\n",
                key(name),
                if value.is_array() { "[]" } else { "{}" }
            )),
            Value::Object(_) => {
                out.push_str(&format!("{pad}{}:\n", key(name)));
                emit(value, indent + 2, out);
            }
            Value::Array(_) => {
                out.push_str(&format!("{pad}{}:\n", key(name)));
                emit(value, indent, out);
            }
            other => out.push_str(&format!("{pad}{}: {}\n", key(name), scalar(other))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_reads_back_as_the_same_value() {
        let value = json!({
            "a": "on", "b": "1.30", "c": 3, "d": [{"x": 1, "y": ["p", "q"]}, "s"], "e": {}, "f": [],
            "eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r", "g": {"h": {"i": null}}, "quote": "a\"b: c",
        });
        let text = to_yaml(std::slice::from_ref(&value));
        // Parse it back with the YAML parser the stack files use.
        let node = crate::spec::yaml::parse(text.trim_start_matches("---\n")).unwrap();
        fn to_json(node: &crate::spec::yaml::Node) -> Value {
            use crate::spec::yaml::NodeKind;
            match &node.kind {
                NodeKind::Scalar {
                    value,
                    quoted: true,
                } => json!(value),
                NodeKind::Scalar { value, .. } => {
                    serde_json::from_str(value).unwrap_or(json!(value))
                }
                NodeKind::Sequence(items) => Value::Array(items.iter().map(to_json).collect()),
                NodeKind::Mapping(entries) => Value::Object(
                    entries
                        .iter()
                        .map(|(k, v)| match &k.kind {
                            NodeKind::Scalar { value, .. } => (value.clone(), to_json(v)),
                            _ => unreachable!(),
                        })
                        .collect(),
                ),
            }
        }
        assert_eq!(to_json(&node), value, "{text}");
    }
}
